"""Rule tables: what each memory view charges a layer, given which gradients it must produce.

A view maps a layer kind to a rule `(layer, grads, ctx) -> LayerCost`. The walk and the peak
arithmetic are shared (tinytl.memory.analysis); only these tables differ between views. A view may
instead build its report from a recorded training step (`View.report`, the pytorch view).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tinytl.errors import TinyTLError
from tinytl.memory.walk import LayerRecord

ACT_BYTES = 4  # 32-bit activations


@dataclass(frozen=True)
class LayerGrads:
    """Which gradients a layer's backward must produce under a policy."""

    weight: bool  # its weight (or norm scale) trains
    bias: bool  # its bias (or norm shift) trains
    input: bool  # a trainable parameter lies upstream, so dL/dx must flow through it

    @property
    def any(self) -> bool:
        return self.weight or self.bias or self.input


@dataclass(frozen=True)
class ViewContext:
    """Policy-wide facts a rule may read."""

    any_backward: bool  # some parameter outside the classifier trains (the paper's require_backward)
    norm: str
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LayerCost:
    """Bytes per sample kept for backward (`stored`) and live only while the layer runs (`tmp`);
    `fixed` is kept for backward but does not scale with the batch (e.g. a standardized weight)."""

    stored: int = 0
    tmp: int = 0
    fixed: int = 0


Rule = Callable[[LayerRecord, LayerGrads, ViewContext], LayerCost]
FREE = LayerCost()


@dataclass(frozen=True)
class View:
    """A named rule table plus how it prices parameters."""

    name: str
    title: str
    rules: dict[str, Rule]
    frozen_storage_bits: Callable[[int], int]  # requested --frozen-bits -> bits a frozen parameter really takes
    description: str
    # views that price a recorded step instead of rules: (trace, policy, trainable names, batch, bits,
    # policy label, options) -> MemoryReport
    report: Callable[..., object] | None = None
    # options the view takes, by name, with their allowed values (the first is the default)
    options: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def pick_options(self, **given: object) -> dict[str, object]:
        """Those of `given` that this view declares (e.g. the engine's mode), so callers need not know which do."""
        picked = {k: v for k, v in given.items() if k in self.options}
        for name, value in picked.items():
            if value not in self.options[name]:
                raise TinyTLError(f"unknown {self.name} {name} {value!r}; choose one of "
                                  f"{', '.join(self.options[name])}")
        return picked

    def cost(self, layer: LayerRecord, grads: LayerGrads, ctx: ViewContext) -> LayerCost:
        rule = self.rules.get(layer.kind)
        return rule(layer, grads, ctx) if rule else FREE


# --- paper view: the released TinyTL profiler's rules (docs/PAPER.md, "Profiler rules") ---

def _paper_conv(layer: LayerRecord, grads: LayerGrads, ctx: ViewContext) -> LayerCost:
    groups = getattr(layer.module, "groups", 1)
    return LayerCost(stored=ACT_BYTES * layer.input_numel if grads.weight else 0,
                     tmp=ACT_BYTES * layer.input_numel + ACT_BYTES * layer.output_numel // groups)


def _paper_linear(layer: LayerRecord, grads: LayerGrads, ctx: ViewContext) -> LayerCost:
    return LayerCost(stored=ACT_BYTES * layer.input_numel if grads.weight else 0,
                     tmp=ACT_BYTES * (layer.input_numel + layer.output_numel))


def _paper_norm(layer: LayerRecord, grads: LayerGrads, ctx: ViewContext) -> LayerCost:
    return LayerCost(stored=ACT_BYTES * layer.input_numel if grads.weight else 0,
                     tmp=ACT_BYTES * layer.input_numel)


def _paper_relu(layer: LayerRecord, grads: LayerGrads, ctx: ViewContext) -> LayerCost:
    return LayerCost(stored=layer.input_numel // 8 if ctx.any_backward else 0,
                     tmp=ACT_BYTES * layer.input_numel)


def _paper_act(layer: LayerRecord, grads: LayerGrads, ctx: ViewContext) -> LayerCost:
    return LayerCost(stored=ACT_BYTES * layer.input_numel if ctx.any_backward else 0,
                     tmp=ACT_BYTES * layer.input_numel)


PAPER = View(
    name="paper", title="paper (TinyTL profiler)",
    rules={"conv": _paper_conv, "linear": _paper_linear, "norm": _paper_norm, "relu": _paper_relu,
           "act": _paper_act},
    frozen_storage_bits=lambda bits: bits,
    description="The released TinyTL profiler's theory: a layer keeps its input only if its weight "
                "trains, ReLU keeps a 1-bit mask, norms with a frozen scale keep nothing.")

VIEWS: dict[str, View] = {"paper": PAPER}


def register_view(view: View) -> View:
    """Add a view (rule table) so analysis, CLI and app offer it."""
    if view.name in VIEWS:
        raise TinyTLError(f"memory view {view.name!r} is already registered")
    VIEWS[view.name] = view
    return view


def get_view(name: str) -> View:
    """A view by name, or a TinyTLError listing the valid ones."""
    try:
        return VIEWS[name]
    except KeyError:
        raise TinyTLError(f"unknown view {name!r}; valid: {', '.join(VIEWS)}") from None

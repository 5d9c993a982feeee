"""Training memory of super-net sub-nets, from the configuration alone: per-block tables, vectorised lookups.

Each sub-net is the walk's layer sequence with whole blocks left out, and the paper view prices a layer from
its kind, input/output sizes and whether its weight trains. So the layer sizes are derived here from the
architecture (conv output (h - 1) // stride + 1, the lite branch's ceil-mode 2x2 pool), priced with the
paper view's own rule functions, and summed per block slot and expand ratio into stored bytes and an
in-block peak. A sub-net's peak is then max(head, prefix-stored + block peak, ..., all stored + tail), as
in `tinytl.memory.analysis.analyze`; tests check the two agree on extracted sub-nets.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from types import SimpleNamespace

import numpy as np
import torch

from tinytl.errors import TinyTLError
from tinytl.validation import check_batch_size, check_frozen_bits
from tinytl.memory.views import ACT_BYTES, LayerGrads, ViewContext, get_view
from tinytl.models.layers import check_norm
from tinytl.models.proxylessnas import FEATURE_CHANNELS, FIRST_BLOCK_CHANNELS, STEM_CHANNELS
from tinytl.models.supernet import (EXPANDS, KERNELS, LAST_BLOCK, NUM_SLOTS, STAGE_WIDTHS, SubnetConfig,
                                    SubnetModel, largest_subnet, lite_kernels, slot_layout, smallest_subnet)
from tinytl.policies import POLICIES, classifier_name, trainable_names
from tinytl.search.space import E_GENES, K_GENES, R_GENE, active_mask, check_resolutions, encode

# (parameter-owner name, kind, input numel, output numel, groups, {param suffix: numel}), per sample
Layer = tuple[str, str, int, int, int, dict[str, int]]


def _conv(role: str, cin: int, cout: int, h: int, k: int, stride: int, groups: int = 1) -> tuple[Layer, int]:
    ho = (h - 1) // stride + 1
    return (role, "conv", cin * h * h, cout * ho * ho, groups, {"weight": cout * cin // groups * k * k}), ho


def _norm_act(role: str, c: int, h: int, act: bool = True) -> list[Layer]:
    layers = [(f"{role}.norm", "norm", c * h * h, c * h * h, 1, {"weight": c, "bias": c})]
    return layers + [(f"{role}.act", "relu", c * h * h, c * h * h, 1, {})] if act else layers


def _cna(role: str, cin: int, cout: int, h: int, k: int, stride: int = 1, groups: int = 1,
         act: bool = True) -> tuple[list[Layer], int]:
    conv, ho = _conv(f"{role}.conv", cin, cout, h, k, stride, groups)
    return [conv] + _norm_act(role, cout, ho, act), ho


def block_layers(cin: int, cout: int, expand: int, kernel: int, stride: int, h: int,
                 lite_kernel: int | None) -> tuple[list[Layer], int]:
    """Priced layers of an MBBlock at input size h, in forward order (names relative to the block)."""
    mid = cin * expand
    layers: list[Layer] = []
    if expand != 1:
        layers += _cna("conv.expand", cin, mid, h, 1)[0]
    dw, ho = _cna("conv.depthwise", mid, mid, h, kernel, stride, groups=mid)
    layers += dw + _cna("conv.project", mid, cout, ho, 1, act=False)[0]
    if lite_kernel:
        hp = (h + 1) // 2  # AvgPool2d(2, 2, ceil_mode=True)
        conv1, hl = _conv("lite.conv1", cin, cin, hp, lite_kernel, stride, groups=2 if cin % 2 == 0 else 1)
        conv2, _ = _conv("lite.conv2", cin, cout, hl, 1, 1)
        layers += [conv1, ("lite.norm1", "norm", cin * hl * hl, cin * hl * hl, 1, {"weight": cin, "bias": cin}),
                   ("lite.act", "relu", cin * hl * hl, cin * hl * hl, 1, {}), conv2,
                   ("lite.final_norm", "norm", cout * hl * hl, cout * hl * hl, 1, {"weight": cout, "bias": cout})]
    return layers, ho


@dataclass(frozen=True)
class _Priced:
    stored: int  # per-sample bytes kept for backward by the segment
    peak: int  # max over its layers of tmp + stored earlier in the segment + residual
    params: int
    trainable: int


def _price(layers: list[Layer], prefix: str, trainable: set[str], residual: int, ctx: ViewContext) -> _Priced:
    rules = get_view("paper")
    stored = peak = params = train = 0
    for role, kind, n_in, n_out, groups, pnums in layers:
        record = SimpleNamespace(kind=kind, input_numel=n_in, output_numel=n_out, module=SimpleNamespace(groups=groups))
        weight = f"{prefix}{role}.weight" in trainable
        cost = rules.cost(record, LayerGrads(weight=weight, bias=f"{prefix}{role}.bias" in trainable, input=False), ctx)
        peak = max(peak, cost.tmp + stored + ACT_BYTES * residual)
        stored += cost.stored
        params += sum(pnums.values())
        train += sum(n for suffix, n in pnums.items() if f"{prefix}{role}.{suffix}" in trainable)
    return _Priced(stored, peak, params, train)


@dataclass(frozen=True)
class MemoryTable:
    """Per-resolution tables of one (classes, policy, norm, lite) setting; rows of `genes` index into them."""

    resolutions: tuple[int, ...]
    head: np.ndarray  # [R, 2]: stored, peak of stem + first block
    tail: np.ndarray  # [R, 2]: stored, peak of last block + feature mix + classifier
    stored: np.ndarray  # [R, 20, 3] per slot and expand
    peak: np.ndarray  # [R, 20, 3]
    params: np.ndarray  # [20, 3, 3] per slot, expand, kernel
    trainable: np.ndarray  # [20, 3, 3]
    fixed_params: int
    fixed_trainable: int

    def total_bytes(self, genes: np.ndarray, batch_size: int = 8, frozen_bits: int = 8) -> np.ndarray:
        """Training memory in bytes (paper view) of every gene row: batch * activation peak + parameters."""
        active = active_mask(genes)
        r = genes[:, R_GENE]
        slots = np.arange(NUM_SLOTS)[None, :]
        e, k = genes[:, E_GENES], genes[:, K_GENES]
        stored = np.where(active, self.stored[r[:, None], slots, e], 0)
        before = self.head[r, 0][:, None] + np.cumsum(stored, axis=1) - stored
        inner = np.where(active, before + self.peak[r[:, None], slots, e], 0).max(axis=1)
        total_stored = self.head[r, 0] + stored.sum(axis=1)
        peak = np.maximum(np.maximum(self.head[r, 1], inner), total_stored + self.tail[r, 1])
        n = self.fixed_params + np.where(active, self.params[slots, e, k], 0).sum(axis=1)
        t = self.fixed_trainable + np.where(active, self.trainable[slots, e, k], 0).sum(axis=1)
        return batch_size * peak + 4 * t + (n - t) * frozen_bits // 8

    @cached_property
    def _lists(self) -> tuple[list, ...]:
        """The tables as nested Python lists: one sub-net is faster to price in plain Python than in numpy."""
        return tuple(a.tolist() for a in (self.head, self.tail, self.stored, self.peak, self.params, self.trainable))

    def config_bytes(self, config: SubnetConfig, resolution: int, batch_size: int = 8, frozen_bits: int = 8) -> int:
        """Training memory in bytes of one sub-net at one of the table's resolutions (same sum as total_bytes)."""
        ri = self.resolutions.index(resolution)
        head, tail, stored, peak, params, train = self._lists
        prefix, top = head[ri]
        n, t = self.fixed_params, self.fixed_trainable
        for slot in config.active_slots():
            ei, ki = EXPANDS.index(config.e[slot]), KERNELS.index(config.ks[slot])
            top = max(top, prefix + peak[ri][slot][ei])
            prefix += stored[ri][slot][ei]
            n += params[slot][ei][ki]
            t += train[slot][ei][ki]
        top = max(top, prefix + tail[ri][1])
        return batch_size * top + 4 * t + (n - t) * frozen_bits // 8

    def smallest_bytes(self, batch_size: int = 8, frozen_bits: int = 8) -> tuple[int, int]:
        """(bytes, resolution) of the cheapest reachable point: depth 2, expand 3, kernel 3 at each resolution.

        Memory never falls when a block is added or a width, kernel or resolution grows (every size and
        every stored term is monotone), so the minimum is the smallest sub-net at some resolution.
        """
        genes = np.stack([encode(smallest_subnet(), r, self.resolutions) for r in self.resolutions])
        totals = self.total_bytes(genes, batch_size, frozen_bits)
        i = int(totals.argmin())
        return int(totals[i]), self.resolutions[i]


def _check_setting(policy: str, num_classes: int, norm: str) -> None:
    if policy not in POLICIES:
        raise TinyTLError(f"sub-net memory prices the canonical policies ({', '.join(POLICIES)}), not {policy!r}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise TinyTLError(f"classes must be an integer >= 1, got {num_classes!r}")
    check_norm(norm)


@lru_cache(maxsize=64)
def memory_table(resolutions: tuple[int, ...], num_classes: int, policy: str = "lite+bias",
                 lite_residual: bool = True, norm: str = "gn") -> MemoryTable:
    """Build (once per setting) the tables every sub-net lookup reads."""
    _check_setting(policy, num_classes, norm)
    resolutions = check_resolutions(resolutions)
    with torch.device("meta"):
        reference = SubnetModel(largest_subnet(), num_classes, lite_residual, norm)
    trainable = trainable_names(reference, policy)
    head_name = classifier_name(reference)
    ctx = ViewContext(any_backward=any(not p.startswith(head_name + ".") for p in trainable), norm=norm)
    layout, lite = slot_layout(), lite_kernels()
    last = len(reference.blocks) - 1
    heads, tails = [], []
    stored = np.zeros((len(resolutions), NUM_SLOTS, len(EXPANDS)), np.int64)
    peak = np.zeros_like(stored)
    params = np.zeros((NUM_SLOTS, len(EXPANDS), len(KERNELS)), np.int64)
    train = np.zeros_like(params)
    for ri, res in enumerate(resolutions):
        stem, h = _cna("first_conv", 3, STEM_CHANNELS, res, 3, 2)
        block0, h = block_layers(STEM_CHANNELS, FIRST_BLOCK_CHANNELS, 1, 3, 1, h, None)
        head = _price(stem + [(f"blocks.0.{n}", *rest) for n, *rest in block0], "", trainable, 0, ctx)
        for slot, (_, cin, cout, stride) in enumerate(layout):
            identity = stride == 1 and cin == cout
            for ei, e in enumerate(EXPANDS):
                for ki, k in enumerate(KERNELS):
                    layers, ho = block_layers(cin, cout, e, k, stride, h, lite[slot] if lite_residual else None)
                    priced = _price(layers, f"blocks.{1 + slot}.", trainable, cin * h * h if identity else 0, ctx)
                    stored[ri, slot, ei], peak[ri, slot, ei] = priced.stored, priced.peak
                    params[slot, ei, ki], train[slot, ei, ki] = priced.params, priced.trainable
            h = ho
        e, k, cout = LAST_BLOCK
        layers, h = block_layers(STAGE_WIDTHS[-1], cout, e, k, 1, h, lite[-1] if lite_residual else None)
        mix, h = _cna("feature_mix", cout, FEATURE_CHANNELS, h, 1)
        classifier = (head_name, "linear", FEATURE_CHANNELS, num_classes, 1,
                      {"weight": FEATURE_CHANNELS * num_classes, "bias": num_classes})
        tail = _price([(f"blocks.{last}.{n}", *rest) for n, *rest in layers] + mix + [classifier], "",
                      trainable, 0, ctx)
        heads.append((head.stored, head.peak))
        tails.append((tail.stored, tail.peak))
    return MemoryTable(resolutions, np.array(heads, np.int64), np.array(tails, np.int64), stored, peak, params,
                       train, head.params + tail.params, head.trainable + tail.trainable)


def subnet_memory_bytes(config: SubnetConfig, resolution: int, policy: str = "lite+bias", batch_size: int = 8,
                        num_classes: int = 1000, frozen_bits: int = 8, lite_residual: bool = True,
                        norm: str = "gn") -> int:
    """Training memory (bytes, paper view) of one sub-net: equals `profile_memory` of
    `ModelSetting('supernet', ..., subnet=config)`."""
    check_batch_size(batch_size)
    check_frozen_bits(frozen_bits)
    table = memory_table((resolution,), num_classes, policy, lite_residual, norm)
    return table.config_bytes(config, resolution, batch_size, frozen_bits)


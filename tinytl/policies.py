"""Update policies (which parameters train), applied by setting requires_grad; docs/PAPER.md, "Policies".

`trainable_names` is the one place that decides what trains; everything else reads its answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from tinytl.errors import TinyTLError
from tinytl.models.layers import LiteResidual

POLICIES: tuple[str, ...] = ("full", "last", "norm+last", "bias", "lite", "lite+bias")
PAPER_NAMES = {"full": "FT-Full", "last": "FT-Last", "norm+last": "FT-Norm+Last", "bias": "TinyTL-B",
               "lite": "TinyTL-L", "lite+bias": "TinyTL-L+B"}
NORM_TYPES = (_BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)
CUSTOM_PREFIX = "custom:"

Policy = str | Sequence[str]


def classifier_name(model: nn.Module) -> str:
    """Name of the classifier: the last nn.Linear in module order (the head every backbone gets anew), or
    the last convolution for a model with a convolutional classifier (SqueezeNet)."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        linears = [name for name, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)]
    if not linears:
        raise TinyTLError("model has no nn.Linear or convolutional classifier")
    return linears[-1]


def _under(name: str, prefixes: set[str]) -> bool:
    """Whether `name` is one of `prefixes` or lies under one (a set lookup per ancestor, not a scan per prefix)."""
    parts = name.split(".")
    return any(".".join(parts[:i]) in prefixes for i in range(1, len(parts) + 1))


def parse_policy(policy: Policy) -> tuple[str, tuple[str, ...]]:
    """Normalise a policy to (name, patterns): a canonical name, or 'custom' with parameter-name globs."""
    if not isinstance(policy, str):
        patterns = tuple(policy)
    elif policy in POLICIES:
        return policy, ()
    elif policy.startswith(CUSTOM_PREFIX):
        patterns = tuple(p.strip() for p in policy[len(CUSTOM_PREFIX):].split(",") if p.strip())
    else:
        raise TinyTLError(f"unknown policy {policy!r}; valid: {', '.join(POLICIES)}, "
                          f"or {CUSTOM_PREFIX}PATTERN[,PATTERN...] (parameter-name globs)")
    if not patterns:
        raise TinyTLError("a custom policy needs at least one parameter-name pattern")
    return "custom", patterns


def policy_label(policy: Policy) -> str:
    """A short display string for a policy."""
    name, patterns = parse_policy(policy)
    return name if name != "custom" else CUSTOM_PREFIX + ",".join(patterns)


def trainable_names(model: nn.Module, policy: Policy) -> set[str]:
    """Names of the parameters that train under a policy (raises TinyTLError if it cannot apply)."""
    name, patterns = parse_policy(policy)
    params = dict(model.named_parameters())
    if name == "custom":
        chosen = {p for p in params if any(fnmatchcase(p, pat) for pat in patterns)}
        if not chosen:
            raise TinyTLError(f"custom policy patterns {list(patterns)} match no parameter")
        return chosen
    if name == "full":
        return set(params)
    head = classifier_name(model)
    chosen = {p for p in params if _under(p, {head})}
    if name == "last":
        return chosen
    if name == "norm+last":
        norms = {n for n, m in model.named_modules() if isinstance(m, NORM_TYPES)}
        return chosen | {p for p in params if _under(p, norms)}
    lites = {n for n, m in model.named_modules() if isinstance(m, LiteResidual)}
    if name in ("lite", "lite+bias") and not lites:
        raise TinyTLError(f"policy {name!r} needs lite residual branches, and this model has none "
                          "(built without them, or its architecture has no block to host them)")
    if name in ("bias", "lite+bias"):
        chosen |= {p for p in params if p.rsplit(".", 1)[-1] == "bias"}
    if name in ("lite", "lite+bias"):
        chosen |= {p for p in params if _under(p, lites)}
    if name == "lite+bias":  # the lite branch's final-norm shift duplicates the main branch's biases
        chosen -= {f"{lite}.final_norm.bias" for lite in lites}
    return chosen


def apply_policy(model: nn.Module, policy: Policy) -> set[str]:
    """Set requires_grad on every parameter by the policy; return the trainable names."""
    names = trainable_names(model, policy)
    for pname, p in model.named_parameters():
        p.requires_grad_(pname in names)
    return names

"""Load pretrained weights (the shipped checkpoint, a state-dict file, a torchvision weight name) and save compact
ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tinytl.errors import TinyTLError
from tinytl.paths import shipped_asset
from tinytl.models.layers import LiteResidual
from tinytl.policies import classifier_name
from tinytl.storage import check_input_file, load_file, save_file, to_half

SHIPPED = {"proxylessnas_mobile": shipped_asset("proxylessnas_mobile_glyphs.pt")}
CHECKPOINT_FORMAT = "tinytl-checkpoint-1"
NO_WEIGHTS = ("none", "random")


@dataclass(frozen=True)
class LoadReport:
    """What a load did: where from, how many tensors loaded, which model tensors kept their fresh init."""

    source: str
    loaded: int
    fresh: tuple[str, ...]


def save_compact(model: nn.Module, path: str | Path, backbone: str, meta: dict) -> int:
    """Save a model with floating tensors in fp16 (its source classifier too, to continue pretraining); return bytes."""
    return save_file({"format": CHECKPOINT_FORMAT, "backbone": backbone, "meta": meta,
                      "state_dict": to_half(model.state_dict())}, path)


def _hub_file(weight_name: str) -> Path:
    """Local torch hub cache file for a torchvision weight name like 'MobileNet_V2_Weights.IMAGENET1K_V1'."""
    from torchvision.models import get_weight

    try:
        weights = get_weight(weight_name)
    except (ValueError, KeyError, AttributeError):
        raise TinyTLError(f"weights {weight_name!r}: not a file, and not a torchvision weight name "
                          "(e.g. MobileNet_V2_Weights.IMAGENET1K_V1)") from None
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not path.is_file():
        raise TinyTLError(f"weights {weight_name!r} are not in the local torch cache (expected {path}); "
                          "there is no download here: copy the file there or pass --weights PATH")
    return path


def resolve_weights(weights: str, backbone: str) -> Path | None:
    """The file behind a --weights value: 'shipped', a path, or a torchvision weight name; None for no weights."""
    if weights in NO_WEIGHTS:
        return None
    if weights == "shipped":
        if backbone not in SHIPPED:
            raise TinyTLError(f"no checkpoint ships for backbone {backbone!r} (one ships for "
                              f"{', '.join(SHIPPED)}); pass --weights PATH or --weights none")
        if not SHIPPED[backbone].is_file():
            raise TinyTLError(f"the shipped checkpoint {SHIPPED[backbone]} is missing from this install "
                              "(reinstall the package, or make it as tinytl/assets/README.md says)")
        return SHIPPED[backbone]
    path = Path(weights).expanduser()
    if path.exists():  # a file, or a folder / pipe / device refused with one line (a pipe would block a read)
        return check_input_file(path, "weights file")
    if path.suffix in (".pt", ".pth", ".bin") or "/" in weights:
        raise TinyTLError(f"weights file {weights!r} does not exist")
    return _hub_file(weights)


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """A state dict (and the metadata of our own format) from a file, safely (weights_only)."""
    obj = load_file(path, "checkpoint")
    meta: dict = {}
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        meta, obj = obj.get("meta", {}), obj.get("state_dict")
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise TinyTLError(f"checkpoint {path} does not hold a state dict (name -> tensor)")
    return obj, meta


def _host_prefixes(model: nn.Module) -> list[str]:
    """Names of torchvision blocks wrapped with a lite residual (their own weights moved under '.block')."""
    return [n for n, m in model.named_modules() if hasattr(m, "block") and hasattr(m, "lite")]


def load_weights(model: nn.Module, weights: str, backbone: str) -> LoadReport:
    """Load pretrained weights into a freshly built model; the classifier and lite branches may stay fresh."""
    path = resolve_weights(weights, backbone)
    if path is None:
        return LoadReport("random init", 0, tuple(model.state_dict()))
    state, _ = read_state_dict(path)
    hosts = _host_prefixes(model)
    for prefix in hosts:
        state = {(f"{prefix}.block.{k[len(prefix) + 1:]}" if k.startswith(prefix + ".") and
                  not k.startswith(prefix + ".block.") and not k.startswith(prefix + ".lite.") else k): v
                 for k, v in state.items()}
    target = model.state_dict()
    head = classifier_name(model)
    state = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    unexpected = sorted(set(state) - set(target))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}" for k in state
             if k in target and state[k].shape != target[k].shape]
    lites = [n for n, m in model.named_modules() if isinstance(m, LiteResidual)]
    optional = [head] + lites
    missing = [k for k in target if k not in state and not any(k.startswith(p + ".") for p in optional)]
    if unexpected or wrong or missing:
        parts = [f"{label}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''} ({len(items)})"
                 for label, items in (("unexpected", unexpected), ("shape mismatch", wrong), ("missing", missing))
                 if items]
        raise TinyTLError(f"checkpoint {path.name} does not fit {backbone} as built "
                          f"(check --backbone, --norm, --no-lite-residual): {'; '.join(parts)}")
    model.load_state_dict({k: v.to(target[k].dtype) for k, v in state.items()}, strict=False)
    return LoadReport(str(path), len(state), tuple(k for k in target if k not in state))

"""Elastic ProxylessNAS-style super-net (depth, expand, kernel per block) and its extractable sub-nets.

Space (docs/PAPER.md, super-net space): a fixed stem (3x3 stride 2 to 32) and first block (MBConv expand 1, k3, to 16),
then 5 elastic stages of up to 4 blocks with out channels 24, 40, 80, 96, 192 and first-block strides
2, 2, 2, 1, 2, then a fixed (expand 6, k7) block to 320, a 1x1 conv to 1280, pool and classifier (the
ProxylessNAS-Mobile / OFA-Proxyless layout). A sub-net keeps the first `d` blocks of each stage; a block
uses the first `mid = in * e` channels of the expand-6 weights and the centre `k x k` of the 7x7 depthwise
kernel. Lite residuals depend on neither, so every sub-net shares them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tinytl.errors import TinyTLError
from tinytl.paths import shipped_asset
from tinytl.models.layers import FrozenStatsBatchNorm2d, StdConv2d, group_count, lite_kernel_size, standardize_weight
from tinytl.models.proxylessnas import FEATURE_CHANNELS, FIRST_BLOCK_CHANNELS, STEM_CHANNELS, MBBlock, conv_norm_act
from tinytl.models.registry import register_backbone
from tinytl.storage import load_file, save_file, to_float, to_half

STAGE_WIDTHS = (24, 40, 80, 96, 192)
STAGE_STRIDES = (2, 2, 2, 1, 2)
MAX_DEPTH = 4
DEPTHS = (2, 3, 4)
EXPANDS = (3, 4, 6)
KERNELS = (3, 5, 7)
LAST_BLOCK = (6, 7, 320)  # (expand, kernel, out) of the fixed block after the elastic stages
NUM_STAGES = len(STAGE_WIDTHS)
NUM_SLOTS = NUM_STAGES * MAX_DEPTH
DEFAULT_CHECKPOINT = shipped_asset("supernet.pt")
MAX_SUBNET_TEXT = 2000  # far above any real sub-net's JSON (~150 characters)


@dataclass(frozen=True)
class SubnetConfig:
    """One sub-net: depth per stage (5), expand and kernel per block slot (20; slots beyond a depth unused)."""

    d: tuple[int, ...]
    e: tuple[int, ...]
    ks: tuple[int, ...]

    def active_slots(self) -> list[int]:
        """Slot indices (stage * 4 + position) of the blocks this sub-net runs."""
        return [s * MAX_DEPTH + j for s in range(NUM_STAGES) for j in range(self.d[s])]

    def to_dict(self) -> dict[str, list[int]]:
        return {"d": list(self.d), "e": list(self.e), "ks": list(self.ks)}

    def to_json(self) -> str:
        """Compact JSON, the form `--subnet` takes and the memory cache keys on."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def canonical(self) -> SubnetConfig:
        """Same sub-net with unused slots set to the smallest choice, so equal networks compare equal."""
        used = set(self.active_slots())
        return SubnetConfig(self.d, tuple(v if i in used else EXPANDS[0] for i, v in enumerate(self.e)),
                            tuple(v if i in used else KERNELS[0] for i, v in enumerate(self.ks)))


def largest_subnet() -> SubnetConfig:
    """The whole super-net: depth 4, expand 6, kernel 7 everywhere."""
    return SubnetConfig((MAX_DEPTH,) * NUM_STAGES, (max(EXPANDS),) * NUM_SLOTS, (max(KERNELS),) * NUM_SLOTS)


def smallest_subnet() -> SubnetConfig:
    """The smallest sub-net: depth 2, expand 3, kernel 3 everywhere."""
    return SubnetConfig((min(DEPTHS),) * NUM_STAGES, (min(EXPANDS),) * NUM_SLOTS, (min(KERNELS),) * NUM_SLOTS)


def sample_subnet(rng: random.Random) -> SubnetConfig:
    """A uniformly random sub-net (each gene independently)."""
    return SubnetConfig(tuple(rng.choice(DEPTHS) for _ in range(NUM_STAGES)),
                        tuple(rng.choice(EXPANDS) for _ in range(NUM_SLOTS)),
                        tuple(rng.choice(KERNELS) for _ in range(NUM_SLOTS)))


def _int_list(value: object, key: str, length: int, allowed: tuple[int, ...]) -> tuple[int, ...]:
    ok = (isinstance(value, (list, tuple)) and len(value) == length
          and all(isinstance(v, int) and not isinstance(v, bool) and v in allowed for v in value))
    if not ok:
        raise TinyTLError(f"subnet {key!r} must be a list of {length} integers from {set(allowed)}, got {value!r}")
    return tuple(value)


def parse_subnet(value: str | Mapping | SubnetConfig) -> SubnetConfig:
    """A SubnetConfig from JSON text, a dict or a config; out-of-space or malformed values raise TinyTLError."""
    if isinstance(value, SubnetConfig):
        value = value.to_dict()
    if isinstance(value, str):
        if len(value) > MAX_SUBNET_TEXT:
            raise TinyTLError(f"subnet JSON is {len(value)} characters; a sub-net needs under {MAX_SUBNET_TEXT}")
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, RecursionError) as err:
            reason = err.msg if isinstance(err, json.JSONDecodeError) else "nested too deeply"
            raise TinyTLError(f"subnet is not valid JSON ({reason}): {value[:80]!r}") from None
    if not isinstance(value, Mapping) or set(value) != {"d", "e", "ks"}:
        raise TinyTLError('subnet must be a JSON object with exactly the keys "d" (5 depths), "e" (20 expand '
                          f'ratios) and "ks" (20 kernel sizes), got {value!r}')
    return SubnetConfig(_int_list(value["d"], "d", NUM_STAGES, DEPTHS),
                        _int_list(value["e"], "e", NUM_SLOTS, EXPANDS),
                        _int_list(value["ks"], "ks", NUM_SLOTS, KERNELS))


def slot_layout() -> list[tuple[int, int, int, int]]:
    """(stage, in channels, out channels, stride) of each of the 20 block slots."""
    layout, cin = [], FIRST_BLOCK_CHANNELS
    for s, (width, stride) in enumerate(zip(STAGE_WIDTHS, STAGE_STRIDES)):
        for j in range(MAX_DEPTH):
            layout.append((s, cin if j == 0 else width, width, stride if j == 0 else 1))
        cin = width
    return layout


def lite_kernels() -> list[int]:
    """Lite-residual kernel per slot, then for the last block (same rule as ProxylessNAS-Mobile)."""
    kernels, res = [], 128 / 2
    for _, _, _, stride in slot_layout():
        kernels.append(lite_kernel_size(res))
        res /= stride
    return kernels + [lite_kernel_size(res)]


def _sliced_conv(conv: nn.Conv2d, x: torch.Tensor, out_c: int, in_c: int | None, kernel: int,
                 stride: int = 1, groups: int = 1) -> torch.Tensor:
    """Run `conv` with its first out/in channels and the centre kernel x kernel window of its weight."""
    w = conv.weight[:out_c] if in_c is None else conv.weight[:out_c, :in_c]
    off = (w.shape[-1] - kernel) // 2
    w = w[..., off:off + kernel, off:off + kernel]
    if isinstance(conv, StdConv2d):
        w = standardize_weight(w)
    return F.conv2d(x, w, None, stride, kernel // 2, 1, groups)


def _sliced_norm(norm: nn.Module, x: torch.Tensor, channels: int) -> torch.Tensor:
    """Run a GroupNorm / BatchNorm on the first `channels` of its parameters (and running statistics)."""
    if isinstance(norm, nn.GroupNorm):
        return F.group_norm(x, group_count(channels), norm.weight[:channels], norm.bias[:channels], norm.eps)
    training = norm.training and not isinstance(norm, FrozenStatsBatchNorm2d)
    return F.batch_norm(x, norm.running_mean[:channels], norm.running_var[:channels], norm.weight[:channels],
                        norm.bias[:channels], training, norm.momentum or 0.0, norm.eps)


class ElasticMBBlock(MBBlock):
    """An MBBlock built at expand 6 / kernel 7 that runs with any active expand ratio and kernel size."""

    def __init__(self, cin: int, cout: int, stride: int, norm: str, lite_kernel: int | None) -> None:
        super().__init__(cin, cout, max(EXPANDS), max(KERNELS), stride, norm, lite_kernel)
        self.cin, self.cout, self.stride = cin, cout, stride
        self.active_expand, self.active_kernel = max(EXPANDS), max(KERNELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid, k, c = self.cin * self.active_expand, self.active_kernel, self.conv
        y = c.expand.act(_sliced_norm(c.expand.norm, _sliced_conv(c.expand.conv, x, mid, self.cin, 1), mid))
        y = _sliced_conv(c.depthwise.conv, y, mid, None, k, self.stride, groups=mid)
        y = c.depthwise.act(_sliced_norm(c.depthwise.norm, y, mid))
        out = _sliced_norm(c.project.norm, _sliced_conv(c.project.conv, y, self.cout, mid, 1), self.cout)
        if self.lite is not None:
            out = out + self.lite(x, out.shape[-2:])
        if self.identity_shortcut:
            out = out + x
        return out

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Reorder mid channels by importance (L1 of the project conv's input column), most important first.

        Under GroupNorm whole groups move (ranked by their summed importance, channels ranked inside each
        group), so the full-width block computes exactly the same function; under BatchNorm channels move singly.
        """
        c = self.conv
        importance = c.project.conv.weight.abs().sum(dim=(0, 2, 3))
        if isinstance(c.expand.norm, nn.GroupNorm):
            size = importance.numel() // c.expand.norm.num_groups
            groups = importance.view(-1, size)
            inner = groups.argsort(dim=1, descending=True)
            order = groups.sum(1).argsort(descending=True)
            perm = (inner[order] + order[:, None] * size).flatten()
        else:
            perm = importance.argsort(descending=True)
        for module in (c.expand.conv, c.expand.norm, c.depthwise.conv, c.depthwise.norm):
            for tensor in list(module.parameters(recurse=False)) + list(module.buffers(recurse=False)):
                if tensor.dim() > 0:
                    tensor.copy_(tensor[perm])
        c.project.conv.weight.copy_(c.project.conv.weight[:, perm])


def _block_specs(config: SubnetConfig, lite_residual: bool) -> list[tuple[int, int, int, int, int, int | None]]:
    """(in, out, expand, kernel, stride, lite kernel) of every block a sub-net runs, fixed blocks included."""
    lite = lite_kernels()
    layout = slot_layout()
    specs = [(STEM_CHANNELS, FIRST_BLOCK_CHANNELS, 1, 3, 1, None)]
    for slot in config.active_slots():
        _, cin, cout, stride = layout[slot]
        specs.append((cin, cout, config.e[slot], config.ks[slot], stride, lite[slot] if lite_residual else None))
    e, k, cout = LAST_BLOCK
    specs.append((STAGE_WIDTHS[-1], cout, e, k, 1, lite[-1] if lite_residual else None))
    return specs


class _Backbone(nn.Module):
    """Stem, blocks, 1x1 feature mix, pool and classifier: the frame shared by super-net and sub-nets."""

    def __init__(self, blocks: list[nn.Module], num_classes: int, norm: str, dropout: float) -> None:
        super().__init__()
        self.first_conv = conv_norm_act(norm, 3, STEM_CHANNELS, 3, 2)
        self.blocks = nn.ModuleList(blocks)
        self.feature_mix = conv_norm_act(norm, LAST_BLOCK[2], FEATURE_CHANNELS, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(FEATURE_CHANNELS, num_classes))

    def run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.run_blocks(self.first_conv(x))
        return self.classifier(self.pool(self.feature_mix(x)).flatten(1))


class SubnetModel(_Backbone):
    """A standalone static sub-net (plain MBBlocks), the model every memory walk and fine-tune of a sub-net uses."""

    def __init__(self, config: SubnetConfig, num_classes: int = 1000, lite_residual: bool = True,
                 norm: str = "gn", dropout: float = 0.2) -> None:
        blocks = [MBBlock(cin, cout, e, k, stride, norm, lite_k)
                  for cin, cout, e, k, stride, lite_k in _block_specs(config, lite_residual)]
        super().__init__(blocks, num_classes, norm, dropout)
        self.config = config


class ProxylessSuperNet(_Backbone):
    """The elastic super-net: 20 elastic block slots; `set_active` picks the sub-net the forward runs."""

    def __init__(self, num_classes: int = 1000, lite_residual: bool = True, norm: str = "gn",
                 dropout: float = 0.2) -> None:
        lite = lite_kernels()
        blocks: list[nn.Module] = [MBBlock(STEM_CHANNELS, FIRST_BLOCK_CHANNELS, 1, 3, 1, norm)]
        blocks += [ElasticMBBlock(cin, cout, stride, norm, lite[slot] if lite_residual else None)
                   for slot, (_, cin, cout, stride) in enumerate(slot_layout())]
        e, k, cout = LAST_BLOCK
        blocks.append(MBBlock(STAGE_WIDTHS[-1], cout, e, k, 1, norm, lite[-1] if lite_residual else None))
        super().__init__(blocks, num_classes, norm, dropout)
        self.lite_residual, self.norm, self.dropout = lite_residual, norm, dropout
        self.active = largest_subnet()

    def set_active(self, config: SubnetConfig | str | Mapping) -> SubnetConfig:
        """Make the forward run this sub-net (weights shared); returns the parsed config."""
        self.active = parse_subnet(config)
        for slot in range(NUM_SLOTS):
            block = self.blocks[1 + slot]
            block.active_expand, block.active_kernel = self.active.e[slot], self.active.ks[slot]
        return self.active

    def run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks[0](x)
        for slot in self.active.active_slots():
            x = self.blocks[1 + slot](x)
        return self.blocks[-1](x)

    def sort_channels(self) -> None:
        """Sort every elastic block's channels by importance (the full network's function is unchanged)."""
        for block in self.blocks[1:-1]:
            block.sort_channels()

    @torch.no_grad()
    def extract(self, config: SubnetConfig | str | Mapping | None = None) -> SubnetModel:
        """A standalone SubnetModel holding this super-net's weights for a sub-net (default: the active one)."""
        config = self.active if config is None else parse_subnet(config)
        device = self.classifier[1].weight.device
        with torch.device(device):
            model = SubnetModel(config, self.classifier[1].out_features, self.lite_residual, self.norm,
                                self.dropout)
        block_map = [0] + [1 + slot for slot in config.active_slots()] + [len(self.blocks) - 1]
        source = self.state_dict()
        target = model.state_dict()
        for name, tensor in target.items():
            parts = name.split(".")
            if parts[0] == "blocks":
                parts[1] = str(block_map[int(parts[1])])
            src = source[".".join(parts)]
            index = tuple(slice((n - t) // 2 if dim >= 2 else 0, ((n - t) // 2 if dim >= 2 else 0) + t)
                          for dim, (n, t) in enumerate(zip(src.shape, tensor.shape)))
            tensor.copy_(src[index])
        model.train(self.training)
        return model


def save_supernet(model: ProxylessSuperNet, path: str | Path, provenance: Mapping) -> None:
    """Store a super-net's weights in fp16 (halves the file) with its settings and provenance."""
    save_file({"state_dict": to_half(model.state_dict()), "num_classes": model.classifier[1].out_features,
                "lite_residual": model.lite_residual, "norm": model.norm, "provenance": dict(provenance)}, path)


def load_supernet(path: str | Path | None = None, num_classes: int | None = None) -> ProxylessSuperNet:
    """Load a stored super-net (default: the shipped supernet.pt), every field it uses checked before anything is
    built; a new `num_classes` head if given."""
    from tinytl.models.layers import NORMS
    from tinytl.storage import check_fields, check_input_file, is_int_in, is_json_like, is_tensor_dict
    from tinytl.validation import MAX_CLASSES, check_classes

    what = "super-net checkpoint"
    path = check_input_file(path if path else DEFAULT_CHECKPOINT, what,
                            "make it with `python -m tinytl supernet-pretrain`")
    if num_classes is not None:
        check_classes(num_classes)
    ckpt = load_file(path, what, ("state_dict", "num_classes", "lite_residual", "norm"))
    check_fields(ckpt, {
        "state_dict": (is_tensor_dict, "a state dict (name -> tensor)"),
        "num_classes": (is_int_in(1, MAX_CLASSES), f"an integer in 1..{MAX_CLASSES}"),
        "lite_residual": (lambda v: isinstance(v, bool), "true or false"),
        "norm": (lambda v: v in NORMS, f"one of {', '.join(NORMS)}"),
        "provenance": (lambda v: isinstance(v, dict) and is_json_like(v), "a dict of plain data")}, path, what)
    head = ckpt["state_dict"].get("classifier.1.weight")
    if head is not None and tuple(head.shape) != (ckpt["num_classes"], FEATURE_CHANNELS):
        raise TinyTLError(f"{what} {path} is damaged: field num_classes is {ckpt['num_classes']}, but its classifier "
                          f"holds {tuple(head.shape)} weights")
    model = ProxylessSuperNet(ckpt["num_classes"], ckpt["lite_residual"], ckpt["norm"])
    try:
        model.load_state_dict(to_float(ckpt["state_dict"]))
    except RuntimeError as err:
        detail = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err))
        raise TinyTLError(f"super-net checkpoint {path} does not fit the super-net ({detail[:120]})") from None
    model.provenance = ckpt.get("provenance", {})
    if num_classes is not None and num_classes != ckpt["num_classes"]:
        model.classifier[1] = nn.Linear(FEATURE_CHANNELS, num_classes)
    return model


@register_backbone("supernet")
def _supernet(num_classes: int, lite_residual: bool, norm: str, subnet: str | Mapping | None = None,
              checkpoint: str | None = None, **options) -> nn.Module:
    """A sub-net of the super-net (default: the largest), with the super-net checkpoint's weights if given."""
    config = parse_subnet(subnet) if subnet is not None else largest_subnet()
    if checkpoint is None:
        return SubnetModel(config, num_classes, lite_residual, norm, **options)
    with torch.device("cpu"):
        supernet = load_supernet(None if checkpoint == "default" else checkpoint, num_classes)
    if (supernet.lite_residual, supernet.norm) != (lite_residual, norm):
        raise TinyTLError(f"checkpoint was made with lite_residual={supernet.lite_residual}, norm={supernet.norm!r}")
    return supernet.extract(config)

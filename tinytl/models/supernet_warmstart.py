"""Warm start of the super-net from a trained fixed ProxylessNAS-Mobile, so that network is one of its sub-nets.

The super-net follows ProxylessNAS-Mobile's layout (same stem, stage widths and strides, same lite residuals),
so each fixed block has a slot: a k < 7 kernel goes into the centre of the 7x7, expand-3 weights into the first
channels. The rest of the space has no fixed counterpart and is initialised the closest way:
- channels beyond a block's fixed expand ratio repeat its channels (expand conv rows, depthwise filters and
  norms copied, the project conv's columns repeated): under GroupNorm the repeats form whole groups with the
  same statistics, and the project conv's weight standardization and norm absorb the scale, so wider sub-nets
  start near the fixed block's function;
- kernel taps outside a fixed kernel start at zero;
- the first elastic stage (24 channels) has depth 2 in ProxylessNAS-Mobile, so its slots 3 and 4 start as
  copies of its second block with the main branch's output norm and the lite branch's final norm zeroed:
  those blocks are identities until trained.
Blocks whose fixed expand ratio is already the largest then get their channels sorted by importance (their
full-width function is unchanged), so that their narrower sub-blocks keep the most important channels.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from tinytl.errors import TinyTLError
from tinytl.models.proxylessnas import PROXYLESS_MOBILE_BLOCKS
from tinytl.models.supernet import EXPANDS, MAX_DEPTH, NUM_SLOTS, STAGE_WIDTHS, ProxylessSuperNet, SubnetConfig


def _fixed_stage_layout() -> list[list[tuple[int, int, int]]]:
    """ProxylessNAS-Mobile's elastic blocks grouped by stage: (fixed block index, expand, kernel)."""
    stages: list[list[tuple[int, int, int]]] = [[] for _ in STAGE_WIDTHS]
    for i, (expand, kernel, _, cout) in enumerate(PROXYLESS_MOBILE_BLOCKS[:-1], start=1):
        stages[STAGE_WIDTHS.index(cout)].append((i, expand, kernel))
    return stages


def proxyless_subnet() -> SubnetConfig:
    """ProxylessNAS-Mobile as a sub-net of the super-net (unused slots at the smallest choice)."""
    d, e, ks = [], [3] * NUM_SLOTS, [3] * NUM_SLOTS
    for s, blocks in enumerate(_fixed_stage_layout()):
        d.append(len(blocks))
        for j, (_, expand, kernel) in enumerate(blocks):
            e[s * MAX_DEPTH + j], ks[s * MAX_DEPTH + j] = expand, kernel
    return SubnetConfig(tuple(d), tuple(e), tuple(ks))


def _slot_sources() -> dict[int, tuple[int, int, int, bool]]:
    """Super-net block index -> (fixed block index, expand, kernel, starts as identity)."""
    sources: dict[int, tuple[int, int, int, bool]] = {}
    for s, blocks in enumerate(_fixed_stage_layout()):
        for j in range(MAX_DEPTH):
            fixed, expand, kernel = blocks[min(j, len(blocks) - 1)]
            sources[1 + s * MAX_DEPTH + j] = (fixed, expand, kernel, j >= len(blocks))
    return sources


def _repeat_channels(t: torch.Tensor, size: int, dim: int = 0) -> torch.Tensor:
    """`t` repeated along `dim` and cut to `size`: the wider channels copy the first ones."""
    reps = -(-size // t.shape[dim])
    return torch.cat([t] * reps, dim=dim).narrow(dim, 0, size)


def _embed_kernel(w: torch.Tensor, size: int) -> torch.Tensor:
    """A k x k kernel in the centre of a zero size x size one."""
    out = w.new_zeros(*w.shape[:-2], size, size)
    off = (size - w.shape[-1]) // 2
    out[..., off:off + w.shape[-1], off:off + w.shape[-1]] = w
    return out


def _block_tensor(name: str, src: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The super-net slot's tensor `name` (relative to the block) from the fixed block's `src`."""
    if name.startswith("lite.") or name.startswith("conv.project.norm"):
        return src
    if name == "conv.project.conv.weight":  # [out, mid, 1, 1]: repeat input columns
        return _repeat_channels(src, target.shape[1], dim=1)
    if name == "conv.depthwise.conv.weight":  # [mid, 1, k, k]
        return _repeat_channels(_embed_kernel(src, target.shape[-1]), target.shape[0])
    return _repeat_channels(src, target.shape[0])  # expand conv rows, expand / depthwise norm vectors


def warm_start(supernet: ProxylessSuperNet, fixed_state: Mapping[str, torch.Tensor]) -> dict:
    """Copy a ProxylessNAS-Mobile state dict (same norm and lite setting) into the super-net, in place.

    Returns what was done, for the file's metadata. The classifier is copied when the class counts agree."""
    target = supernet.state_dict()
    sources = _slot_sources()
    last = len(supernet.blocks) - 1
    fixed_last = len(PROXYLESS_MOBILE_BLOCKS)
    new: dict[str, torch.Tensor] = {}
    for name, tensor in target.items():
        parts = name.split(".")
        if parts[0] != "blocks":
            if not (name.startswith("classifier.") and fixed_state[name].shape != tensor.shape):
                new[name] = fixed_state[name]
            continue
        index, rest = int(parts[1]), ".".join(parts[2:])
        if index in (0, last):
            new[name] = fixed_state[f"blocks.{index if index == 0 else fixed_last}.{rest}"]
            continue
        fixed, _, _, identity = sources[index]
        src = fixed_state.get(f"blocks.{fixed}.{rest}")
        if src is None:
            raise TinyTLError(f"fixed checkpoint has no tensor for blocks.{fixed}.{rest} (lite residual or norm "
                              "setting differs from the super-net's)")
        value = _block_tensor(rest, src, tensor)
        if identity and (rest.startswith("conv.project.norm.") or rest.startswith("lite.final_norm.")):
            value = torch.zeros_like(value)
        new[name] = value
    bad = [k for k, v in new.items() if v.shape != target[k].shape]
    if bad:
        raise TinyTLError(f"fixed checkpoint does not fit the super-net: {bad[:3]}")
    supernet.load_state_dict({k: v.to(target[k].dtype) for k, v in new.items()}, strict=False)
    sorted_slots = [i - 1 for i, (_, expand, _, _) in sources.items() if expand == max(EXPANDS)]
    for slot in sorted_slots:
        supernet.blocks[1 + slot].sort_channels()
    fresh = sorted(set(target) - set(new))
    return {"proxyless_subnet": proxyless_subnet().to_dict(), "fresh_tensors": fresh,
            "identity_slots": sorted(i - 1 for i, src in sources.items() if src[3]), "sorted_slots": sorted_slots}

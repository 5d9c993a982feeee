"""Training-memory numbers as reported in the TinyTL paper (Cai et al., NeurIPS 2020), for overlay markers.

These are the paper's printed values, not computed here; charts label them "paper (reported)".
"""

from __future__ import annotations

# Table 2: ProxylessNAS-Mobile with lite residuals, GroupNorm + WS, 8-bit frozen weights, 102 classes.
PAPER_SETTING = {"backbone": "proxylessnas_mobile", "classes": 102, "lite": True, "norm": "gn", "bits": 8}
TABLE2_RESOLUTION = 224
TABLE2_BATCH = 8
TABLE2_MB = {"last": 30.8, "bias": 31.7, "lite": 37.1, "lite+bias": 37.1, "norm+last": 192.4, "full": 390.8}
# Reported points at other resolutions (batch 8): TinyTL-L+B at 320 px.
OTHER_RESOLUTION_MB = {("lite+bias", 320): 65.0}


def matches_paper_setting(backbone: str, classes: int, lite: bool, norm: str, bits: int) -> bool:
    """True when a setting is the one the paper's numbers were reported for (resolution/batch aside)."""
    given = {"backbone": backbone, "classes": classes, "lite": lite, "norm": norm, "bits": bits}
    return given == PAPER_SETTING


def reported_by_resolution(policy: str, batch_size: int) -> dict[int, float]:
    """The paper's reported MB for a policy at batch `batch_size`, keyed by resolution."""
    if batch_size != TABLE2_BATCH:
        return {}
    points = {TABLE2_RESOLUTION: TABLE2_MB[policy]} if policy in TABLE2_MB else {}
    points.update({res: mb for (pol, res), mb in OTHER_RESOLUTION_MB.items() if pol == policy})
    return dict(sorted(points.items()))


def reported_by_batch(policy: str, resolution: int) -> dict[int, float]:
    """The paper's reported MB for a policy at `resolution`, keyed by batch size."""
    if resolution != TABLE2_RESOLUTION or policy not in TABLE2_MB:
        return {}
    return {TABLE2_BATCH: TABLE2_MB[policy]}

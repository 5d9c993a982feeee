"""Sub-nets plus resolution as integer gene vectors, so search and memory work on whole populations at once.

A gene row is [5 depth indices | 20 expand indices | 20 kernel indices | resolution index], each an index into
DEPTHS, EXPANDS, KERNELS and the search's resolution list.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tinytl.errors import TinyTLError
from tinytl import validation
from tinytl.models.supernet import DEPTHS, EXPANDS, KERNELS, MAX_DEPTH, NUM_SLOTS, NUM_STAGES, SubnetConfig

D_GENES = slice(0, NUM_STAGES)
E_GENES = slice(NUM_STAGES, NUM_STAGES + NUM_SLOTS)
K_GENES = slice(NUM_STAGES + NUM_SLOTS, NUM_STAGES + 2 * NUM_SLOTS)
R_GENE = NUM_STAGES + 2 * NUM_SLOTS
NUM_GENES = R_GENE + 1
ARCH_CHOICES = np.array([len(DEPTHS)] * NUM_STAGES + [len(EXPANDS)] * NUM_SLOTS + [len(KERNELS)] * NUM_SLOTS)


def check_resolutions(resolutions: Sequence[int]) -> tuple[int, ...]:
    """Sorted distinct resolutions, each an integer >= 32."""
    return tuple(sorted(set(validation.check_resolutions(resolutions, high=None))))


def encode(config: SubnetConfig, resolution: int, resolutions: Sequence[int]) -> np.ndarray:
    """Gene row of one sub-net at one resolution (which must be in `resolutions`)."""
    if resolution not in resolutions:
        raise TinyTLError(f"resolution {resolution} is not among {list(resolutions)}")
    return np.array([DEPTHS.index(v) for v in config.d] + [EXPANDS.index(v) for v in config.e]
                    + [KERNELS.index(v) for v in config.ks] + [list(resolutions).index(resolution)], dtype=np.int64)


def decode(genes: np.ndarray, resolutions: Sequence[int]) -> tuple[SubnetConfig, int]:
    """Sub-net and resolution of one gene row."""
    g = [int(v) for v in genes]
    return (SubnetConfig(tuple(DEPTHS[i] for i in g[D_GENES]), tuple(EXPANDS[i] for i in g[E_GENES]),
                         tuple(KERNELS[i] for i in g[K_GENES])), resolutions[g[R_GENE]])


def random_genes(rng: np.random.Generator, n: int, num_resolutions: int) -> np.ndarray:
    """`n` uniformly random gene rows."""
    choices = np.append(ARCH_CHOICES, num_resolutions)
    return (rng.random((n, NUM_GENES)) * choices).astype(np.int64)


def active_mask(genes: np.ndarray) -> np.ndarray:
    """[n, 20] bool: which block slots each row runs (position in stage < depth)."""
    depth = np.asarray(DEPTHS)[genes[:, D_GENES]]  # [n, 5]
    position = np.arange(NUM_SLOTS) % MAX_DEPTH
    return position[None, :] < np.repeat(depth, MAX_DEPTH, axis=1)


def canonical_genes(genes: np.ndarray) -> np.ndarray:
    """Rows with unused slots' expand and kernel set to index 0, so equal networks have equal rows."""
    out = genes.copy()
    inactive = ~active_mask(genes)
    out[:, E_GENES][inactive] = 0
    out[:, K_GENES][inactive] = 0
    return out

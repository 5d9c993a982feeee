"""tinytl-explorer: on-device transfer-learning memory, made visible and real (TinyTL, Cai et al. 2020)."""

from tinytl.errors import TinyTLError

__all__ = ["TinyTLError"]
__version__ = "0.1.0"

"""Training-memory analysis: one meta-device walk, priced by per-view rule tables."""

from tinytl.memory.analysis import analyze, cached_trace, profile_memory
from tinytl.memory.report import MemoryReport
from tinytl.memory.views import VIEWS, get_view
from tinytl.memory.walk import ModelTrace, trace_backbone, trace_model
from tinytl.memory import pytorch_view  # noqa: F401  (registers the view)
from tinytl.memory import engine_view  # noqa: F401  (registers the view)

__all__ = ["VIEWS", "MemoryReport", "ModelTrace", "analyze", "cached_trace", "get_view", "profile_memory",
           "trace_backbone", "trace_model"]

"""Short real fine-tunes: the TinyTL recipe, a model-agnostic loop, checkpoints, and the run store."""

from tinytl.train.checkpoint import LoadReport, load_weights
from tinytl.train.loop import EpochMetrics, TrainHooks, TrainResult, evaluate, train
from tinytl.train.recipe import ENGINES, FinetuneSettings
from tinytl.train.store import RunStore

__all__ = ["ENGINES", "EpochMetrics", "FinetuneSettings", "LoadReport", "RunStore", "TrainHooks", "TrainResult",
           "evaluate", "load_weights", "train"]

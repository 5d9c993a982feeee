"""Fine-tune settings with the recipe's short defaults (sized for 2 CPU cores), and the model they build."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from torch import nn

from tinytl.errors import TinyTLError
from tinytl.models import build_model, check_backbone
from tinytl.models.setting import ModelSetting
from tinytl.models.supernet import parse_subnet
from tinytl.policies import parse_policy, policy_label
from tinytl.validation import (check_batch_size, check_frozen_bits, check_int, check_label_smoothing, check_lr,
                               check_seed, train_resolution)

ENGINES = ("auto", "pytorch", "tinytl", "tinytl-recompute")  # tinytl: the engine's exact mode
DEFAULT_ENGINE = "auto"  # the engine, in the mode that realises the most for the norm (see default_engine)


def default_engine(norm: str) -> str:
    """The engine that keeps least for a norm: exact under frozen-statistics BN (it reaches the paper's theory),
    recompute under GroupNorm / batch-statistics BN (their exact minimum is a whole x_hat per norm input)."""
    return "tinytl" if norm == "bn-frozen" else "tinytl-recompute"


def run_engine_mode(engine: str) -> str:
    """The tinytl.engine mode an --engine value runs (and the engine view prices): recompute or exact."""
    return "recompute" if engine == "tinytl-recompute" else "exact"


def realised_view(engine: str) -> str:
    """The memory view that predicts what an --engine value really keeps: pytorch for stock, else engine."""
    return "pytorch" if engine == "pytorch" else "engine"


@dataclass(frozen=True)
class FinetuneSettings:
    """Everything that defines a fine-tune run; None for lr / label smoothing means the dataset's value."""

    backbone: str = "proxylessnas_mobile"
    policy: str = "lite+bias"
    dataset: str = "digits"
    data_root: str | None = None
    weights: str = "shipped"
    epochs: int = 4
    resolution: int = 64
    batch_size: int = 32
    lr: float | None = None
    label_smoothing: float | None = None
    engine: str = DEFAULT_ENGINE
    frozen_bits: int | None = None
    lite_residual: bool = True
    norm: str = "gn"
    seed: int = 0
    max_steps: int | None = None
    subnet: str | None = None  # with backbone "supernet": the sub-net (JSON) taken from the adapted super-net

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FinetuneSettings:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def model_setting(self, num_classes: int) -> ModelSetting:
        """The model this run trains, with a `num_classes` head (the dataset decides it)."""
        return ModelSetting(self.backbone, self.resolution, num_classes, self.lite_residual, self.norm, self.subnet)

    def validate(self) -> FinetuneSettings:
        """Raise TinyTLError on a setting that cannot run; return self with the policy label normalised."""
        check_backbone(self.backbone)
        parse_policy(self.policy)
        check_int("epochs", self.epochs, 1)
        check_batch_size(self.batch_size)
        train_resolution(self.resolution)
        check_seed(self.seed)
        if self.max_steps is not None:
            check_int("max steps", self.max_steps, 1)
        if self.lr is not None:
            check_lr(self.lr)
        if self.label_smoothing is not None:
            check_label_smoothing(self.label_smoothing)
        if self.frozen_bits is not None:
            check_frozen_bits(self.frozen_bits)
        if self.engine not in ENGINES:
            raise TinyTLError(f"unknown engine {self.engine!r}; valid: {', '.join(ENGINES)}")
        if self.frozen_bits is not None and self.engine == "pytorch":
            raise TinyTLError("8-bit frozen weights need --engine tinytl (stock PyTorch keeps fp32 weights)")
        subnet = self.subnet
        if self.backbone == "supernet":
            if subnet is None:
                raise TinyTLError("backbone supernet needs a sub-net (--subnet JSON: d, e, ks)")
            subnet = parse_subnet(subnet).canonical().to_json()
        elif subnet is not None:
            raise TinyTLError(f"a sub-net applies only to backbone supernet, not {self.backbone!r}")
        engine = default_engine(self.norm) if self.engine == "auto" else self.engine
        return FinetuneSettings.from_dict({**self.to_dict(), "policy": policy_label(self.policy), "engine": engine,
                                           "subnet": subnet})


def build_finetune_model(settings: FinetuneSettings, num_classes: int) -> nn.Module:
    """The backbone with a new classifier (dropout 0.2 for proxylessnas_mobile, torchvision's own otherwise)."""
    return build_model(settings.backbone, num_classes, settings.lite_residual, settings.norm)


def convert_for_engine(model: nn.Module, settings: FinetuneSettings) -> nn.Module:
    """Stock PyTorch as is; `tinytl[-recompute]`: the project's memory-lean engine (after the policy is applied)."""
    if settings.engine == "pytorch":
        return model
    try:
        from tinytl.engine import convert_model
    except ImportError:
        raise TinyTLError("--engine tinytl is not available in this build (tinytl.engine is missing); "
                          "use --engine pytorch") from None
    return convert_model(model, mode=run_engine_mode(settings.engine), frozen_bits=settings.frozen_bits)

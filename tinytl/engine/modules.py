"""Drop-in engine modules: subclasses of the stock layers whose forward calls the memory-lean Functions.

`convert_model` turns a stock module into its engine class in place (same object, same Parameters,
same names), so policies, optimizers and state dicts are unaffected. The Functions are used only when
autograd needs them (grad mode on and some input or parameter requires a gradient); otherwise the
stock computation runs and nothing is kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair
from torchvision.ops.misc import SqueezeExcitation

from tinytl.engine import functional as EF
from tinytl.engine.quantize import QuantizedWeight
from tinytl.models.layers import FrozenStatsBatchNorm2d, StdConv2d


def _needs_graph(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


RERUN_STOCK_NUMEL = 1 << 22  # inside a block's re-run, activations / GroupNorms with smaller inputs keep as stock


def _rerun_stock(x: torch.Tensor) -> bool:
    """Whether an activation or GroupNorm keeps what stock PyTorch keeps (ReLU / ReLU6: its output, not a mask)
    because its block is re-running and its input is small: that lives only until the block's backward, which
    follows at once, and on small tensors mask packing costs more time than the few MB it saves
    (docs/BENCHMARKS.md). Large inputs (a first stage at high resolution) keep the engine's rules: they set the
    recompute peak."""
    return EF.is_recomputing() and x.numel() < RERUN_STOCK_NUMEL


def _needs_mask(x: torch.Tensor) -> bool:
    """Whether a two-valued activation keeps a packed mask (not in a small re-run: there the stock kernel)."""
    return _needs_graph(x) and not _rerun_stock(x)


FOLD_ATTR = "_tinytl_folded_norm"  # on a conv: the BatchNorm after it; on a conv's output: the norm applied


def _foldable(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> bool:
    """Whether a conv runs together with the BatchNorm after it (EF.ConvNormFn): fixed statistics and neither
    weight training, so each keeps nothing either way and the pair's backward can fold the norm's scale in."""
    fixed_stats = isinstance(norm, FrozenStatsBatchNorm2d) or not (norm.training or norm.running_mean is None)
    return fixed_stats and not conv.weight.requires_grad and (norm.weight is None or not norm.weight.requires_grad)


def _applied(x: torch.Tensor, norm: nn.Module) -> bool:
    """Whether x comes from the conv before this norm, which applied the norm already (the mark is taken off, so
    the tensor reads as unmarked to anything after)."""
    if getattr(x, FOLD_ATTR, None) is not norm:
        return False
    delattr(x, FOLD_ATTR)
    return True


class EngineModule:
    """Mixin naming the stock class an engine module converts back to."""

    stock_class: type[nn.Module]


class EngineConv2d(EngineModule, nn.Conv2d, QuantizedWeight):
    """Conv2d keeping its input only when its weight trains."""

    stock_class = nn.Conv2d
    standardize = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dequant = self.weight_dequantizer()
        norm = self.__dict__.get(FOLD_ATTR)
        if norm is not None and _foldable(self, norm) and _needs_graph(x, self.bias, norm.bias):
            y = EF.ConvNormFn.apply(x, self.weight, self.bias, norm.weight, norm.bias, norm.running_mean,
                                    norm.running_var, norm.eps, _pair(self.stride), _pair(self.padding),
                                    _pair(self.dilation), self.groups, self.standardize, dequant)
            setattr(y, FOLD_ATTR, norm)  # the norm, called next on y, passes it through
            return y
        if not _needs_graph(x, self.weight, self.bias):
            w = EF.effective_weight(self.weight, self.standardize, dequant)
            return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return EF.Conv2dFn.apply(x, self.weight, self.bias, _pair(self.stride), _pair(self.padding),
                                 _pair(self.dilation), self.groups, self.standardize, dequant)


class EngineStdConv2d(EngineConv2d, StdConv2d):
    """Weight-standardized conv: the standardized weight is recomputed in backward, never kept."""

    stock_class = StdConv2d
    standardize = True


class EngineLinear(EngineModule, nn.Linear, QuantizedWeight):
    """Linear layer keeping its input only when its weight trains."""

    stock_class = nn.Linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dequant = self.weight_dequantizer()
        if not _needs_graph(x, self.weight, self.bias):
            return F.linear(x, self.weight if dequant is None else dequant(), self.bias)
        return EF.LinearFn.apply(x, self.weight, self.bias, dequant)


class EngineReLU(EngineModule, nn.ReLU):
    """ReLU keeping a 1-bit mask."""

    stock_class = nn.ReLU
    upper: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _needs_graph(x):
            return x.clamp_(0, self.upper) if self.inplace else x.clamp(0, self.upper)
        return EF.ClampMaskFn.apply(x, self.upper, self.inplace, not _rerun_stock(x))


class EngineReLU6(EngineReLU, nn.ReLU6):
    """ReLU6 keeping a 1-bit mask."""

    stock_class = nn.ReLU6
    upper = 6.0


class EngineLeakyReLU(EngineModule, nn.LeakyReLU):
    """LeakyReLU keeping a 1-bit mask (its derivative is 1 or the slope)."""

    stock_class = nn.LeakyReLU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _needs_mask(x):
            return super().forward(x)
        return EF.MaskGradFn.apply(x, "leaky_relu", self.negative_slope)


class EngineHardsigmoid(EngineModule, nn.Hardsigmoid):
    """Hardsigmoid keeping a 1-bit mask (its derivative is 1/6 inside (-3, 3), else 0)."""

    stock_class = nn.Hardsigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _needs_mask(x):
            return super().forward(x)
        return EF.MaskGradFn.apply(x, "hardsigmoid", 0.0)


class EngineSigmoid(EngineModule, nn.Sigmoid):
    """Sigmoid keeping its output."""

    stock_class = nn.Sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return EF.SigmoidFn.apply(x) if _needs_graph(x) else torch.sigmoid(x)


class _InputActivation(EngineModule):
    """Mixin for activations whose derivative needs their input: kept once, never copied (in-place or not)."""

    kind: str

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _needs_graph(x):
            return super().forward(x)
        return EF.InputActFn.apply(x, self.kind, getattr(self, "approximate", "none"))


class EngineSiLU(_InputActivation, nn.SiLU):
    """SiLU keeping its input."""

    stock_class, kind = nn.SiLU, "silu"


class EngineHardswish(_InputActivation, nn.Hardswish):
    """Hardswish keeping its input."""

    stock_class, kind = nn.Hardswish, "hardswish"


class EngineMish(_InputActivation, nn.Mish):
    """Mish keeping its input."""

    stock_class, kind = nn.Mish, "mish"


class EngineGELU(_InputActivation, nn.GELU):
    """GELU (exact or tanh) keeping its input."""

    stock_class, kind = nn.GELU, "gelu"


class EngineSqueezeExcitation(EngineModule, SqueezeExcitation):
    """torchvision's squeeze-excitation whose `scale * x` keeps x only when the scale needs a gradient."""

    stock_class = SqueezeExcitation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self._scale(x)
        if not _needs_graph(x, scale):
            return scale * x
        return EF.ScaleFn.apply(x, scale)


class EngineDropout(EngineModule, nn.Dropout):
    """Dropout keeping a 1-bit keep-mask."""

    stock_class = nn.Dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or not _needs_graph(x):
            return F.dropout(x, self.p, self.training, self.inplace)
        return EF.DropoutFn.apply(x, self.p)


class EngineGroupNorm(EngineModule, nn.GroupNorm):
    """GroupNorm keeping x_hat (its input and per-group statistics) only when dL/dx or dL/dgamma is needed."""

    stock_class = nn.GroupNorm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _needs_graph(x, self.weight, self.bias) or _rerun_stock(x):
            return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        return EF.GroupNormFn.apply(x, self.weight, self.bias, self.num_groups, self.eps)


class EngineBatchNorm2d(EngineModule, nn.BatchNorm2d):
    """BatchNorm2d: batch statistics keep x_hat when needed; running statistics (eval) are affine and keep
    only what the scale gradient needs. Running statistics are not updated again while a block recomputes."""

    stock_class = nn.BatchNorm2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _applied(x, self):
            return x
        batch_stats = self.training or self.running_mean is None
        if not batch_stats:
            return _frozen_bn(self, x)
        momentum = 0.0 if self.momentum is None else self.momentum
        track = self.training and self.track_running_stats and not EF.is_recomputing()
        if track:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        running_mean, running_var = (self.running_mean, self.running_var) if track else (None, None)
        if not _needs_graph(x, self.weight, self.bias):
            return F.batch_norm(x, running_mean, running_var, self.weight, self.bias, True, momentum, self.eps)
        return EF.BatchNormFn.apply(x, self.weight, self.bias, running_mean, running_var, momentum, self.eps)


def _frozen_bn(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    if not _needs_graph(x, bn.weight, bn.bias):
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return EF.FrozenBatchNormFn.apply(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps)


class EngineFrozenStatsBatchNorm2d(EngineModule, FrozenStatsBatchNorm2d):
    """Frozen-statistics BatchNorm: dL/dx needs no activation; its input is kept only if its scale trains."""

    stock_class = FrozenStatsBatchNorm2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if _applied(x, self) else _frozen_bn(self, x)


class EngineAvgPool2d(EngineModule, nn.AvgPool2d):
    """Average pooling keeping nothing (its backward needs shapes only)."""

    stock_class = nn.AvgPool2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _needs_graph(x):
            return super().forward(x)
        return EF.AvgPool2dFn.apply(x, _pair(self.kernel_size), _pair(self.stride or self.kernel_size),
                                    _pair(self.padding), self.ceil_mode, self.count_include_pad,
                                    self.divisor_override)


class EngineMaxPool2d(EngineModule, nn.MaxPool2d):
    """Max pooling keeping one byte per output: where in its window the maximum was."""

    stock_class = nn.MaxPool2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = _pair(self.kernel_size)
        if not _needs_graph(x) or self.return_indices or kernel[0] * kernel[1] > 256:
            return super().forward(x)
        return EF.MaxPool2dFn.apply(x, kernel, _pair(self.stride or self.kernel_size), _pair(self.padding),
                                    _pair(self.dilation), self.ceil_mode)


ENGINE_CLASSES: dict[type[nn.Module], type[nn.Module]] = {
    cls.stock_class: cls for cls in (
        EngineConv2d, EngineStdConv2d, EngineLinear, EngineReLU, EngineReLU6, EngineLeakyReLU, EngineHardsigmoid,
        EngineSigmoid, EngineSiLU, EngineHardswish, EngineMish, EngineGELU, EngineSqueezeExcitation, EngineDropout,
        EngineGroupNorm, EngineBatchNorm2d, EngineFrozenStatsBatchNorm2d, EngineAvgPool2d, EngineMaxPool2d)
}

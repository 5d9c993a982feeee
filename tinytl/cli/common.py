"""Arguments shared by several commands (model setting, policy, output format)."""

from __future__ import annotations

import argparse
import json
import sys

from tinytl.models.layers import NORMS
from tinytl.models.setting import ModelSetting
from tinytl.validation import arg, check_batch_size, check_classes, check_resolution


def add_model_args(parser: argparse.ArgumentParser, default_policy: str = "lite+bias") -> None:
    """--backbone, --policy, --resolution, --batch-size, --classes, --no-lite-residual, --norm."""
    parser.add_argument("--backbone", default="proxylessnas_mobile",
                        help="proxylessnas_mobile or any torchvision classification model name")
    parser.add_argument("--policy", default=default_policy,
                        help="full, last, norm+last, bias, lite, lite+bias, or custom:GLOB[,GLOB...]")
    parser.add_argument("--resolution", type=arg(check_resolution), default=224, help="input size in pixels (>= 32)")
    parser.add_argument("--batch-size", type=arg(check_batch_size), default=8, help="training batch size (>= 1)")
    parser.add_argument("--classes", type=arg(check_classes), default=102, help="classifier outputs (>= 1)")
    parser.add_argument("--no-lite-residual", dest="lite_residual", action="store_false",
                        help="build the backbone without lite residual branches")
    parser.add_argument("--norm", choices=NORMS, default="gn",
                        help="gn: GroupNorm+WS (paper); bn: BatchNorm, batch statistics; "
                             "bn-frozen: BatchNorm with fixed running statistics")
    parser.add_argument("--subnet", default=None, metavar="JSON",
                        help='super-net sub-net (--backbone supernet): {"d": [5 depths in 2..4], '
                             '"e": [20 expand ratios in 3,4,6], "ks": [20 kernels in 3,5,7]}')
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def model_setting(args: argparse.Namespace) -> ModelSetting:
    """The model setting the flags of `add_model_args` describe."""
    return ModelSetting(args.backbone, args.resolution, args.classes, args.lite_residual, args.norm, args.subnet)


def print_json(obj: dict) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")

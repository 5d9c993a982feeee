"""The whole super-net's training memory under the paper view (every slot at expand 6 / kernel 7, lite residuals),
beside ProxylessNAS-Mobile's, to compare with the rebuttal's "64 MB at batch 8, about 26 MB at batch 1 (GroupNorm)".

Run: python -m benchmarks.supernet_memory
"""

from __future__ import annotations

from tinytl.memory import profile_memory
from tinytl.models.supernet import largest_subnet
from tinytl.models.setting import ModelSetting


def main() -> None:
    print("| network | classes | batch | activations MB | parameters MB | total MB |")
    print("|---|---|---|---|---|---|")
    for classes in (102, 1000):
        for batch in (8, 1):
            for name, backbone, subnet in (("whole super-net", "supernet", largest_subnet().to_json()),
                                           ("ProxylessNAS-Mobile", "proxylessnas_mobile", None)):
                r = profile_memory(ModelSetting(backbone, 224, classes, subnet=subnet), batch_size=batch)
                print(f"| {name} | {classes} | {batch} | {r.activation_mb:.2f} | {r.param_mb:.2f} | {r.total_mb:.2f} |")


if __name__ == "__main__":
    main()

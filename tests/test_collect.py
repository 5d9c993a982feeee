"""Pair collection: deterministic specs, and 2 torchrun processes give exactly the pairs 1 process gives."""

import json
import os
import subprocess
import sys

import pytest
import torch

from tinytl.models.supernet import ProxylessSuperNet, save_supernet
from tinytl.search.collect import pair_specs

ARGS = ["--adapted", "none", "--pairs", "4", "--resolutions", "32", "--finetune-fraction", "0.02",
        "--val-images", "24", "--seed", "3"]


def test_pair_specs_are_fixed_by_seed():
    a, b = pair_specs(6, [32, 48], seed=1), pair_specs(6, [48, 32], seed=1)
    assert a == b and [s.index for s in a] == list(range(6))
    assert pair_specs(6, [32, 48], seed=2) != a


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "supernet.pt"
    save_supernet(ProxylessSuperNet(10), ckpt, {"made_by": "test"})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ARGS + ["--supernet", str(ckpt)]
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    subprocess.run([sys.executable, "-m", "tinytl", "collect", *args, "--out", str(one)], check=True, env=env,
                   timeout=300)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                    "-m", "tinytl", "collect", *args, "--out", str(two)], check=True, env=env, timeout=300)
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert a["provenance"]["world_size"] == 1 and b["provenance"]["world_size"] == 2
    assert [p["index"] for p in b["pairs"]] == [0, 1, 2, 3]
    assert a["pairs"] == b["pairs"]
    assert all(0 <= p["accuracy"] <= 1 and p["val_images"] == 24 for p in a["pairs"])

"""Pair collection: deterministic specs, scoring by inherited weights (no training), and 2 torchrun processes
give exactly the pairs 1 process gives."""

import json
import os
import subprocess
import sys

import pytest
import torch

from tinytl.models.supernet import ProxylessSuperNet, save_supernet
from tinytl.cli import main
from tinytl.errors import TinyTLError
from tinytl.search.collect import PairSpec, Protocol, ValidationSlices, measure_pair, pair_specs
from tinytl.train.adapt import load_adapted, save_adapted

ARGS = ["--pairs", "4", "--resolutions", "32,40", "--val-images", "24", "--seed", "3"]


def _adapted(tmp_path):
    torch.manual_seed(0)
    net = ProxylessSuperNet(10)
    save_supernet(net, tmp_path / "supernet.pt", {"made_by": "test"})
    save_adapted(net, tmp_path / "fa.pt", tmp_path / "supernet.pt", {"made_by": "test", "seed": 0})
    return net, tmp_path / "fa.pt"


def test_a_pair_is_scored_with_inherited_weights_and_no_optimizer_step(tmp_path, monkeypatch):
    net, _ = _adapted(tmp_path)
    steps = []
    monkeypatch.setattr(torch.optim.Optimizer, "step", lambda *a, **k: steps.append(1))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    spec = pair_specs(1, [32], seed=0)[0]
    slices = ValidationSlices(Protocol(val_images=24), net)
    pair = measure_pair(net, spec, slices)
    assert steps == [] and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert pair["val_images"] == 24 and 0 <= pair["accuracy"] <= 1 and 0 < pair["p_correct"] < 1
    x, y = next(iter(slices.loader(32)))
    with torch.no_grad():
        logits = net(x)
    assert len(y) == 24 and pair["p_correct"] == pytest.approx(logits.softmax(1)[torch.arange(24), y].mean().item())
    again = measure_pair(net, PairSpec(7, spec.subnet, spec.resolution), slices)
    assert again["accuracy"] == pair["accuracy"] and again["index"] == 7


def test_a_target_the_supernet_was_not_adapted_on_is_refused_before_any_pair(tmp_path, capsys):
    net, path = _adapted(tmp_path)
    save_adapted(net, tmp_path / "fa_digits.pt", tmp_path / "supernet.pt", {"dataset": "digits", "seed": 0})
    out = tmp_path / "pairs.json"
    assert main(["collect", "--adapted", str(tmp_path / "fa_digits.pt"), "--dataset", "glyphs", *ARGS,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "adapted on 'digits' (10 classes), not 'glyphs'" in err[0] and not out.exists()
    slices = ValidationSlices(Protocol("glyphs", val_images=24), load_adapted(path))  # no dataset on record
    with pytest.raises(TinyTLError, match="'glyphs' has 26 classes but the adapted super-net's head has 10"):
        slices.loader(32)


def test_pair_specs_are_fixed_by_seed():
    a, b = pair_specs(6, [32, 48], seed=1), pair_specs(6, [48, 32], seed=1)
    assert a == b and [s.index for s in a] == list(range(6))
    assert pair_specs(6, [32, 48], seed=2) != a


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    _, adapted = _adapted(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ARGS + ["--adapted", str(adapted)]
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


def test_a_resumed_run_scores_only_the_missing_pairs_and_equals_a_fresh_run(tmp_path, monkeypatch):
    _, adapted = _adapted(tmp_path)
    args = ["--adapted", str(adapted), "--resolutions", "32,40", "--val-images", "24", "--seed", "3"]
    fresh, resumed = tmp_path / "fresh.json", tmp_path / "resumed.json"
    assert main(["collect", *args, "--pairs", "4", "--out", str(fresh)]) == 0
    assert main(["collect", *args, "--pairs", "2", "--out", str(resumed)]) == 0
    from tinytl.search import collect
    measured = []
    real = collect.measure_pair
    monkeypatch.setattr(collect, "measure_pair", lambda net, spec, slices: measured.append(spec.index)
                        or real(net, spec, slices))
    assert main(["collect", *args, "--pairs", "4", "--out", str(resumed), "--resume"]) == 0
    a, b = json.loads(fresh.read_text()), json.loads(resumed.read_text())
    assert sorted(measured) == [2, 3] and a["pairs"] == b["pairs"] and b["provenance"]["resumed"]["pairs_kept"] == 2


def test_resuming_a_file_made_with_other_settings_is_refused(tmp_path, capsys):
    _, adapted = _adapted(tmp_path)
    out = tmp_path / "pairs.json"
    assert main(["collect", "--adapted", str(adapted), *ARGS, "--out", str(out)]) == 0
    before = out.read_text()
    args = [a if a != "24" else "20" for a in ARGS]  # another validation slice
    assert main(["collect", "--adapted", str(adapted), *args, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot resume: the existing pairs file was made with another protocol" in err[0]
    assert out.read_text() == before
    for content in ("[1, 2]", "{not json", '{"provenance": {}, "pairs": [3]}'):
        out.write_text(content)
        assert main(["collect", "--adapted", str(adapted), *ARGS, "--out", str(out), "--resume"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "cannot" in err[0] and out.read_text() == content

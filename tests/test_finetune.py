"""Fine-tune runs end to end: per-policy records, cancel mid-run, CLI JSON and one-line errors."""

import json
import subprocess
import sys

import pytest

from tinytl.cli import main
from tinytl.memory import profile_memory
from tinytl.policies import POLICIES
from tinytl.train.recipe import FinetuneSettings
from tinytl.train.runner import execute_run, predicted_memory, prepare_run
from tinytl.train.store import RunStore
from tinytl.models.setting import ModelSetting

TINY = dict(resolution=32, batch_size=8, epochs=1, max_steps=2)


@pytest.mark.parametrize("policy", [p if p == "lite+bias" else pytest.param(p, marks=pytest.mark.slow)
                                    for p in POLICIES])
def test_two_steps_per_policy_write_consistent_record(tmp_path, policy):
    store = RunStore(tmp_path / "runs.sqlite")
    prepared = prepare_run(FinetuneSettings(policy=policy, **TINY))
    summary = execute_run(prepared, store)
    run = store.get_run(summary["run_id"])
    assert run["status"] == "done" and run["error"] is None
    assert run["settings"] == prepared.settings.to_dict() and run["settings"]["policy"] == policy
    assert run["step"] == run["total_steps"] == 2
    assert len(run["history"]) == 1 and run["history"][0]["steps"] == 2
    assert run["final_accuracy"] == run["history"][0]["test_accuracy"] == summary["final_accuracy"]
    assert 0 <= run["final_accuracy"] <= 1
    assert run["measured_peak_bytes"] == summary["measured_peak_bytes"] > run["saved_activation_bytes"] > 0
    expected = profile_memory(ModelSetting("proxylessnas_mobile", 32, 10),
                              policy=policy, batch_size=8, frozen_bits=32).total_mb
    assert run["predicted_memory_mb"] == pytest.approx(expected)
    assert run["predicted"]["paper"] == pytest.approx(expected)


def test_cancel_mid_run_keeps_earlier_epochs(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    prepared = prepare_run(FinetuneSettings(policy="last", weights="none", resolution=32, batch_size=256, epochs=3))
    steps_per_epoch = len(prepared.train_loader)
    ids = []

    def progress(m):
        if m.step == steps_per_epoch + 1:  # one step into the second epoch
            store.request_cancel(ids[0])

    ids.append(store.create_run(prepared.settings.to_dict(), prepared.total_steps))
    summary = execute_run(prepared, store, ids[0], progress=progress)
    run = store.get_run(ids[0])
    assert summary["status"] == run["status"] == "cancelled"
    assert [e["epoch"] for e in run["history"]] == [1] == [e["epoch"] for e in summary["history"]]
    assert run["history"][0] == pytest.approx(summary["history"][0])
    assert run["history"][0]["steps"] == steps_per_epoch
    assert run["final_accuracy"] == pytest.approx(summary["history"][0]["test_accuracy"])
    steps = store.get_steps(ids[0])  # every step taken is on record, the cancelled epoch's one too
    assert [s["step"] for s in steps] == list(range(1, steps_per_epoch + 2)) == list(range(1, summary["steps"] + 1))
    assert all(0 <= s["accuracy"] <= 1 and s["loss"] > 0 for s in steps)


def test_cli_json(tmp_path, capsys):
    store = tmp_path / "runs.sqlite"
    assert main(["finetune", "--policy", "bias", "--resolution", "32", "--batch-size", "8", "--max-steps", "1",
                 "--store", str(store), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("run_id", "final_accuracy", "history", "train_seconds", "measured_peak_bytes", "predicted_memory_mb"):
        assert key in out
    assert out["history"][0]["steps"] == 1 and 0 <= out["final_accuracy"] <= 1
    assert RunStore(store).get_run(out["run_id"])["status"] == "done"


def test_cli_engine_tinytl(tmp_path, capsys):
    assert main(["finetune", "--policy", "lite+bias", "--engine", "tinytl", "--frozen-bits", "8", "--resolution",
                 "32", "--batch-size", "4", "--max-steps", "1", "--no-store", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["settings"]["engine"] == "tinytl" and out["run_id"] is None and out["measured_peak_bytes"] > 0
    expected = profile_memory(ModelSetting("proxylessnas_mobile", 32, 10),
                              policy="lite+bias", batch_size=4, frozen_bits=8).total_mb
    assert out["predicted_memory_mb"] == pytest.approx(expected)


def test_cli_subnet_runs_and_is_recorded(tmp_path, capsys):
    subnet = {"d": [2] * 5, "e": [3] * 20, "ks": [3] * 20}
    store = tmp_path / "runs.sqlite"
    assert main(["finetune", "--backbone", "supernet", "--subnet", json.dumps(subnet), "--resolution", "32",
                 "--batch-size", "8", "--max-steps", "2", "--store", str(store), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["history"][0]["steps"] == 2
    record = RunStore(store).get_run(out["run_id"])
    assert record["status"] == "done" and json.loads(record["settings"]["subnet"])["d"] == [2] * 5


def _cli(*argv, tmp_path):
    return subprocess.run([sys.executable, "-m", "tinytl", "finetune", "--store", str(tmp_path / "r.sqlite"),
                           "--max-steps", "1", *argv], capture_output=True, text=True)


def test_cli_corrupt_checkpoint_and_missing_data_root_exit_2(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage" * 100)
    for argv, needle in ((["--weights", str(bad)], "cannot read checkpoint"),
                         (["--dataset", "flowers102", "--data-root", str(tmp_path)], "flowers-102"),
                         (["--dataset", "cifar10"], "--data-root"),
                         (["--weights", str(tmp_path / "missing.pt")], "does not exist"),
                         (["--frozen-bits", "8", "--engine", "pytorch"], "--engine tinytl")):
        proc = _cli(*argv, tmp_path=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert RunStore(tmp_path / "r.sqlite").list_runs() == []  # bad input records no run


def test_engine_view_is_priced_in_the_runs_engine_mode():
    exact = predicted_memory(FinetuneSettings(policy="bias", engine="tinytl", resolution=64), 10)
    recompute = predicted_memory(FinetuneSettings(policy="bias", engine="tinytl-recompute", resolution=64), 10)
    assert exact["paper"] == recompute["paper"] and exact["pytorch"] == recompute["pytorch"]
    for mode, predicted in (("exact", exact), ("recompute", recompute)):
        expected = profile_memory(ModelSetting("proxylessnas_mobile", 64, 10, True, "gn"),
                                  policy="bias", batch_size=32, frozen_bits=32, view="engine", mode=mode)
        assert predicted["engine"] == pytest.approx(expected.total_mb)
    assert recompute["engine"] < exact["engine"]  # GN under bias: recompute keeps far less


def test_default_run_is_on_the_engine_and_leaner_than_stock():
    runs = {}
    for engine in ("auto", "pytorch"):
        prepared = prepare_run(FinetuneSettings(engine=engine, **TINY))
        runs[prepared.settings.engine] = execute_run(prepared)
    assert set(runs) == {"tinytl-recompute", "pytorch"}  # the default under GroupNorm: recompute
    engine, stock = runs["tinytl-recompute"], runs["pytorch"]
    assert engine["saved_activation_bytes"] * 5 < stock["saved_activation_bytes"]
    assert engine["measured_peak_bytes"] < stock["measured_peak_bytes"]
    assert engine["predicted_memory_mb_by_view"]["pytorch"] == stock["predicted_memory_mb_by_view"]["pytorch"]

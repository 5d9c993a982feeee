"""The run store: transactional records, cancel flag, killed runs detected, delete, default location."""

import subprocess
import sys
import time

import pytest

from tinytl.errors import TinyTLError
from tinytl.train.store import STALE_SECONDS, RunStore, default_store_path

EPOCH = {"epoch": 1, "train_loss": 1.5, "train_accuracy": 0.4, "test_loss": 1.2, "test_accuracy": 0.5,
         "seconds": 2.0, "lr": 1e-3, "steps": 10}


def test_run_lifecycle(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.create_run({"policy": "bias", "epochs": 2}, total_steps=20)
    run = store.get_run(run_id)
    assert run["status"] == "running" and run["settings"] == {"policy": "bias", "epochs": 2}
    assert run["total_steps"] == 20 and run["history"] == []
    store.heartbeat(run_id, 10, 20)
    store.add_epoch(run_id, EPOCH)
    store.add_epoch(run_id, {**EPOCH, "epoch": 2, "test_accuracy": 0.7})
    store.finish(run_id, "done", final_accuracy=0.7, train_seconds=4.0, measured_peak_bytes=123,
                 saved_activation_bytes=45, predicted={"paper": 1.5})
    run = store.get_run(run_id)
    assert run["status"] == "done" and run["step"] == 10 and run["final_accuracy"] == 0.7
    assert [e["test_accuracy"] for e in run["history"]] == [0.5, 0.7]
    assert run["history"][0] == EPOCH and run["predicted"] == {"paper": 1.5}
    assert [r["id"] for r in store.list_runs()] == [run_id]


def test_bad_writes_roll_back(tmp_path):
    store = RunStore(tmp_path / "r.sqlite")
    run_id = store.create_run({})
    with pytest.raises(ValueError):
        store.finish(run_id, "done", not_a_column=1)
    with pytest.raises(ValueError):
        store.finish(run_id, "running")
    with pytest.raises(KeyError):
        store.add_epoch(run_id, {"epoch": 1})
    run = store.get_run(run_id)
    assert run["status"] == "running" and run["history"] == []


def test_cancel_flag(tmp_path):
    store = RunStore(tmp_path / "r.sqlite")
    run_id = store.create_run({})
    assert not store.cancel_requested(run_id)
    assert store.request_cancel(run_id)
    assert store.cancel_requested(run_id)
    store.finish(run_id, "cancelled")
    assert not store.request_cancel(run_id)  # only a running run can be asked


def test_killed_run_is_marked_failed(tmp_path):
    store = RunStore(tmp_path / "r.sqlite")
    code = ("import sys; from tinytl.train.store import RunStore; "
            "print(RunStore(sys.argv[1]).create_run({'policy': 'full'}))")
    out = subprocess.run([sys.executable, "-c", code, str(store.path)], capture_output=True, text=True, check=True)
    run_id = int(out.stdout)  # its process has exited without finishing the run
    run = store.get_run(run_id)
    assert run["status"] == "failed" and "ended without finishing" in run["error"]


def test_silent_run_is_marked_failed(tmp_path):
    store = RunStore(tmp_path / "r.sqlite")
    alive = store.create_run({})
    silent = store.create_run({})
    with store._tx() as db:
        db.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time() - STALE_SECONDS - 1, silent))
    assert store.mark_stale() == 1
    assert store.get_run(silent)["status"] == "failed" and store.get_run(alive)["status"] == "running"


def test_delete_and_missing(tmp_path):
    store = RunStore(tmp_path / "r.sqlite")
    a, b = store.create_run({}), store.create_run({})
    store.add_epoch(a, EPOCH)
    assert store.delete_runs([a]) == 1
    assert [r["id"] for r in store.list_runs()] == [b]
    with store._tx() as db:
        assert db.execute("SELECT COUNT(*) FROM epochs").fetchone()[0] == 0
    with pytest.raises(TinyTLError, match="no run with id"):
        store.get_run(a)


def test_default_path_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYTL_HOME", str(tmp_path / "home"))
    assert default_store_path() == tmp_path / "home" / "runs.sqlite"
    assert RunStore().path.parent.is_dir()


def test_unwritable_store_is_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TinyTLError, match="cannot open run store"):
        RunStore(blocker / "runs.sqlite")

"""The run store: transactional records, cancel flag, killed runs detected, delete, default location."""

import subprocess
import sys
import time

import pytest

from tinytl.errors import TinyTLError
from tinytl.train.store import SCHEMA, STALE_SECONDS, RunStore, default_store_path

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


def test_killed_run_is_marked_killed(tmp_path):
    store = RunStore(tmp_path / "r.sqlite")
    code = ("import sys; from tinytl.train.store import RunStore; "
            "print(RunStore(sys.argv[1]).create_run({'policy': 'full'}))")
    out = subprocess.run([sys.executable, "-c", code, str(store.path)], capture_output=True, text=True, check=True)
    run_id = int(out.stdout)  # its process has exited without finishing the run
    run = store.get_run(run_id)
    assert run["status"] == "killed" and "ended without recording an end" in run["error"]
    assert store.running_runs() == []


def test_silent_run_is_marked_killed(tmp_path):
    store = RunStore(tmp_path / "r.sqlite")
    alive = store.create_run({})
    silent = store.create_run({})
    with store._tx() as db:
        db.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time() - STALE_SECONDS - 1, silent))
    assert store.mark_stale() == 1
    assert store.get_run(silent)["status"] == "killed" and store.get_run(alive)["status"] == "running"
    assert [r["id"] for r in store.running_runs()] == [alive]


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


def test_steps_are_recorded_with_the_heartbeat_and_deleted_with_the_run(tmp_path):
    store = RunStore(tmp_path / "r.sqlite")
    run_id, other = store.create_run({}, total_steps=3), store.create_run({})
    rows = [{"step": i, "total": 3, "loss": 2.0 / i, "accuracy": 0.1 * i, "lr": 1e-3} for i in (1, 2)]
    store.heartbeat(run_id, 2, 3, rows)
    store.heartbeat(other, 1, 1, rows[:1])
    assert store.get_run(run_id)["step"] == 2
    assert store.get_steps(run_id) == [{k: r[k] for k in ("step", "loss", "accuracy", "lr")} for r in rows]
    store.delete_runs([run_id])
    with store._tx() as db:
        assert [tuple(r) for r in db.execute("SELECT run_id FROM steps")] == [(other,)]


def test_an_older_store_is_migrated_keeping_its_runs_and_epochs(tmp_path):
    """Stores made before `killed` existed have a status CHECK without it: opening one rebuilds the table."""
    import sqlite3

    path = tmp_path / "old.sqlite"
    old_schema = SCHEMA.replace(", 'killed'", "").split("CREATE TABLE IF NOT EXISTS steps")[0]
    with sqlite3.connect(path) as db:
        db.executescript(old_schema)
        db.execute("INSERT INTO runs (created, updated, status, settings, pid, host, heartbeat) "
                   "VALUES (1, 1, 'running', '{}', 999999999, 'elsewhere', 1)")
        db.execute("INSERT INTO epochs (run_id, epoch, test_accuracy) VALUES (1, 1, 0.5)")
    store = RunStore(path)
    run = store.get_run(1)  # silent for decades: killed, which the old CHECK would refuse
    assert run["status"] == "killed" and [e["test_accuracy"] for e in run["history"]] == [0.5]
    store.heartbeat(1, 1, 1, [{"step": 1, "total": 1, "loss": 1.0, "accuracy": 0.5, "lr": 1e-3}])
    assert RunStore(path).get_steps(1)[0]["loss"] == 1.0  # opening again: nothing left to migrate

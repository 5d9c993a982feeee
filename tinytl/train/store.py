"""The run store: one SQLite file of fine-tune runs (settings, per-epoch metrics, memory, status).

Every write is one transaction. A run is `running` until it ends `done`, `cancelled` (the loop saw the
store's cancel flag, or Ctrl-C) or `failed` (an error, recorded with its message); a run whose process died
without recording an end (pid gone, or no heartbeat for a while: kill -9, out of memory, power) is marked
`killed` when the store is next read, so nothing stays half-written as `running`.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from tinytl.errors import TinyTLError
from tinytl.paths import user_data_dir

STATUSES = ("running", "done", "cancelled", "failed", "killed")
STALE_SECONDS = 300.0
RUN_COLUMNS = ("id", "created", "updated", "status", "settings", "pid", "host", "heartbeat", "step",
               "total_steps", "cancel_requested", "final_accuracy", "train_seconds", "measured_peak_bytes",
               "saved_activation_bytes", "predicted_memory_mb", "predicted", "error")
EPOCH_COLUMNS = ("run_id", "epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds",
                 "lr", "steps")
STEP_COLUMNS = ("run_id", "step", "loss", "accuracy", "lr")
RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, updated REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({statuses})),
    settings TEXT NOT NULL, pid INTEGER, host TEXT, heartbeat REAL, step INTEGER DEFAULT 0,
    total_steps INTEGER DEFAULT 0, cancel_requested INTEGER NOT NULL DEFAULT 0, final_accuracy REAL,
    train_seconds REAL, measured_peak_bytes INTEGER, saved_activation_bytes INTEGER,
    predicted_memory_mb REAL, predicted TEXT, error TEXT);
"""
STATUS_CHECK = ", ".join(f"'{s}'" for s in STATUSES)
SCHEMA = RUNS_TABLE.format(name="runs", statuses=STATUS_CHECK) + """
CREATE TABLE IF NOT EXISTS epochs (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, epoch INTEGER NOT NULL,
    train_loss REAL, train_accuracy REAL, test_loss REAL, test_accuracy REAL, seconds REAL, lr REAL,
    steps INTEGER, PRIMARY KEY (run_id, epoch));
CREATE TABLE IF NOT EXISTS steps (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, step INTEGER NOT NULL,
    loss REAL, accuracy REAL, lr REAL, PRIMARY KEY (run_id, step));
"""


def default_store_path() -> Path:
    """runs.sqlite in the user data folder ($TINYTL_HOME, else ($XDG_DATA_HOME or ~/.local/share)/tinytl)."""
    return user_data_dir() / "runs.sqlite"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunStore:
    """Fine-tune runs in SQLite; safe to use from several threads and processes (a connection per call)."""

    def __init__(self, path: str | Path | None = None) -> None:
        """Open (or create) the store at `path` (default: runs.sqlite in the user data folder); a path that is not
        a usable SQLite file (a folder, pipe, ':memory:', a damaged database) is one TinyTLError line."""
        if str(path) == ":memory:" or str(path).startswith("file:"):
            raise TinyTLError(f"run store {str(path)!r} must be a file path (an in-memory store is empty for every "
                              "connection and gone when the command ends)")
        self.path = Path(path).expanduser() if path else default_store_path()
        if self.path.exists() and not self.path.is_file():
            raise TinyTLError(f"run store {str(self.path)!r} is not a regular file (a folder, pipe or device)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TinyTLError(f"cannot open run store {self.path}: {err.strerror or err}") from None
        with self._tx() as db:
            problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                detail = " ".join(problems[0].replace("*** in database main ***", "").split())[:160]
                raise TinyTLError(f"run store {self.path} is damaged ({detail}); move the file away and a new, "
                                  "empty store is made")
            db.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Bring a store made by an older version up to this schema: its `runs` table's status check lacks
        `killed` (SQLite cannot alter a CHECK, so the table is copied into a new one, as SQLite's docs advise)."""
        with self._tx() as db:
            sql = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone()[0]
        if "'killed'" in sql:
            return
        with closing(sqlite3.connect(self.path, timeout=30)) as db:
            db.execute("PRAGMA foreign_keys = OFF")  # else dropping the old table would delete every epoch
            db.executescript("BEGIN;" + RUNS_TABLE.format(name="runs_new", statuses=STATUS_CHECK)  # one transaction:
                             + "INSERT INTO runs_new SELECT * FROM runs; DROP TABLE runs;"  # executescript itself
                             " ALTER TABLE runs_new RENAME TO runs; COMMIT;")  # would run each statement alone

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed on success, rolled back on any error; a database error (damaged file,
        locked past the timeout, disk full) is one TinyTLError line naming the store."""
        try:
            with closing(sqlite3.connect(self.path, timeout=30)) as db:
                db.execute("PRAGMA foreign_keys = ON")
                db.row_factory = sqlite3.Row
                with db:
                    yield db
        except sqlite3.ProgrammingError:  # our own misuse, not the file's fault
            raise
        except sqlite3.DatabaseError as err:
            detail = " ".join(str(err).split())[:160] or type(err).__name__
            hint = ("; move the file away and a new, empty store is made"
                    if "malformed" in detail or "not a database" in detail else "")
            raise TinyTLError(f"cannot use run store {self.path}: {detail}{hint}") from None

    def create_run(self, settings: dict, total_steps: int = 0) -> int:
        """A new `running` run owned by this process; returns its id."""
        now = time.time()
        with self._tx() as db:
            cur = db.execute("INSERT INTO runs (created, updated, status, settings, pid, host, heartbeat, "
                             "total_steps) VALUES (?, ?, 'running', ?, ?, ?, ?, ?)",
                             (now, now, json.dumps(settings, sort_keys=True), os.getpid(), socket.gethostname(),
                              now, total_steps))
            return int(cur.lastrowid)

    def heartbeat(self, run_id: int, step: int, total_steps: int, steps: list[dict] = ()) -> None:
        """Progress and liveness of a running run, with the per-step metrics since the last beat (dicts of
        STEP_COLUMNS less run_id), in one transaction."""
        now = time.time()
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO steps (run_id, step, loss, accuracy, lr) VALUES (?, ?, ?, ?, ?)",
                           [(run_id, *(r[k] for k in STEP_COLUMNS[1:])) for r in steps])
            db.execute("UPDATE runs SET step = ?, total_steps = ?, heartbeat = ?, updated = ? "
                       "WHERE id = ? AND status = 'running'", (step, total_steps, now, now, run_id))

    def get_steps(self, run_id: int) -> list[dict]:
        """The per-step training metrics of one run, in step order (loss and accuracy of each batch)."""
        with self._tx() as db:
            rows = db.execute("SELECT step, loss, accuracy, lr FROM steps WHERE run_id = ? ORDER BY step",
                              (run_id,)).fetchall()
        return [dict(r) for r in rows]

    @staticmethod
    def _assignments(fields: dict) -> tuple[str, list]:
        bad = set(fields) - set(RUN_COLUMNS[11:])
        if bad:
            raise ValueError(f"not run result columns: {sorted(bad)}")
        return "".join(f"{k} = ?, " for k in fields), [json.dumps(v) if isinstance(v, dict) else v
                                                       for v in fields.values()]

    def set_fields(self, run_id: int, **fields) -> None:
        """Record result columns (memory, predictions) on a run."""
        sql, values = self._assignments(fields)
        with self._tx() as db:
            db.execute(f"UPDATE runs SET {sql}updated = ? WHERE id = ?", (*values, time.time(), run_id))

    def add_epoch(self, run_id: int, metrics: dict) -> None:
        """One epoch's metrics, with the heartbeat, in one transaction."""
        row = {k: metrics[k] for k in EPOCH_COLUMNS[1:]}
        now = time.time()
        with self._tx() as db:
            db.execute(f"INSERT OR REPLACE INTO epochs (run_id, {', '.join(row)}) VALUES "
                       f"(?, {', '.join('?' * len(row))})", (run_id, *row.values()))
            db.execute("UPDATE runs SET heartbeat = ?, updated = ? WHERE id = ?", (now, now, run_id))

    def finish(self, run_id: int, status: str, error: str | None = None, **fields) -> None:
        """End a run (done / cancelled / failed) with its final result columns, in one transaction."""
        if status not in ("done", "cancelled", "failed"):
            raise ValueError(f"a run ends done, cancelled or failed, not {status!r}")
        sql, values = self._assignments(fields)
        with self._tx() as db:
            db.execute(f"UPDATE runs SET {sql}status = ?, error = ?, updated = ? WHERE id = ?",
                       (*values, status, error, time.time(), run_id))

    def request_cancel(self, run_id: int) -> bool:
        """Ask a running run to stop; True if it was running."""
        with self._tx() as db:
            cur = db.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", (run_id,))
            return cur.rowcount == 1

    def cancel_requested(self, run_id: int) -> bool:
        with self._tx() as db:
            row = db.execute("SELECT cancel_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    def mark_stale(self) -> int:
        """Mark `killed` every running run whose process is gone or silent; returns how many."""
        now, host = time.time(), socket.gethostname()
        with self._tx() as db:
            rows = db.execute("SELECT id, pid, host, heartbeat FROM runs WHERE status = 'running'").fetchall()
            dead = [r["id"] for r in rows
                    if (r["host"] == host and r["pid"] and not _pid_alive(r["pid"]))
                    or (r["heartbeat"] or 0) < now - STALE_SECONDS]
            for run_id in dead:
                db.execute("UPDATE runs SET status = 'killed', error = 'the process running it ended without "
                           "recording an end (killed, out of memory, or the machine stopped)', updated = ? "
                           "WHERE id = ?", (now, run_id))
        return len(dead)

    def get_run(self, run_id: int) -> dict:
        """One run with its settings and epoch history decoded."""
        self.mark_stale()
        with self._tx() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise TinyTLError(f"no run with id {run_id} in {self.path}")
            epochs = db.execute("SELECT * FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)).fetchall()
        return self._decode(row, epochs)

    def list_runs(self) -> list[dict]:
        """Every run, newest first, with history."""
        self.mark_stale()
        with self._tx() as db:
            rows = db.execute("SELECT * FROM runs ORDER BY id DESC").fetchall()
            epochs = db.execute("SELECT * FROM epochs ORDER BY run_id, epoch").fetchall()
        by_run: dict[int, list] = {}
        for e in epochs:
            by_run.setdefault(e["run_id"], []).append(e)
        return [self._decode(r, by_run.get(r["id"], [])) for r in rows]

    def running_runs(self) -> list[dict]:
        """Every run still running (dead ones marked killed first), newest first, without history."""
        self.mark_stale()
        with self._tx() as db:
            rows = db.execute("SELECT * FROM runs WHERE status = 'running' ORDER BY id DESC").fetchall()
        return [self._decode(r, []) for r in rows]

    def delete_runs(self, run_ids: list[int]) -> int:
        """Delete runs and their epochs; returns how many runs were removed."""
        with self._tx() as db:
            marks = ", ".join("?" * len(run_ids))
            return db.execute(f"DELETE FROM runs WHERE id IN ({marks})", list(run_ids)).rowcount if run_ids else 0

    @staticmethod
    def _decode(row: sqlite3.Row, epochs: list[sqlite3.Row]) -> dict:
        run = dict(row)
        unreadable = []
        for column, empty in (("settings", {}), ("predicted", {})):
            try:
                value = json.loads(run[column]) if run[column] else empty
            except (TypeError, ValueError):  # a hand-edited or damaged row: shown, not fatal to the whole list
                value = None
            if not isinstance(value, dict):
                value = empty
                unreadable.append(column)
            run[column] = value
        if unreadable:
            run["error"] = f"stored {' and '.join(unreadable)} not readable" + (f"; {run['error']}" if run["error"]
                                                                                 else "")
        run["cancel_requested"] = bool(run["cancel_requested"])
        run["history"] = [{k: e[k] for k in EPOCH_COLUMNS[1:]} for e in epochs]
        return run

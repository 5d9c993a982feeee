"""Ctrl-C or SIGTERM on a fine-tune: the run is recorded cancelled with its finished epochs, the command exits 130
(143 for SIGTERM) with one line and no traceback."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tinytl.train.store import RunStore


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code", "line", "error"), [
    (signal.SIGINT, 130, "interrupted", "interrupted (Ctrl-C)"),
    (signal.SIGTERM, 143, "terminated", "terminated (SIGTERM)")])
def test_signal_on_finetune_records_cancelled_and_exits(tmp_path, sig, code, line, error):
    store_path = tmp_path / "runs.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "tinytl", "finetune", "--epochs", "50", "--resolution", "32",
                             "--threads", "1", "--store", str(store_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TINYTL_HOME": str(tmp_path)},
                            # a background job of a non-interactive shell inherits SIGINT ignored: undo that
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _signal_after_first_epoch(proc, store_path, sig, code, line, error)
    finally:
        proc.kill()


def _signal_after_first_epoch(proc: subprocess.Popen, store_path, sig: int, code: int, line: str, error: str) -> None:
    deadline = time.monotonic() + 300
    epochs = []
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(1)
        if store_path.exists():
            runs = RunStore(store_path).list_runs()
            epochs = runs[0]["history"] if runs else []
            if epochs:
                break
    assert epochs, "no epoch finished in time"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code
    assert "Traceback" not in err and err.replace("\r", "\n").strip().splitlines()[-1] == line
    run = RunStore(store_path).list_runs()[0]
    assert run["status"] == "cancelled" and run["error"] == error and len(run["history"]) >= len(epochs)

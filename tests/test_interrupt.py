"""Ctrl-C on a fine-tune: the run is recorded cancelled with its finished epochs, the command exits 130 with one
line and no traceback."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tinytl.train.store import RunStore


@pytest.mark.slow
def test_sigint_on_finetune_records_cancelled_and_exits_130(tmp_path):
    store_path = tmp_path / "runs.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "tinytl", "finetune", "--epochs", "50", "--resolution", "32",
                             "--threads", "1", "--store", str(store_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TINYTL_HOME": str(tmp_path)},
                            # a background job of a non-interactive shell inherits SIGINT ignored: undo that
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _interrupt_after_first_epoch(proc, store_path)
    finally:
        proc.kill()


def _interrupt_after_first_epoch(proc: subprocess.Popen, store_path) -> None:
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
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in err and err.replace("\r", "\n").strip().splitlines()[-1] == "interrupted"
    run = RunStore(store_path).list_runs()[0]
    assert run["status"] == "cancelled" and len(run["history"]) >= len(epochs)

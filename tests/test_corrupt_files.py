"""Corrupt, damaged-but-readable and non-regular files, table-driven: each gives one line, never a traceback or a hang.

Each case builds its bad file in tmp_path: a run store of random bytes or a truncated real store, a FIFO
(os.mkfifo), or a shipped predictor / super-net / adaptation loaded, one field altered, and saved with torch.save.
The CLI must answer every case with exit code 2 and one line on stderr (no traceback, no hang); the app pages
with an st.error and no exception element, the rest of the page still drawn.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from tinytl.paths import APP_PATHS_ENV, shipped_asset
from tinytl.train.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PARETO = str(ROOT / "explorer" / "pages" / "pareto.py")
CLI_TIMEOUT = 60  # a FIFO case that blocks fails here instead of hanging the suite


# ---------------------------------------------------------------- bad files

def random_store(folder: Path) -> Path:
    """A 'run store' of random bytes (SQLite: 'file is not a database')."""
    path = folder / "random.sqlite"
    path.write_bytes(random.Random(0).randbytes(16384))
    return path


def truncated_store(folder: Path) -> Path:
    """A real run store with 40 runs, cut in half (SQLite: 'database disk image is malformed')."""
    path = folder / "truncated.sqlite"
    store = RunStore(path)
    for i in range(40):
        run_id = store.create_run({"policy": "last", "dataset": "digits", "note": "x" * 400}, 10)
        store.add_epoch(run_id, {"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "test_loss": 1.0,
                                 "test_accuracy": 0.5, "seconds": 1.0, "lr": 1e-3, "steps": 10})
        store.finish(run_id, "done", final_accuracy=0.5)
    data = path.read_bytes()
    assert len(data) > 8 * 4096
    path.write_bytes(data[:len(data) // 2])
    return path


def fifo(folder: Path) -> Path:
    """A named pipe: opening it for reading blocks until a writer comes."""
    path = folder / "pipe"
    os.mkfifo(path)
    return path


DROP = object()  # as a field value in `altered`: remove the field


def altered(name: str, folder: Path, out_name: str | None = None, edit: Callable[[dict], None] | None = None,
            **fields) -> Path:
    """A shipped file loaded, `fields` replaced (a double underscore reaches into a nested dict: metrics__rmse;
    DROP removes the field) or `edit` applied to the loaded dict, then saved into `folder` with torch.save."""
    ckpt = torch.load(shipped_asset(name), map_location="cpu", weights_only=True)
    for dotted, value in fields.items():
        *parents, key = dotted.split("__")
        target = ckpt
        for parent in parents:
            target = target[parent]
        if value is DROP:
            del target[key]
        else:
            target[key] = value
    if edit is not None:
        edit(ckpt)
    path = folder / (out_name or f"damaged_{name}")
    torch.save(ckpt, path)
    return path


def wrong_shaped_tensor(ckpt: dict) -> None:
    """One adapted (non-classifier) tensor replaced by one of another shape."""
    state = ckpt["state_dict"]
    state[next(k for k in state if not k.startswith("classifier."))] = torch.zeros(3)


# ---------------------------------------------------------------- the CLI

def run_cli(args: list[str], home: Path) -> subprocess.CompletedProcess:
    """`python -m tinytl ARGS` with TINYTL_HOME in tmp_path (nothing written to the user folder)."""
    env = {**os.environ, "TINYTL_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "tinytl", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=CLI_TIMEOUT)


def finetune_store(make: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
    return lambda d: ["finetune", "--store", str(make(d)), "--epochs", "1", "--max-steps", "1", "--threads", "1"]


def search_predictor(**fields) -> Callable[[Path], list[str]]:
    return lambda d: ["search", "--budget-mb", "12", "--iterations", "1", "--predictor",
                      str(altered("supernet_predictor.pt", d, **fields))]


def adapt_supernet(**fields) -> Callable[[Path], list[str]]:
    return lambda d: ["adapt", "--supernet", str(altered("supernet.pt", d, **fields)), "--out", str(d / "o.pt"),
                      "--epochs", "1"]


def evaluate_adapted(**fields) -> Callable[[Path], list[str]]:
    return lambda d: ["evaluate", "--adapted", str(altered("supernet_digits_fa.pt", d, **fields))]


def evaluate_base_supernet(**fields) -> Callable[[Path], list[str]]:
    """The shipped adaptation copied into tmp_path with a damaged base super-net beside it."""
    def make(d: Path) -> list[str]:
        altered("supernet.pt", d, "supernet.pt", **fields)
        return ["evaluate", "--adapted", str(altered("supernet_digits_fa.pt", d, "adapted.pt"))]
    return make


# (case id, argv built in tmp_path, text the one stderr line must hold)
CLI_CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    # item 3: the run store
    ("store-random-bytes", finetune_store(random_store), "file is not a database"),
    ("store-truncated", finetune_store(truncated_store), "malformed"),
    ("store-memory", lambda d: ["finetune", "--store", ":memory:", "--epochs", "1", "--max-steps", "1"],
     "must be a file path"),
    ("store-fifo", finetune_store(fifo), "is not a regular file"),
    # item 4: FIFOs, refused before anything opens them
    ("pretrain-init-fifo", lambda d: ["pretrain", "--init", str(fifo(d)), "--out", str(d / "x.pt"),
                                      "--per-class", "1", "--classes", "2"], "is not a regular file"),
    ("pretrain-out-fifo", lambda d: ["pretrain", "--out", str(fifo(d))], "is not a regular file"),
    ("collect-out-fifo", lambda d: ["collect", "--out", str(fifo(d))], "is not a regular file"),
    ("collect-predictor-fifo", lambda d: ["collect", "--out", str(d / "p.json"), "--train-predictor",
                                          str(fifo(d))], "is not a regular file"),
    ("collect-adapted-fifo", lambda d: ["collect", "--adapted", str(fifo(d)), "--out", str(d / "p.json")],
     "is not a regular file"),
    ("supernet-pretrain-resume-fifo", lambda d: ["supernet-pretrain", "--resume", str(fifo(d)), "--out",
                                                 str(d / "s.pt"), "--per-class", "1"], "is not a regular file"),
    ("search-predictor-fifo", lambda d: ["search", "--budget-mb", "12", "--predictor", str(fifo(d))],
     "is not a regular file"),
    ("evaluate-adapted-fifo", lambda d: ["evaluate", "--adapted", str(fifo(d))], "is not a regular file"),
    ("adapt-supernet-fifo", lambda d: ["adapt", "--supernet", str(fifo(d)), "--out", str(d / "o.pt")],
     "is not a regular file"),
    ("finetune-weights-fifo", lambda d: ["finetune", "--weights", str(fifo(d)), "--no-store", "--max-steps", "1"],
     "is not a regular file"),
    # item 7: damaged but readable predictor
    ("predictor-metrics-none", search_predictor(metrics=None), "field metrics must be"),
    ("predictor-metrics-string", search_predictor(metrics="abc"), "field metrics must be"),
    ("predictor-rmse-string", search_predictor(metrics__rmse="x"), "field metrics.rmse must be"),
    ("predictor-rmse-missing", search_predictor(metrics__rmse=DROP), "lacks field metrics.rmse"),
    ("predictor-resolutions-string", search_predictor(resolutions="abc"), "field resolutions must be"),
    ("predictor-resolutions-huge", search_predictor(resolutions=[10 ** 9]), "field resolutions must be"),
    ("predictor-classes-string", search_predictor(provenance__classes="abc"), "field provenance.classes must be"),
    ("predictor-state-none", search_predictor(state_dict=None), "field state_dict must be"),
    # item 7: damaged but readable super-net
    ("supernet-classes-string", adapt_supernet(num_classes="abc"), "field num_classes must be"),
    ("supernet-classes-negative", adapt_supernet(num_classes=-1), "field num_classes must be"),
    ("supernet-classes-1e9", adapt_supernet(num_classes=10 ** 9), "field num_classes must be"),
    ("supernet-classes-off-head", adapt_supernet(num_classes=7), "field num_classes is 7"),
    ("supernet-classes-bool", adapt_supernet(num_classes=True), "field num_classes must be"),
    ("supernet-lite-string", adapt_supernet(lite_residual="yes"), "field lite_residual must be"),
    ("supernet-norm-unknown", adapt_supernet(norm="layer"), "field norm must be"),
    ("supernet-provenance-tensor", adapt_supernet(provenance={"x": torch.zeros(1)}), "field provenance must be"),
    ("base-supernet-classes-1e9", evaluate_base_supernet(num_classes=10 ** 9), "field num_classes must be"),
    # item 7: damaged but readable adaptation
    ("adapted-base-traversal", evaluate_adapted(base="../../../../etc/passwd"), "expected a file name beside it"),
    ("adapted-base-absolute", evaluate_adapted(base="/etc/passwd"), "expected a file name beside it"),
    ("adapted-base-number", evaluate_adapted(base=3), "expected a file name beside it"),
    ("adapted-classes-1e9", evaluate_adapted(num_classes=10 ** 9), "field num_classes must be"),
    ("adapted-classes-string", evaluate_adapted(num_classes="abc"), "field num_classes must be"),
    ("adapted-seed-string", evaluate_adapted(provenance__seed="abc"), "field provenance.seed must be"),
    ("adapted-state-none", evaluate_adapted(state_dict=None), "field state_dict must be"),
    ("adapted-tensor-shape", evaluate_adapted(edit=wrong_shaped_tensor), "does not fit the super-net"),
]


@pytest.mark.parametrize("make, needle", [pytest.param(m, n, id=i) for i, m, n in CLI_CASES])
def test_cli_bad_file_is_one_line_exit_2(tmp_path, make, needle):
    home = tmp_path / "home"
    args = make(tmp_path)
    proc = run_cli(args, home)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]


@pytest.mark.parametrize("make", [random_store, truncated_store], ids=["random-bytes", "truncated"])
def test_damaged_store_named_with_the_way_out(tmp_path, make):
    proc = run_cli(finetune_store(make)(tmp_path), tmp_path / "home")
    assert proc.returncode == 2 and str(tmp_path) in proc.stderr and "move the file away" in proc.stderr


def test_damaged_field_message_names_file_and_field(tmp_path):
    proc = run_cli(search_predictor(metrics=None)(tmp_path), tmp_path / "home")
    assert proc.stderr.strip() == (f"error: accuracy predictor {tmp_path / 'damaged_supernet_predictor.pt'} is "
                                   "damaged: field metrics must be a dict of plain data, got None")


@pytest.mark.parametrize("command", [["pretrain", "--init"], ["supernet-pretrain", "--init"],
                                     ["supernet-pretrain", "--resume"]])
def test_pretrain_init_fifo_refused_before_any_work(tmp_path, command):
    """At default sizes: refused before any rendering (which takes about a minute), so well inside 20 s."""
    env = {**os.environ, "TINYTL_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "tinytl", *command, str(fifo(tmp_path)), "--out",
                           str(tmp_path / "x.pt")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2 and "is not a regular file" in proc.stderr


# ---------------------------------------------------------------- the app

def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page(page)
    return at.run()


STORES = [pytest.param(random_store, "file is not a database", id="random-bytes"),
          pytest.param(truncated_store, "malformed", id="truncated")]


def use_damaged_store(tmp_path, monkeypatch, make) -> None:
    """Put a damaged store where the app looks for it (the user data folder)."""
    home = tmp_path / "home"
    home.mkdir()
    make(tmp_path).rename(home / "runs.sqlite")
    monkeypatch.setenv("TINYTL_HOME", str(home))


@pytest.mark.parametrize("make, needle", STORES)
def test_runs_page_with_damaged_store(tmp_path, monkeypatch, make, needle):
    use_damaged_store(tmp_path, monkeypatch, make)
    at = open_page("explorer/pages/runs.py")
    assert not at.exception
    assert len(at.error) == 1 and needle in at.error[0].value and "runs.sqlite" in at.error[0].value
    assert [t.value for t in at.title] == ["Runs"]


@pytest.mark.parametrize("make, needle", STORES)
def test_finetune_page_with_damaged_store(tmp_path, monkeypatch, make, needle):
    use_damaged_store(tmp_path, monkeypatch, make)
    at = open_page("explorer/pages/finetune.py")
    assert not at.exception
    assert len(at.error) == 1 and needle in at.error[0].value
    start = next(b for b in at.button if b.label == "Start fine-tune")  # the form still renders
    start.click()
    at.run()
    assert not at.exception and "ft_run_id" not in at.session_state
    assert any("no run can be recorded" in e.value and needle in e.value for e in at.error)


PREDICTORS = [
    pytest.param(lambda d: altered("supernet_predictor.pt", d, metrics=None), "field metrics must be",
                 id="metrics-none"),
    pytest.param(lambda d: altered("supernet_predictor.pt", d, metrics="abc"), "field metrics must be",
                 id="metrics-string"),
    pytest.param(lambda d: altered("supernet_predictor.pt", d, metrics__test_pairs=DROP),
                 "lacks field metrics.test_pairs", id="metrics-lacks-test-pairs"),
    pytest.param(lambda d: altered("supernet_predictor.pt", d, metrics__kendall_tau="high"),
                 "field metrics.kendall_tau must be", id="tau-string"),
    pytest.param(fifo, "is not a regular file", id="fifo"),
]


@pytest.mark.parametrize("make, needle", PREDICTORS)
def test_pareto_page_with_damaged_predictor(tmp_path, monkeypatch, make, needle):
    monkeypatch.setenv("TINYTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(APP_PATHS_ENV, str(tmp_path))
    path = make(tmp_path)
    at = AppTest.from_file(PARETO, default_timeout=120).run()
    at.text_input(key="pareto_predictor").set_value(str(path)).run()
    assert not at.exception
    assert len(at.error) == 1 and needle in at.error[0].value and str(path) in at.error[0].value


def test_pareto_page_opens_a_predictor_only_under_the_app_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYTL_HOME", str(tmp_path / "home"))
    outside = altered("supernet_predictor.pt", tmp_path)  # a good predictor, but outside the allowed folders
    at = AppTest.from_file(PARETO, default_timeout=120).run()
    at.text_input(key="pareto_predictor").set_value(str(outside)).run()
    assert not at.exception
    assert len(at.error) == 1 and "the app opens a predictor file only from" in at.error[0].value
    assert str(outside) not in at.error[0].value and not at.get("plotly_chart")


def test_pareto_page_with_damaged_store_still_draws(tmp_path, monkeypatch):
    use_damaged_store(tmp_path, monkeypatch, truncated_store)
    at = AppTest.from_file(PARETO, default_timeout=180).run()
    assert not at.exception
    assert len(at.error) == 1 and "Measured runs are not shown" in at.error[0].value
    assert at.get("plotly_chart")  # the chart of predicted points is drawn all the same

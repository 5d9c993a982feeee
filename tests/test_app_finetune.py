"""The Fine-tune and Runs pages under AppTest: start, live record, cancel, clear errors, table, charts, delete."""

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer.run_controls import cancel_key
from tinytl.paths import app_path_roots
from tinytl.train.store import RunStore

APP = str(Path(__file__).resolve().parents[1] / "app.py")
FINETUNE, RUNS = "explorer/pages/finetune.py", "explorer/pages/runs.py"


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYTL_HOME", str(tmp_path / "home"))
    return RunStore()


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page(page)
    return at.run()


def wait_until_ended(store: RunStore, run_id: int, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = store.get_run(run_id)
        if run["status"] != "running":
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still running after {timeout}s")


SELECTS = ("ft_policy", "ft_dataset", "ft_weights", "ft_engine")
TEXTS = ("ft_data_root", "ft_weights_path")


def start(at: AppTest, **widgets) -> AppTest:
    """Fill the form's widgets by key, then press Start."""
    for key, value in widgets.items():
        if key in SELECTS:
            at.selectbox(key=key).set_value(value)
        elif key in TEXTS:
            at.text_input(key=key).set_value(value)
        else:
            at.number_input(key=key).set_value(value)
    next(b for b in at.button if b.label == "Start fine-tune").click()
    return at.run()


def test_finetune_page_runs_in_background_and_shows_curves(store):
    at = open_page(FINETUNE)
    assert not at.exception and "Start fine-tune" in [b.label for b in at.button]
    at = start(at, ft_policy="last", ft_epochs=1, ft_batch_size=128)
    assert not at.exception and not at.error
    run_id = at.session_state["ft_run_id"]
    run = wait_until_ended(store, run_id)
    assert run["status"] == "done" and run["settings"]["policy"] == "last" and len(run["history"]) == 1
    at.run()
    figs = {el.proto.id.rsplit("-", 1)[-1]: json.loads(el.proto.spec) for el in at.get("plotly_chart")}
    acc_trace = next(t for t in figs["ft_curves"]["data"] if t["name"] == "test accuracy")
    assert acc_trace["y"] == [run["history"][0]["test_accuracy"]] and acc_trace["x"] == [run["total_steps"]]
    losses = next(t for t in figs["ft_curves"]["data"] if t["name"] == "train loss (batch)")
    assert losses["x"] == list(range(1, run["total_steps"] + 1))  # every step, not only the epoch
    assert losses["y"] == [s["loss"] for s in store.get_steps(run_id)]
    assert f"{run['final_accuracy']:.1%}" in [m.value for m in at.metric]


def test_finetune_page_cancel(store):
    at = start(open_page(FINETUNE), ft_policy="last", ft_epochs=50, ft_batch_size=64)
    run_id = at.session_state["ft_run_id"]
    at.button(key=cancel_key("ft", run_id)).click()
    at.run()
    run = wait_until_ended(store, run_id)
    assert run["status"] == "cancelled" and run["cancel_requested"]


@pytest.mark.parametrize("page", [FINETUNE, RUNS])
def test_a_run_started_elsewhere_is_shown_and_cancellable(store, page):
    """A run this session did not start (another tab, the CLI) is listed on both pages with its own Cancel."""
    other = store.create_run({"policy": "bias", "weights": "shipped"}, total_steps=40)  # alive: this process owns it
    store.heartbeat(other, 7, 40, [{"step": s, "total": 40, "loss": 1.0, "accuracy": 0.5, "lr": 1e-3}
                                   for s in range(1, 8)])
    at = open_page(page)
    assert not at.exception
    assert any(f"#{other} bias (shipped): step 7 of 40" in p.proto.text for p in at.get("progress"))
    at.button(key=cancel_key("ft" if page == FINETUNE else "runs", other)).click()
    at.run()
    assert store.get_run(other)["cancel_requested"] and not at.exception


@pytest.mark.parametrize("widgets,needle", [
    ({"ft_dataset": "flowers102", "ft_data_root": "HOME/nonexistent"}, "not a folder"),
    ({"ft_weights": "file", "ft_weights_path": "HOME/bad.pt"}, "cannot read checkpoint"),
])
def test_finetune_page_errors(store, tmp_path, widgets, needle):
    (tmp_path / "home" / "bad.pt").write_bytes(b"garbage" * 50)
    widgets = {k: v.replace("HOME", str(tmp_path / "home")) for k, v in widgets.items()}
    at = start(open_page(FINETUNE), **widgets)
    assert not at.exception
    assert any(needle in e.value for e in at.error)
    assert store.list_runs() == []


@pytest.mark.parametrize("widgets", [
    {"ft_dataset": "flowers102", "ft_data_root": "/etc"},  # exists
    {"ft_dataset": "flowers102", "ft_data_root": "/nonexistent/data"},
    {"ft_weights": "file", "ft_weights_path": "/etc/passwd"},  # exists, not a checkpoint
    {"ft_weights": "file", "ft_weights_path": "/nonexistent/x.pt"},
    {"ft_weights": "file", "ft_weights_path": "HOME/../outside.pt"},  # climbs out of an allowed folder
    {"ft_weights": "file", "ft_weights_path": "HOME/link.pt"},  # a link inside pointing outside
])
def test_finetune_page_opens_typed_paths_only_in_the_data_folders(store, tmp_path, widgets):
    (tmp_path / "outside.pt").write_bytes(b"garbage")
    (tmp_path / "home" / "link.pt").symlink_to(tmp_path / "outside.pt")
    widgets = {k: v.replace("HOME", str(tmp_path / "home")) for k, v in widgets.items()}
    at = start(open_page(FINETUNE), **widgets)
    what = "data root" if "ft_data_root" in widgets else "weights file"
    assert not at.exception and [e.value for e in at.error] == [
        f"the app opens a {what} only from {' or '.join(map(str, app_path_roots()))} (set TINYTL_APP_PATHS to "
        "allow more folders)"]
    assert store.list_runs() == []


def test_a_folder_listed_in_the_setting_is_opened(store, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYTL_APP_PATHS", str(tmp_path / "datasets"))
    (tmp_path / "datasets").mkdir()
    at = start(open_page(FINETUNE), ft_dataset="flowers102", ft_data_root=str(tmp_path / "datasets"))
    assert not at.exception and any("not found: expected" in e.value for e in at.error)


def _recorded_run(store: RunStore, policy: str, acc: float, peak: int) -> int:
    run_id = store.create_run({"policy": policy, "dataset": "digits", "weights": "shipped", "epochs": 2,
                               "resolution": 32, "batch_size": 32, "engine": "pytorch"}, total_steps=10)
    for epoch, a in ((1, acc / 2), (2, acc)):
        store.add_epoch(run_id, {"epoch": epoch, "train_loss": 2 - a, "train_accuracy": a, "test_loss": 2 - a,
                                 "test_accuracy": a, "seconds": 1.0, "lr": 1e-3, "steps": 5})
    store.finish(run_id, "done", final_accuracy=acc, train_seconds=2.0, measured_peak_bytes=peak,
                 saved_activation_bytes=peak // 2, predicted_memory_mb=peak / 2e6,
                 predicted={"paper": peak / 2e6, "pytorch": peak / 1e6 + 1, "engine": peak / 1e6 - 1})
    return run_id


def test_runs_page_table_curves_scatter_delete(store):
    a = _recorded_run(store, "last", 0.6, 40_000_000)
    b = _recorded_run(store, "bias", 0.9, 70_000_000)
    at = open_page(RUNS)
    assert not at.exception
    table = at.dataframe[0].value
    assert table["id"].tolist() == [b, a] and table["test_accuracy"].tolist() == [0.9, 0.6]
    assert table["measured_peak_mb"].tolist() == [70.0, 40.0]
    assert table["predicted_realised_mb"].tolist() == [71.0, 41.0]  # stock runs: the pytorch view
    figs = {el.proto.id.rsplit("-", 1)[-1]: json.loads(el.proto.spec) for el in at.get("plotly_chart")}
    assert {"runs_accuracy", "runs_loss", "runs_scatter"} <= set(figs)
    assert len(figs["runs_accuracy"]["data"]) == 2
    assert at.get("download_button")
    at.multiselect(key="runs_selected").set_value([a]).run()
    at.button(key="runs_delete").click().run()
    assert [r["id"] for r in store.list_runs()] == [b]
    assert at.dataframe[0].value["id"].tolist() == [b]


def test_runs_page_empty(store):
    at = open_page(RUNS)
    assert not at.exception and any("No runs yet" in i.value for i in at.info)


def test_finetune_page_defaults_to_the_engine_and_shows_stock_beside_measured(store):
    at = open_page(FINETUNE)
    assert at.selectbox(key="ft_engine").value == "auto"
    at = start(at, ft_policy="last", ft_epochs=1, ft_batch_size=128)  # short: the engine still runs it
    run = wait_until_ended(store, at.session_state["ft_run_id"])
    assert run["status"] == "done" and run["settings"]["engine"] == "tinytl-recompute"
    at.run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Measured peak (one step, tinytl-recompute)"] == f"{run['measured_peak_bytes'] / 1e6:.1f} MB"
    assert metrics["Stock PyTorch would take"] == f"{run['predicted']['pytorch']:.1f} MB"
    assert metrics["Predicted for this engine"] == f"{run['predicted']['engine']:.1f} MB"  # the engine view ran

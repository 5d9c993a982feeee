"""Commands that allocate real tensors refuse, in one line and before allocating, a job predicted not to fit."""

import pytest

from tinytl.cli import main
from tinytl.memory import host, profile_memory
from tinytl.memory.report import MB
from tinytl.train.store import RunStore
from tinytl.models.setting import ModelSetting


def test_available_memory_is_read_from_the_machine():
    available = host.host_available_bytes()
    assert available is None or available > 0


@pytest.mark.parametrize("argv, needed", [
    (["finetune", "--resolution", "32", "--epochs", "1", "--batch-size", "64", "--engine", "pytorch"],
     lambda: profile_memory(ModelSetting("proxylessnas_mobile", 32, 10),
                            policy="lite+bias", batch_size=64, frozen_bits=32, view="pytorch").total_bytes),
    (["measure", "--backbone", "resnet18", "--policy", "bias", "--resolution", "64", "--batch-size", "2",
      "--no-checkpoint"], None),
])
def test_a_job_that_does_not_fit_is_refused_before_it_allocates(argv, needed, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("TINYTL_HOME", str(tmp_path))
    monkeypatch.setattr(host, "host_available_bytes", lambda: 1 * MB)
    built = []
    monkeypatch.setattr("tinytl.train.runner.build_finetune_model", lambda *a, **k: built.append(a))
    meta_only = ModelSetting.build  # analysis builds on the meta device; a real build is what must not happen
    monkeypatch.setattr(ModelSetting, "build", lambda self, device="cpu": meta_only(self, device)
                        if str(device) == "meta" else built.append(self))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "but this machine has 1 MB of available memory" in err[0] and built == []
    if needed is not None:  # the figure is the prediction of the view that the run realises
        assert f"needs about {needed() / MB:,.0f} MB" in err[0]
    assert RunStore().list_runs() == []  # nothing recorded: the run never started


def test_a_job_that_fits_is_not_refused(monkeypatch):
    monkeypatch.setattr(host, "host_available_bytes", lambda: 10**12)
    host.check_fits_host(10**9, "this job")
    monkeypatch.setattr(host, "host_available_bytes", lambda: None)  # unknown: no refusal
    host.check_fits_host(10**15, "this job")

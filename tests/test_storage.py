"""Stored assets (super-net, adaptation, predictor) load safely: a damaged or foreign file is one clear error."""

import subprocess
import sys

import pytest
import torch

from tinytl.errors import TinyTLError
from tinytl.models.supernet import ProxylessSuperNet, load_supernet, save_supernet
from tinytl.train.adapt import load_adapted
from tinytl.search.predictor import load_predictor
from tinytl.storage import load_file, to_float, to_half


def test_half_and_back_keeps_integers_and_shapes():
    state = {"w": torch.randn(3, 4), "steps": torch.tensor(7)}
    half = to_half(state)
    assert half["w"].dtype == torch.float16 and half["steps"].dtype == torch.int64
    back = to_float(half)
    assert back["w"].dtype == torch.float32 and torch.allclose(back["w"], state["w"], atol=1e-2)


@pytest.mark.parametrize("loader, what", [(load_supernet, "super-net checkpoint"),
                                          (load_adapted, "adapted super-net"),
                                          (load_predictor, "accuracy predictor")])
def test_damaged_and_foreign_files_raise_one_line(tmp_path, loader, what):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00damaged" * 50)
    with pytest.raises(TinyTLError, match=f"cannot read {what}") as err:
        loader(bad)
    assert "\n" not in str(err.value)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")  # a valid torch file of something else
    with pytest.raises(TinyTLError, match=f"is not a {what} .*lacks state_dict"):
        loader(tmp_path / "other.pt")


def test_supernet_round_trip_and_mismatched_state(tmp_path):
    model = ProxylessSuperNet(5, True, "gn")
    save_supernet(model, tmp_path / "s.pt", {"made_by": "test"})
    loaded = load_supernet(tmp_path / "s.pt")
    assert loaded.provenance == {"made_by": "test"}
    assert torch.allclose(loaded.classifier[1].weight, model.classifier[1].weight, atol=1e-3)
    ckpt = load_file(tmp_path / "s.pt")
    ckpt["lite_residual"] = False  # the stored tensors no longer fit the network it describes
    torch.save(ckpt, tmp_path / "m.pt")
    with pytest.raises(TinyTLError, match="does not fit the super-net"):
        load_supernet(tmp_path / "m.pt")


def test_search_cli_damaged_predictor_exits_2(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk" * 10)
    proc = subprocess.run([sys.executable, "-m", "tinytl", "search", "--budget-mb", "50", "--predictor", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "cannot read accuracy predictor" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1

"""`python -m tinytl memory`: JSON output, table output, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from tinytl.cli import main


def test_json_matches_table2(capsys):
    assert main(["memory", "--policy", "bias", "--resolution", "224", "--batch-size", "8", "--classes", "102",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total_mb"] == pytest.approx(31.7, rel=0.01)
    assert out["view"] == "paper" and out["backbone"] == "proxylessnas_mobile" and out["policy"] == "bias"
    assert out["stored_activation_bytes"] == 8 * sum(row["stored_bytes"] for row in out["layers"])


def test_summary_first_table_on_request(capsys):
    assert main(["memory", "--policy", "last"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("paper view") and "total 30.8" in text and "classifier.1" not in text
    assert main(["memory", "--policy", "last", "--layers"]) == 0
    text = capsys.readouterr().out
    assert text.index("total 30.8") < text.index("classifier.1")


@pytest.mark.parametrize("argv,needle", [
    (["--backbone", "nope"], "--list-backbones"),
    (["--backbone", "resnet5"], "closest: resnet50"),
    (["--policy", "nope"], "valid: full, last"),
    (["--resolution", "16"], "resolution"),
    (["--resolution", "abc"], "expected an integer"),
    (["--batch-size", "0"], "batch size"),
    (["--classes", "0"], "classes"),
    (["--frozen-bits", "33"], "frozen bits"),
    (["--policy", "lite", "--no-lite-residual"], "lite residual"),
])
def test_bad_input_exit_2_one_line(argv, needle):
    proc = subprocess.run([sys.executable, "-m", "tinytl", "memory", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_list_backbones(capsys):
    assert main(["memory", "--list-backbones"]) == 0
    names = capsys.readouterr().out.split()
    assert names[0] == "proxylessnas_mobile" and {"squeezenet1_0", "regnet_y_128gf", "vit_b_16"} <= set(names)


def test_pytorch_view_on_models_it_once_refused(capsys):
    for backbone, res in (("squeezenet1_0", 32), ("inception_v3", 75)):
        assert main(["memory", "--backbone", backbone, "--resolution", str(res), "--norm", "bn",
                     "--no-lite-residual", "--policy", "bias", "--view", "pytorch", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["total_bytes"] == out["peak_activation_bytes"] + out["param_bytes"] + out["state_bytes"]


def test_help_lists_commands():
    proc = subprocess.run([sys.executable, "-m", "tinytl", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "memory" in proc.stdout

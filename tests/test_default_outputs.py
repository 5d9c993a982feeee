"""No command writes into the shipped assets by default: every --out defaults to the user data folder."""

import pytest

from tinytl.cli import build_parser
from tinytl.models.supernet import DEFAULT_CHECKPOINT

COMMANDS = {"pretrain": [], "supernet-pretrain": [], "adapt": [], "collect": []}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_out_defaults_leave_the_shipped_folder_alone(command, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYTL_HOME", str(tmp_path))
    args = build_parser().parse_args([command, *COMMANDS[command]])
    assert args.out is None  # resolved to the user data folder when the command runs
    from tinytl.paths import user_data_dir

    assert user_data_dir() == tmp_path and DEFAULT_CHECKPOINT.parent not in user_data_dir().parents


def test_bad_output_paths_fail_before_any_work(tmp_path, capsys):
    from tinytl.cli import main

    (tmp_path / "file").write_text("x")
    for out in (str(tmp_path), str(tmp_path / "file" / "under.json"), ""):
        assert main(["collect", "--pairs", "1", "--out", out]) == 2
        assert "error:" in capsys.readouterr().err
    assert main(["supernet-pretrain", "--out", str(tmp_path)]) == 2
    assert main(["adapt", "--out", str(tmp_path / "file" / "x.pt")]) == 2


def _full_disk(handle) -> None:
    """A write that fails part-way, as on a full disk."""
    handle.write(b"half a file")
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("argv", [
    ["collect", "--pairs", "2", "--resolutions", "32", "--val-images", "24"],
    ["pretrain", "--classes", "4", "--per-class", "4", "--epochs", "1", "--resolution", "32", "--batch-size", "8"],
])
def test_a_finished_job_whose_write_fails_leaves_the_previous_file_intact(argv, tmp_path, capsys, monkeypatch):
    from tinytl import storage
    from tinytl.cli import main

    out = tmp_path / "previous.out"
    out.write_bytes(b"the previous result")
    real = storage._write_atomic
    monkeypatch.setattr(storage, "_write_atomic", lambda path, write: real(path, _full_disk))
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: cannot write {out}: No space left on device"]
    assert out.read_bytes() == b"the previous result" and list(tmp_path.iterdir()) == [out]  # no temp file left

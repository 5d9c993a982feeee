"""A non-editable install works from any folder: the shipped assets travel as package data."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_installed_package_finds_its_assets_from_another_folder(tmp_path):
    target, elsewhere, source = tmp_path / "site", tmp_path / "elsewhere", tmp_path / "source"
    elsewhere.mkdir()
    # built from a copy, so the build leaves nothing in the repository
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", "tests", "benchmarks", "docs"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True, cwd=tmp_path)
    env = {**os.environ, "PYTHONPATH": str(target), "TINYTL_HOME": str(tmp_path / "home")}

    def run(*argv: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "tinytl", *argv], capture_output=True, text=True, env=env,
                              cwd=elsewhere, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    where = subprocess.run([sys.executable, "-c", "import tinytl; print(tinytl.__file__)"], capture_output=True,
                           text=True, env=env, cwd=elsewhere, check=True).stdout
    assert Path(where.strip()).is_relative_to(target)  # the installed copy, not the repository's
    summary = run("finetune", "--epochs", "1", "--max-steps", "2", "--resolution", "32", "--no-store", "--json")
    assert summary["weights"].endswith("proxylessnas_mobile_glyphs.pt") and summary["steps"] == 2
    assert (target / "tinytl" / "assets" / "proxylessnas_mobile_glyphs.pt").is_file()
    found = run("search", "--budget-mb", "40", "--json")
    assert found["front"] and all(p["memory_mb"] <= 40 for p in found["front"])

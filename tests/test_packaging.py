"""An installed (non-editable) wheel runs its own `models` / `eval` / `leaderboards` even from
a folder holding a project's own `models/` package, which Python would otherwise import first."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHADOW = 'raise SystemExit("the project\'s own models package was imported")\n'


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from a copy of the sources, installed with --target."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in ("ffhq_tools", "models", "eval", "leaderboards"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", str(src), "-w",
                          str(work / "dist")], check=True, cwd=work)
    wheel = next((work / "dist").glob("ffhq_tools-*.whl"))
    subprocess.run(pip + ["install", "--no-deps", "--target", str(work / "site"), str(wheel)],
                   check=True)
    return work / "site"


def run_in_user_project(site: Path, tmp_path: Path, *args: str):
    project = tmp_path / "my-gan-project"
    (project / "models").mkdir(parents=True, exist_ok=True)
    (project / "models" / "__init__.py").write_text(SHADOW)
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_wheel_uses_its_own_models_beside_a_users_models_folder(installed, tmp_path):
    done = run_in_user_project(installed, tmp_path, "-m", "ffhq_tools", "configs", "list")
    assert done.returncode == 0, done.stderr
    assert "stylegan2-F" in done.stdout
    where = run_in_user_project(
        installed, tmp_path, "-c", "from ffhq_tools.packages import prefer_our_packages; "
        "prefer_our_packages(); import models, eval, ffhq_tools; "
        "print(models.__file__); print(eval.__file__); print(ffhq_tools.__file__)")
    assert where.returncode == 0, where.stderr
    for line in where.stdout.split():
        assert Path(line).is_relative_to(installed), line


def test_a_foreign_models_already_imported_is_named(installed, tmp_path):
    done = run_in_user_project(
        installed, tmp_path, "-c", "import sys, types; sys.modules['models'] = "
        "types.ModuleType('models'); sys.modules['models'].__file__ = '/elsewhere/models.py'; "
        "from ffhq_tools.cli import main; raise SystemExit(main(['configs', 'list']))")
    assert done.returncode == 2
    assert "another package named 'models' (/elsewhere/models.py)" in done.stderr

"""DESIGN.md's one-way dependencies, checked over the source: ffhq_tools <- models <- eval <-
leaderboards. Only the wiring modules (CLI verbs, the demo, doctor) may reach up; crawling
never imports face detection."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"ffhq_tools": 0, "models": 1, "eval": 2, "leaderboards": 3}


def is_wiring(path: Path) -> bool:
    name = path.stem
    return name == "cli" or name.endswith("_cli") or name.startswith("demo") \
        or name == "doctor" or name == "__main__"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def upward_imports(package: str) -> list[str]:
    found = []
    for path in sources(package):
        if is_wiring(path):
            continue
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            if LAYERS.get(top, -1) > LAYERS[package]:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


@pytest.mark.parametrize("package", list(LAYERS))
def test_no_package_imports_a_higher_layer(package):
    assert upward_imports(package) == []


def test_crawling_never_imports_face_detection_or_networks():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {m}" for p in sources("ffhq_tools/crawl")
           for line, m in imported_modules(p)
           if m.startswith(("ffhq_tools.align", "dlib", "face_alignment", "torch"))]
    assert bad == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    fake = tmp_path / "models"
    fake.mkdir()
    (fake / "layer.py").write_text("from eval.registry import compute_metric\n")
    (fake / "cli.py").write_text("from eval.registry import compute_metric\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert upward_imports("models") == ["models/layer.py:1 imports eval.registry"]

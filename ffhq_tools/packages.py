"""Our top-level packages `models`, `eval` and `leaderboards` have common names. When the
command line runs from a folder that holds a project's own `models/` (or `eval/`), Python
would import that one first (`python -m ffhq_tools` puts the current folder at the front of
sys.path). The CLI calls `prefer_our_packages()` before it imports any of them."""

from __future__ import annotations

import sys
from pathlib import Path

from ffhq_tools.errors import FfhqToolsError

OUR_PACKAGES = ("models", "eval", "leaderboards")
ROOT = Path(__file__).resolve().parent.parent  # the folder (site-packages or checkout) with ours


def _ours(module) -> bool:
    origin = getattr(module, "__file__", None)
    return origin is not None and Path(origin).resolve().is_relative_to(ROOT / module.__name__)


def prefer_our_packages() -> None:
    """Put our install folder first on sys.path; refuse if a foreign `models` / `eval` /
    `leaderboards` was already imported in this process."""
    for name in OUR_PACKAGES:
        module = sys.modules.get(name)
        if module is not None and not _ours(module):
            raise FfhqToolsError(
                f"another package named '{name}' ({getattr(module, '__file__', '?')}) was "
                f"imported before ffhq-tools' own; run ffhq-tools from another folder or use "
                f"the `ffhq-tools` command rather than `python -m ffhq_tools` there")
    root = str(ROOT)
    if not sys.path or sys.path[0] != root:
        sys.path.insert(0, root)

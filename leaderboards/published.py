"""Published numbers shipped as `leaderboards/baselines/<table>.csv` (long format).

Columns: paper, table, row, config, dataset, metric, value, note. `metric` is the result name
the suite's metrics produce (`fid50k`, `ppl_wend`, `ls_w`, `pr50k3_precision`, ...), so
published and measured values meet in one column.
"""

from __future__ import annotations

from pathlib import Path

from ffhq_tools.errors import FfhqToolsError

BASELINES_DIR = Path(__file__).resolve().parent / "baselines"
BASELINE_COLUMNS = ("paper", "table", "row", "config", "dataset", "metric", "value", "note")


def list_baselines() -> list[str]:
    return sorted(p.stem for p in BASELINES_DIR.glob("*.csv"))


def load_baseline(name: str):
    """One published table as a pandas DataFrame (value as float)."""
    import pandas as pd

    path = BASELINES_DIR / f"{name}.csv"
    if not path.is_file():
        known = ", ".join(list_baselines())
        raise FfhqToolsError(f"no published baseline '{name}'; known: {known}")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if tuple(frame.columns) != BASELINE_COLUMNS:
        raise FfhqToolsError(f"{path}: columns {list(frame.columns)} differ from "
                             f"{list(BASELINE_COLUMNS)}")
    frame["value"] = pd.to_numeric(frame["value"], errors="raise")
    return frame


def load_all_baselines():
    import pandas as pd

    return pd.concat([load_baseline(name) for name in list_baselines()], ignore_index=True)

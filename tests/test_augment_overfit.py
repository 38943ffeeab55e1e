"""The ADA paper's overfitting heuristic on a 100-image set: without augmentation D's sign gap
E[sign D(real)] - E[sign D(fake)] runs towards 2 (D separates every real from every fake);
with --aug ada the controller raises p and keeps E[sign D(real)] near the target, so the gap
stays bounded (Karras et al. 2020, section 3)."""

from __future__ import annotations

import json

import pytest
from train_standins import one_thread, write_shapes_h5  # noqa: F401 - autouse fixture

from models.train import TrainOptions, train

TICKS = 11  # tick 0 and ten ticks of 0.32 kimg


def _tick_stats(data, outdir, **aug):
    options = TrainOptions(config="tiny", data=str(data), outdir=str(outdir), kimg=3.2,
                           batch=16, tick_kimg=0.32, snap=0, channel_max=16, workers=0,
                           grid_size=4, progress=False, device="cpu", threads=1, seed=0, **aug)
    run = train(options)
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def _late(stats, key):
    """Mean of the last three ticks."""
    late = stats[-3:]
    return sum(s[key] for s in late) / len(late)


def _gaps(stats):
    return [s["Loss/signs/real"] - s["Loss/signs/fake"] for s in stats[1:]]


@pytest.mark.slow
def test_ada_bounds_the_sign_gap_that_noaug_lets_run_away(tmp_path):
    data = write_shapes_h5(tmp_path / "shapes.h5", count=100, resolution=8)
    plain = _tick_stats(data, tmp_path / "noaug", aug="noaug")
    ada = _tick_stats(data, tmp_path / "ada", aug="ada", target=0.6, ada_kimg=4.0)
    assert len(plain) == len(ada) == TICKS
    assert max(s["Loss/signs/real"] for s in plain) > 0.95  # D calls every real real
    assert max(_gaps(plain)) > 1.8
    assert sum(_gaps(ada)) < sum(_gaps(plain)) - 0.5
    assert max(s["Progress/augment"] for s in ada) > 0.2
    assert abs(_late(ada, "Loss/signs/real") - 0.6) < 0.1

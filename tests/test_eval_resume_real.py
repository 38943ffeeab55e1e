"""A killed real-data statistics pass resumes from its partial checkpoint (beside the cache
entry, named by its key) and ends bit-for-bit where an uninterrupted pass ends: same mean,
covariance and captured features. Kills are simulated by an extractor that raises after k
batches; one slow test kills a real subprocess."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from eval_helpers import (
    MomentExtractor,
    photos,
    random_crops,
    seeded_inception_file,
    write_folder,
)
from PIL import Image

from eval import passes, runner
from eval.registry import MetricContext
from eval.stats import FeatureStats, StatsError


class Killed(Exception):
    pass


class Dying:
    """Wraps an extractor; raises on call number `fail_at` (None: never); counts calls."""

    def __init__(self, extractor, fail_at=None):
        self.extractor, self.fail_at, self.calls = extractor, fail_at, 0
        self.sha256 = extractor.sha256

    def __call__(self, batch, want_probs=False):
        self.calls += 1
        if self.calls == self.fail_at:
            raise Killed(f"killed at batch {self.calls}")
        return self.extractor(batch, want_probs=want_probs)


def fake_extractor() -> MomentExtractor:
    return MomentExtractor("e" * 64, seed=1)


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    return seeded_inception_file(tmp_path_factory)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("real"), random_crops(9, 16, 5, photos()))


def _ctx(cache: Path, inception_file=None, **fields) -> MetricContext:
    overrides = {"inception-fid": inception_file} if inception_file else {}
    return MetricContext(weights_overrides=overrides, progress=False, stats_cache=cache,
                         **{"batch_size": 2, **fields})


def _run(monkeypatch, ctx, extractor, source, num=None, capture=True, xflip=False):
    monkeypatch.setattr(runner, "inception", lambda _ctx: extractor)
    monkeypatch.setattr(passes, "CHECKPOINT_EVERY_IMAGES", 4)  # every 2 batches of 2
    return runner.source_features(ctx, source, num, capture=capture, xflip=xflip)


def _partials(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.partial-*.npz"))


def _assert_identical(a: FeatureStats, b: FeatureStats) -> None:
    assert a.num == b.num
    np.testing.assert_array_equal(a.mean(), b.mean())
    np.testing.assert_array_equal(a.covariance(), b.covariance())
    if a.capture or b.capture:
        np.testing.assert_array_equal(a.features(), b.features())


def test_killed_real_pass_resumes_bit_for_bit(monkeypatch, tmp_path, folder, inception_file):
    real = runner.load_inception(_ctx(tmp_path, inception_file))
    reference = _run(monkeypatch, _ctx(tmp_path / "a", inception_file), Dying(real), folder,
                     num=5)
    assert len(np.unique(reference.features(), axis=0)) == 5
    cache = tmp_path / "b"
    with pytest.raises(Killed):
        _run(monkeypatch, _ctx(cache, inception_file), Dying(real, fail_at=3), folder, num=5)
    assert [p.name.split(".")[1] for p in _partials(cache)] == ["partial-b2-of1-r0"]
    assert FeatureStats.load(_partials(cache)[0]).num == 4  # batches 1-2 checkpointed
    resumed_extractor = Dying(real)
    resumed = _run(monkeypatch, _ctx(cache, inception_file), resumed_extractor, folder, num=5)
    assert resumed_extractor.calls == 1  # only the last batch (one image)
    _assert_identical(resumed, reference)
    assert not _partials(cache)
    cached = FeatureStats.load(next(cache.glob("*.npz")))
    _assert_identical(cached, reference)


def _h5(path: Path, count: int) -> Path:
    with h5py.File(path, "w") as f:
        f["data8x8"] = np.random.default_rng(3).integers(0, 256, (count, 3, 8, 8), np.uint8)
    return path


@pytest.mark.parametrize("capture", [True, False])
def test_xflip_h5_resume_checkpoints_at_batch_boundaries(monkeypatch, tmp_path, capture):
    data = _h5(tmp_path / "d.h5", 11)
    reference = _run(monkeypatch, _ctx(tmp_path / "a"), Dying(fake_extractor()), data,
                     capture=capture, xflip=True)
    assert reference.num == 22
    cache = tmp_path / "b"
    with pytest.raises(Killed):  # calls 1-6 = batches 1-3 with their mirrors; 3 is odd
        _run(monkeypatch, _ctx(cache), Dying(fake_extractor(), fail_at=7), data,
             capture=capture, xflip=True)
    assert FeatureStats.load(_partials(cache)[0]).num == 8  # batches 1-2 and mirrors
    extractor = Dying(fake_extractor())
    resumed = _run(monkeypatch, _ctx(cache), extractor, data, capture=capture, xflip=True)
    assert extractor.calls == 12 - 4
    _assert_identical(resumed, reference)


def test_mixed_size_folder_never_checkpoints_inside_a_batch(monkeypatch, tmp_path):
    crops = random_crops(6, 16, 8, photos())
    mixed = write_folder(tmp_path / "mixed", crops)
    for index in (1, 3, 5):  # every batch of 2 splits into two single-image runs
        Image.fromarray(crops[index]).resize((24, 24)).save(mixed / f"{index:05d}.png")
    reference = _run(monkeypatch, _ctx(tmp_path / "a"), Dying(fake_extractor()), mixed)
    cache = tmp_path / "b"
    with pytest.raises(Killed):  # dies on the second run of batch 3
        _run(monkeypatch, _ctx(cache), Dying(fake_extractor(), fail_at=6), mixed)
    assert FeatureStats.load(_partials(cache)[0]).num == 4
    resumed = _run(monkeypatch, _ctx(cache), Dying(fake_extractor()), mixed)
    _assert_identical(resumed, reference)


def test_other_settings_never_resume_a_partial(monkeypatch, tmp_path, folder):
    cache = tmp_path / "c"
    with pytest.raises(Killed):
        _run(monkeypatch, _ctx(cache), Dying(fake_extractor(), fail_at=4), folder, num=8)
    stale = _partials(cache)
    # Another count is another cache key: a fresh pass, the stale partial left alone.
    extractor = Dying(fake_extractor())
    fresh = _run(monkeypatch, _ctx(cache), extractor, folder, num=6)
    assert extractor.calls == 3 and _partials(cache) == stale
    _assert_identical(fresh, _run(monkeypatch, _ctx(tmp_path / "a"), Dying(fake_extractor()),
                                  folder, num=6))
    # Same key, another batch size or number of processes: refused, naming the file.
    for fields in ({"batch_size": 3}, {"rank": 1, "world_size": 2}):
        with pytest.raises(StatsError, match=r"partial-b2-of1-r0\.npz.*batch size"):
            _run(monkeypatch, _ctx(cache, **fields), Dying(fake_extractor()), folder, num=8)
    resumed = _run(monkeypatch, _ctx(cache), Dying(fake_extractor()), folder, num=8)
    assert resumed.num == 8 and not _partials(cache)


def test_each_rank_resumes_its_own_share(monkeypatch, tmp_path):
    """Ranks run one after another here (no process group: no reduction); rank 1 is killed and
    resumes its own batches (global batches 1, 3, 5 of 7), named by rank and world size."""
    folder = write_folder(tmp_path / "real", random_crops(13, 16, 9, photos()))

    def share(cache, rank, extractor):
        return _run(monkeypatch, _ctx(cache, rank=rank, world_size=2), extractor, folder)

    straight = share(tmp_path / "a", 1, Dying(fake_extractor()))
    assert straight.num == 6
    cache = tmp_path / "b"
    with pytest.raises(Killed):
        share(cache, 1, Dying(fake_extractor(), fail_at=3))
    assert [p.name.split(".")[1] for p in _partials(cache)] == ["partial-b2-of2-r1"]
    extractor = Dying(fake_extractor())
    _assert_identical(share(cache, 1, extractor), straight)
    assert extractor.calls == 1


def test_captured_checkpoints_write_a_bounded_multiple_of_the_final_size():
    def written(captured, batches=20_000, every=32):
        last, rows = 0, []
        for done in range(1, batches + 1):
            if passes.checkpoint_due(done, last, every, captured):
                last = done
                rows.append(done)  # a checkpoint rewrites everything captured so far
        return rows

    plain, captured = written(False), written(True)
    assert len(plain) == 625 and plain[-1] == 20_000
    assert sum(captured) <= 9.5 * 20_000 < sum(plain) / 30  # geometric, not quadratic
    assert all(b - a <= max(32, b // 8) for a, b in zip(captured[:-1], captured[1:], strict=True))
    assert captured[:3] == [32, 64, 96]  # small runs keep the fixed interval


def _rank_worker(rank, init_file, folder, cache, out, fail_at):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        extractor = Dying(fake_extractor(), fail_at if rank == 1 else None)
        runner.inception = lambda ctx: extractor
        passes.CHECKPOINT_EVERY_IMAGES = 4
        ctx = _ctx(Path(cache), rank=rank, world_size=2)
        stats = runner.source_features(ctx, folder, None, capture=True)
        np.savez(f"{out}-rank{rank}.npz", mu=stats.mean(), sigma=stats.covariance(),
                 features=stats.features(), num=stats.num, calls=extractor.calls)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_resume_their_own_shares(monkeypatch, tmp_path):
    import torch.multiprocessing as mp

    folder = write_folder(tmp_path / "real", random_crops(13, 16, 9, photos()))
    single = _run(monkeypatch, _ctx(tmp_path / "one"), Dying(fake_extractor()), folder)
    cache, out = tmp_path / "two", tmp_path / "out"
    # Rank 1 dies in its third batch; either rank's error may be the one reported.
    with pytest.raises(Exception, match="Killed|Connection (closed|reset)"):
        mp.spawn(_rank_worker, args=(str(tmp_path / "i1"), folder, cache, out, 3), nprocs=2)
    assert "partial-b2-of2-r1" in " ".join(p.name for p in _partials(cache))
    mp.spawn(_rank_worker, args=(str(tmp_path / "i2"), folder, cache, out, None), nprocs=2)
    for rank in (0, 1):
        with np.load(f"{out}-rank{rank}.npz") as reduced:
            assert int(reduced["num"]) == 13
            if rank == 1:
                assert int(reduced["calls"]) == 1  # global batch 5 only: 1 and 3 were saved
            np.testing.assert_array_equal(reduced["features"], single.features())
            np.testing.assert_allclose(reduced["mu"], single.mean(), rtol=1e-12)
            np.testing.assert_allclose(reduced["sigma"], single.covariance(), rtol=1e-9,
                                       atol=1e-12)
    assert not _partials(cache) and len(list(cache.glob("*.npz"))) == 1


_KILLABLE = """
import sys, time
from eval import passes, runner
from eval.features.inception import FIDInception
from ffhq_tools.cli import main
passes.CHECKPOINT_EVERY_IMAGES = 2
real_inception = runner.inception
def slow_inception(ctx):
    extractor = real_inception(ctx)
    class Slow:
        sha256 = extractor.sha256
        def __call__(self, batch, want_probs=False):
            time.sleep(0.3)
            return extractor(batch, want_probs=want_probs)
    return Slow()
runner.inception = slow_inception
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_killed_subprocess_resumes_bit_for_bit(tmp_path, folder, inception_file):
    def command(cache, out):
        return [sys.executable, "-c", _KILLABLE, "fid", "--save-stats", str(folder), str(out),
                "--batch-size", "2", "--no-progress", "--stats-cache", str(cache),
                "--weights", f"inception-fid={inception_file}"]

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run(command(tmp_path / "a", tmp_path / "a.npz"), check=True, env=env,
                   capture_output=True)
    cache = tmp_path / "b"
    victim = subprocess.Popen(command(cache, tmp_path / "b.npz"), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not _partials(cache) and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert _partials(cache), "the run ended before writing a partial checkpoint"
    subprocess.run(command(cache, tmp_path / "b.npz"), check=True, env=env, capture_output=True)
    _assert_identical(FeatureStats.load(tmp_path / "b.npz"), FeatureStats.load(tmp_path / "a.npz"))
    assert not _partials(cache)

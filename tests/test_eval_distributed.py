"""Two CPU ranks with Gloo: rank-sliced generation covers every image exactly once and the
reduced statistics equal single-process statistics, captured features in the same order."""

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from eval_helpers import MomentExtractor
from PIL import Image

from eval.sampling import iterate_generated
from eval.stats import FeatureStats


class _G(torch.nn.Module):
    z_dim, c_dim = 4, 0

    def forward(self, z, c=None, truncation_psi=1.0, noise_mode="random"):
        return torch.tanh(z[:, :3, None, None].expand(-1, 3, 2, 2) + torch.randn(len(z), 3, 2, 2))


def _images(num=11, batch=3):
    return [b.flatten(1).float() for b in iterate_generated(_G(), num, batch, 5, "cpu")]


def _worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        stats = FeatureStats(12, capture=True)
        for batch in _images():
            stats.update(batch)
        stats.all_reduce(rows_per_batch=3)
        np.savez(f"{out_dir}/rank{rank}.npz", mu=stats.mean(), sigma=stats.covariance(),
                 num=stats.num, features=stats.features())
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    single = FeatureStats(12, capture=True)
    for batch in _images():
        single.update(batch)
    for rank in (0, 1):
        with np.load(tmp_path / f"rank{rank}.npz") as r:
            assert int(r["num"]) == 11
            np.testing.assert_allclose(r["mu"], single.mean(), rtol=1e-12)
            np.testing.assert_allclose(r["sigma"], single.covariance(), rtol=1e-9, atol=1e-12)
            # Put back in global batch order: exactly what one process captured.
            np.testing.assert_array_equal(r["features"], single.features())


def test_global_batch_order_interleaves_ranks_across_block_boundaries():
    from eval.stats import global_batch_order

    rows = np.arange(23, dtype=np.float32)[:, None]  # 8 batches of 3 rows, the last one of 2
    batches = [rows[i:i + 3] for i in range(0, 23, 3)]
    for world in (1, 2, 3):
        per_rank = []
        for rank in range(world):
            mine = np.concatenate(batches[rank::world])
            cuts = [0, 1, 5, len(mine)] if len(mine) > 5 else [0, len(mine)]  # odd blocks
            per_rank.append([mine[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)])
        ordered = np.concatenate(global_batch_order(per_rank, 3))
        np.testing.assert_array_equal(ordered, rows)




def _kid(folder, cache, rank=0, world_size=1) -> float:
    from eval import runner
    from eval.registry import MetricContext, compute_metric

    runner.inception = lambda ctx: MomentExtractor("d" * 64, seed=2)
    ctx = MetricContext(generator=_G(), data=folder, stats_cache=cache, progress=False,
                        batch_size=3, num_gen=11, seed=5, rank=rank, world_size=world_size)
    return compute_metric("kid50k_full", ctx)["results"]["kid"]


def _kid_worker(rank, init_file, folder, cache, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        np.save(f"{out_dir}/kid{rank}.npy", _kid(folder, cache, rank, 2))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_kid_under_two_gloo_ranks_equals_one_process(tmp_path, monkeypatch):
    """Same features in the same order on both sides, so the same random subsets."""
    from eval import runner

    monkeypatch.setattr(runner, "inception", runner.inception)  # restored after _kid patches
    folder = tmp_path / "real"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for index in range(10):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8)).save(folder / f"{index}.png")
    single = _kid(folder, tmp_path / "one")
    mp.spawn(_kid_worker, args=(str(tmp_path / "init"), folder, tmp_path / "two", str(tmp_path)),
             nprocs=2)
    for rank in (0, 1):
        assert float(np.load(tmp_path / f"kid{rank}.npy")) == pytest.approx(single, rel=1e-9)

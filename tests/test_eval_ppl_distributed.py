"""PPL sampling, linear-separability sampling and the precision/recall blocks under
torch.distributed (2 CPU ranks, Gloo) equal one process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow


def _worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    from test_eval_ppl import LinearGenerator, squared_l2

    from eval import ppl

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}",
                                         rank=rank, world_size=world)
    try:
        samples = ppl.path_length_samples(LinearGenerator(), squared_l2, 50, space="z",
                                          sampling_mode="full", crop=True, batch_size=8, seed=4)
        if rank == 0:
            np.save(out_file, samples)
    finally:
        torch.distributed.destroy_process_group()


def test_two_ranks_produce_the_single_process_samples(tmp_path):
    from test_eval_ppl import LinearGenerator, squared_l2

    from eval import ppl

    out = tmp_path / "samples.npy"
    torch.multiprocessing.spawn(_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2)
    single = ppl.path_length_samples(LinearGenerator(), squared_l2, 50, space="z",
                                     sampling_mode="full", crop=True, batch_size=8, seed=4)
    gathered = np.load(out)
    assert gathered.shape == (50,)
    np.testing.assert_allclose(np.sort(gathered), np.sort(single), rtol=1e-12)


def _resuming_worker(rank: int, world: int, init_file: str, folder: str,
                     fail_at: int | None) -> None:
    from test_eval_ppl import LinearGenerator, squared_l2

    from eval import passes, ppl

    passes.CHECKPOINT_EVERY_IMAGES = 8  # every batch
    calls = []

    def distance(a, b):
        calls.append(len(a))
        if rank == 1 and len(calls) == fail_at:
            raise KeyboardInterrupt("Killed")
        return squared_l2(a, b)

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}",
                                         rank=rank, world_size=world)
    try:
        samples = ppl.path_length_samples(LinearGenerator(), distance, 50, space="z",
                                          sampling_mode="full", crop=True, batch_size=8, seed=4,
                                          checkpoint=Path(folder) / f"r{rank}.npz")
        np.save(Path(folder) / f"out-{rank}.npy", samples)
        np.save(Path(folder) / f"calls-{rank}.npy", np.array(calls))
    finally:
        torch.distributed.destroy_process_group()


def test_two_ranks_resume_their_own_batches(tmp_path):
    from test_eval_ppl import LinearGenerator, squared_l2

    from eval import ppl

    spawn = torch.multiprocessing.spawn
    with pytest.raises(Exception, match="Killed|Connection (closed|reset)"):
        spawn(_resuming_worker, args=(2, str(tmp_path / "i1"), str(tmp_path), 3), nprocs=2)
    with np.load(tmp_path / "r1.npz") as saved:
        assert int(saved["batches"]) == 2  # global batches 1 and 3 of 0..6
    spawn(_resuming_worker, args=(2, str(tmp_path / "i2"), str(tmp_path), None), nprocs=2)
    assert np.load(tmp_path / "calls-1.npy").tolist() == [8]  # global batch 5 only
    single = ppl.path_length_samples(LinearGenerator(), squared_l2, 50, space="z",
                                     sampling_mode="full", crop=True, batch_size=8, seed=4)
    for rank in (0, 1):
        gathered = np.load(tmp_path / f"out-{rank}.npy")
        np.testing.assert_allclose(gathered, single, rtol=1e-12)
    assert not list(tmp_path.glob("r*.npz"))


def _pr_worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    from eval import knn

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}",
                                         rank=rank, world_size=world)
    try:
        real, gen = _clouds()
        result = knn.precision_recall(real, gen, 3, row_batch=16, col_batch=40,
                                      dtype=torch.float64)
        np.save(out_file.replace(".npy", f"-{rank}.npy"),
                np.array([result.precision, result.recall]))
    finally:
        torch.distributed.destroy_process_group()


def _clouds():
    g = torch.Generator().manual_seed(8)
    return torch.randn(90, 6, generator=g, dtype=torch.float64), \
        torch.randn(70, 6, generator=g, dtype=torch.float64) + 0.4


def test_precision_recall_blocks_split_over_two_ranks(tmp_path):
    from eval import knn

    out = tmp_path / "pr.npy"
    torch.multiprocessing.spawn(_pr_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2)
    real, gen = _clouds()
    single = knn.precision_recall(real, gen, 3, row_batch=16, col_batch=40, dtype=torch.float64)
    for rank in range(2):
        got = np.load(tmp_path / f"pr-{rank}.npy")
        assert got.tolist() == [single.precision, single.recall]


def _ls_samples(folder: Path | None = None):
    from test_eval_ppl import LinearGenerator

    from eval.features import attributes
    from eval.separability import collect_samples

    torch.manual_seed(0)
    config = attributes.ClassifierConfig(resolution=16, fmap_base=64, fmap_max=32)
    classifiers = {i: attributes.AttributeClassifier(config).eval() for i in (0, 7)}
    latents, probabilities = collect_samples(LinearGenerator(resolution=16), classifiers, 40,
                                             8, seed=6, device="cpu")
    arrays = {**latents, **{f"p{i}": p for i, p in probabilities.items()}}
    if folder is not None:
        np.savez(folder / f"ls-{torch.distributed.get_rank()}.npz", **arrays)
    return arrays


def _ls_worker(rank: int, world: int, init_file: str, folder: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}",
                                         rank=rank, world_size=world)
    try:
        _ls_samples(Path(folder))
    finally:
        torch.distributed.destroy_process_group()


def test_two_ranks_give_the_single_process_ls_samples_in_order(tmp_path):
    """The SVMs see the same rows in the same order as in one process."""
    torch.multiprocessing.spawn(_ls_worker, args=(2, str(tmp_path / "init"), str(tmp_path)),
                                nprocs=2)
    single = _ls_samples()
    assert set(single) == {"z", "w", "p0", "p7"} and single["z"].shape == (40, 6)
    for rank in (0, 1):
        with np.load(tmp_path / f"ls-{rank}.npz") as gathered:
            for name, values in single.items():
                np.testing.assert_array_equal(gathered[name], values, err_msg=name)

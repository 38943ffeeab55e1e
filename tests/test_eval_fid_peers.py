"""FID, IS and KID of folders, ours vs pytorch-fid and torch-fidelity on identical weights: an
architecture-exact Inception with seeded random weights and BatchNorm calibrated on photos,
saved as pt_inception-2015-12-05-6726825d.pth where both peers look for it (TORCH_HOME)."""

import pytest
from eval_helpers import photos, random_crops, shared_inception_file, write_folder

from eval.fid import fid_between
from eval.registry import MetricContext

NUM = 6  # images per folder: every image costs a full 299x299 Inception pass per library


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    sources = photos()
    root = tmp_path_factory.mktemp("peers")
    first = write_folder(root / "a", random_crops(NUM, 32, 21, sources[:3]))
    second = write_folder(root / "b", random_crops(NUM, 32, 22, sources[3:]))
    return first, second


@pytest.fixture()
def torch_home(tmp_path_factory, tmp_path, monkeypatch):
    inception = shared_inception_file(tmp_path_factory)
    checkpoints = tmp_path / "torch_home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    network = inception.read_bytes()
    (checkpoints / inception.name).write_bytes(network)
    # torch-fidelity's name for the same file
    (checkpoints / "weights-inception-2015-12-05-6726825d.pth").write_bytes(network)
    monkeypatch.setenv("TORCH_HOME", str(checkpoints.parent.parent))
    return inception


def _ours(folders, inception, mode, tmp_path):
    ctx = MetricContext(weights_overrides={"inception-fid": inception}, mode=mode,
                        progress=False, stats_cache=tmp_path / "stats")
    return fid_between(*folders, ctx)["fid"]


@pytest.mark.slow
def test_pytorch_fid_mode_agrees_with_pytorch_fid(folders, torch_home, tmp_path):
    """pytorch-fid's statistics (its loader, resize and network) through our exact distance:
    its sqrtm runs twice on these singular covariances and would double the test time; the
    full pytorch-fid path is compared in bench/bench_fid.py (relative difference 9.4e-7)."""
    from pytorch_fid.fid_score import compute_statistics_of_path
    from pytorch_fid.inception import InceptionV3

    from eval.frechet import frechet_distance

    model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    stats = [compute_statistics_of_path(str(f), model, NUM, 2048, "cpu", 0) for f in folders]
    theirs = frechet_distance(*stats[0], *stats[1])
    ours = _ours(folders, torch_home, "pytorch-fid", tmp_path)
    assert theirs > 1.0  # calibrated features spread: the two photo sets are far apart
    assert ours == pytest.approx(theirs, rel=1e-4)


@pytest.mark.slow
def test_tf_mode_agrees_with_torch_fidelity(folders, torch_home, tmp_path):
    import torch_fidelity

    theirs = torch_fidelity.calculate_metrics(
        input1=str(folders[0]), input2=str(folders[1]), fid=True, cuda=False, verbose=False,
        cache=False, batch_size=NUM)["frechet_inception_distance"]
    ours = _ours(folders, torch_home, "tf", tmp_path)
    assert theirs > 1.0
    assert ours == pytest.approx(theirs, rel=1e-3)


@pytest.mark.slow
def test_inception_score_and_kid_agree_with_torch_fidelity(folders, torch_home, tmp_path):
    """IS (bias-free logits, consecutive splits) and KID (cubic kernel, unbiased MMD^2) from
    our TF-mode features and formulas; one KID subset of every image, so no draw differs."""
    import torch_fidelity

    from eval import runner, sampling
    from eval.inception_score import inception_score_from_probs
    from eval.kid import kid_from_features

    theirs = torch_fidelity.calculate_metrics(
        input1=str(folders[0]), input2=str(folders[1]), isc=True, isc_splits=3,
        samples_shuffle=False, kid=True, kid_subsets=1, kid_subset_size=NUM, cuda=False,
        verbose=False, cache=False, batch_size=NUM)
    ctx = MetricContext(weights_overrides={"inception-fid": torch_home}, mode="tf",
                        progress=False, stats_cache=tmp_path / "stats")
    (batch,) = sampling.iterate_real(folders[0], NUM, NUM)
    pool, probs = runner.inception(ctx)(batch, want_probs=True)
    is_mean, is_std = inception_score_from_probs(probs.numpy(), 3)
    real = runner.source_features(ctx, folders[1], None, capture=True).features()
    kid = kid_from_features(pool.numpy(), real, num_subsets=1, max_subset_size=NUM)["kid"]
    # Random logits keep IS near 1, so its excess over 1 (exp of the mean KL) is compared.
    excess = theirs["inception_score_mean"] - 1
    assert excess > 1e-4 and theirs["inception_score_std"] > 1e-5
    assert is_mean - 1 == pytest.approx(excess, rel=1e-4)
    assert is_std == pytest.approx(theirs["inception_score_std"], rel=1e-3)
    assert abs(theirs["kernel_inception_distance_mean"]) > 1e-3
    assert kid == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4)

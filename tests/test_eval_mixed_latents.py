"""fid50k_latents1..4 (StyleGAN Table 2): images mixed from n latents at random crossover
layers. Checked against a direct computation (mapping of each latent, explicit segments),
for determinism (batch size, order, resume), end to end through the registry, and on the
leaderboard layout."""

import hashlib
import math

import pytest
import torch
from eval_helpers import photos, random_crops, seeded_inception_file, write_folder

from eval import sampling
from eval.mixed_latents import MixedLatentGenerator, mixed_generator_info
from eval.registry import MetricContext, compute_metric, get_metric
from ffhq_tools.errors import FfhqToolsError
from leaderboards.layouts import get_layout
from leaderboards.score import metrics_for_table
from models.configs import build_networks, get_config


def tiny_generator(config="tiny", seed=0):
    """A tiny generator with every parameter perturbed, so noise strengths are not zero."""
    torch.manual_seed(seed)
    G, _ = build_networks(get_config(config), 16)
    rng = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=rng))
    return G.eval()


@pytest.fixture(scope="module")
def G():
    return tiny_generator()


def reference_mixing(z_row: torch.Tensor, num_latents: int, num_ws: int):
    """The documented rule, written out: SHA-256 of the float32 z seeds the extra z, then a
    permutation of 1..num_ws-1 whose first n-1 entries, sorted, are the crossovers."""
    digest = hashlib.sha256(b"ffhq-tools/mixed-latents/v1"
                            + z_row.numpy().astype("<f4").tobytes()).digest()
    rng = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    extra = torch.randn(num_latents - 1, z_row.shape[0], generator=rng)
    points = sorted((torch.randperm(num_ws - 1, generator=rng)[:num_latents - 1] + 1).tolist())
    return [z_row, *extra], points


def direct_ws(G, z_row, num_latents, c_row=None):
    """Per-layer ws by mapping every latent alone and copying its segment layer by layer."""
    latents, points = reference_mixing(z_row, num_latents, G.num_ws)
    bounds = [0, *points, G.num_ws]
    ws = torch.empty(G.num_ws, G.w_dim)
    for i, z in enumerate(latents):
        w = G.mapping(z[None], None if c_row is None else c_row[None])[0]
        for layer in range(bounds[i], bounds[i + 1]):
            ws[layer] = w[layer]
    return ws, points


def test_one_latent_gives_the_plain_generators_images(G):
    z = torch.randn(5, G.z_dim, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(11)
    plain = G(z, None, noise_mode="random")
    torch.manual_seed(11)
    mixed = MixedLatentGenerator(G, 1)(z, None, noise_mode="random")
    assert torch.equal(plain, mixed)


@pytest.mark.parametrize("config", ["tiny", "tiny-stylegan"])
@pytest.mark.parametrize("num_latents", [2, 3, 4])
def test_each_segment_takes_its_latents_w(config, num_latents):
    G = tiny_generator(config)
    W = MixedLatentGenerator(G, num_latents)
    z = torch.randn(48, G.z_dim, generator=torch.Generator().manual_seed(num_latents))
    with torch.no_grad():
        ws, crossovers = W.mixed_ws(z)
        seen = set()
        for i in range(len(z)):
            expected, points = direct_ws(G, z[i], num_latents)
            assert crossovers[i].tolist() == points
            assert len(set(points)) == num_latents - 1 and points == sorted(points)
            assert all(1 <= p <= G.num_ws - 1 for p in points)
            torch.testing.assert_close(ws[i], expected, rtol=1e-4, atol=1e-5)
            seen.update(points)
        assert seen == set(range(1, G.num_ws))  # every crossover layer is drawn
        # distinct latents really differ, so a wrong segment would have been caught
        assert not torch.allclose(ws[:, 0], ws[:, -1])
        torch.manual_seed(5)
        images = W(z[:4], None, noise_mode="random")
        torch.manual_seed(5)
        reference = G.synthesis(ws[:4], noise_mode="random")
    assert torch.equal(images, reference)


def test_conditional_generator_maps_every_latent_with_the_images_label():
    torch.manual_seed(0)
    G, _ = build_networks(get_config("tiny"), 16, c_dim=3)
    W = MixedLatentGenerator(G.eval(), 3)
    z = torch.randn(6, G.z_dim, generator=torch.Generator().manual_seed(4))
    c = torch.eye(3)[torch.tensor([0, 1, 2, 2, 1, 0])]
    with torch.no_grad():
        ws, _ = W.mixed_ws(z, c)
        for i in range(len(z)):
            torch.testing.assert_close(ws[i], direct_ws(G, z[i], 3, c[i])[0],
                                       rtol=1e-4, atol=1e-5)
        batches = list(sampling.iterate_generated(W, 4, 2, seed=1, device="cpu", c=c[:4]))
    assert [b.shape for b in batches] == [(2, 3, 16, 16)] * 2


def test_mixing_depends_only_on_each_images_z(G):
    W = MixedLatentGenerator(G, 3)
    z = torch.randn(10, G.z_dim, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        whole, points = W.mixed_ws(z)
        parts = [W.mixed_ws(z[:3]), W.mixed_ws(z[3:])]
        order = torch.randperm(10, generator=torch.Generator().manual_seed(1))
        shuffled, shuffled_points = W.mixed_ws(z[order])
    torch.testing.assert_close(torch.cat([p[0] for p in parts]), whole, rtol=1e-4, atol=1e-5)
    assert torch.equal(torch.cat([p[1] for p in parts]), points)
    torch.testing.assert_close(shuffled, whole[order], rtol=1e-4, atol=1e-5)
    assert torch.equal(shuffled_points, points[order])


def test_resumed_sampling_repeats_the_uninterrupted_batches(G):
    W = MixedLatentGenerator(G, 4)
    full = list(sampling.iterate_generated(W, 10, 4, seed=2, device="cpu"))
    resumed = list(sampling.iterate_generated(W, 10, 4, seed=2, device="cpu", skip_batches=2))
    assert len(full) == 3 and len(resumed) == 1 and torch.equal(full[2], resumed[0])
    again = list(sampling.iterate_generated(W, 10, 4, seed=2, device="cpu"))
    assert all(torch.equal(a, b) for a, b in zip(full, again, strict=True))


def test_generators_that_cannot_mix_are_refused(G):
    with pytest.raises(FfhqToolsError, match="traditional input"):
        MixedLatentGenerator(tiny_generator("tiny-progan"), 2)
    with pytest.raises(FfhqToolsError, match="1..4"):
        MixedLatentGenerator(G, 5)
    G.num_ws, saved = 2, G.num_ws
    try:
        with pytest.raises(FfhqToolsError, match="only 2 layers"):
            MixedLatentGenerator(G, 3)
    finally:
        G.num_ws = saved


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    return seeded_inception_file(tmp_path_factory)


def test_metric_end_to_end_and_latents1_equals_fid50k(G, inception_file, tmp_path):
    real = write_folder(tmp_path / "real", random_crops(2, 16, 1, photos()))
    info = {"sha256": "ab" * 32}
    ctx = MetricContext(generator=G, generator_info=info, data=real, num_gen=2, max_real=2,
                        batch_size=2, progress=False, seed=7, stats_cache=tmp_path / "stats",
                        weights_overrides={"inception-fid": inception_file})
    rows = {name: compute_metric(name, ctx)
            for name in ("fid50k", "fid50k_latents1", "fid50k_latents2")}
    fids = {name: row["results"]["fid"] for name, row in rows.items()}
    assert all(math.isfinite(v) for v in fids.values())
    assert fids["fid50k_latents1"] == fids["fid50k"]
    assert fids["fid50k_latents2"] != fids["fid50k"]
    for n in (1, 2):
        protocol = rows[f"fid50k_latents{n}"]["protocol"]
        assert protocol["num_latents"] == n and protocol["num_gen"] == 2
        assert protocol["num_real"] == 2 and protocol["num_ws"] == G.num_ws
        assert "1..num_ws-1" in protocol["crossover"]
        assert rows[f"fid50k_latents{n}"]["network"] == info  # the checkpoint's own hash
    assert not list((tmp_path / "stats").glob("partial/*"))  # finished runs leave no partials
    hashes = {mixed_generator_info(info, n)["sha256"] for n in range(1, 5)}
    assert len(hashes) == 4 and info["sha256"] not in hashes


def test_stylegan_table2_columns_are_scored_by_the_registered_metrics():
    layout = get_layout("stylegan-table2")
    names = [f"fid50k_latents{n}" for n in range(1, 5)]
    assert [c.protocol for c in layout.columns] == names
    assert [c.result for c in layout.columns] == names
    assert metrics_for_table("stylegan-table2", "mixing-90") == names
    for name in names:
        assert get_metric(name).protocol["num_latents"] == int(name[-1])

"""The contextual loss against a hand computation, and refine_exstyle's optimisation
(structure / colour / noise learning rates, the loss going down)."""

from __future__ import annotations

import math

import pytest
import torch
from dualstylegan_fixtures import small_net
from project_helpers import FeatureDistance

from models.destylize.refine import RefineSettings, refine_exstyle, render
from models.dualstylegan_losses import contextual_loss, cosine_distances


def test_contextual_loss_of_two_tiny_feature_maps_by_hand():
    # y's vectors (1, 0), (0, 1): channel mean (0.5, 0.5); x's vectors (1, 0), (1, 1).
    x = torch.tensor([[1.0, 1.0], [0.0, 1.0]]).reshape(1, 2, 1, 2)
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 2, 1, 2)
    # centred: x1 ~ (1, -1), x2 ~ (1, 1), y1 ~ (1, -1), y2 ~ (-1, 1): d = [[0, 2], [1, 1]]
    torch.testing.assert_close(cosine_distances(x, y),
                               torch.tensor([[[0.0, 2.0], [1.0, 1.0]]]), atol=1e-6, rtol=0)
    # relative: x1 -> [0, 2e5] (CX [1, 0]); x2 -> equal (CX [0.5, 0.5]);
    # max over x per y: [1, 0.5], mean 0.75
    expected = -math.log(0.75 + 1e-5)
    assert float(contextual_loss(x, y)) == pytest.approx(expected, abs=1e-6)
    assert float(contextual_loss(y, y)) == pytest.approx(-math.log(1 + 1e-5), abs=1e-6)
    with pytest.raises(ValueError, match="differ"):
        contextual_loss(x, y[:, :, :, :1])


class StandInFeatures:
    """Three feature maps of fixed random convs (stands in for VGG19 relu1_1, 2_1, 3_1)."""

    def __init__(self):
        torch.manual_seed(4)
        self.convs = [torch.nn.Conv2d(c, 8, 3, stride=2, padding=1).requires_grad_(False)
                      for c in (3, 8, 8)]

    def __call__(self, images):
        out, x = [], images
        for conv in self.convs:
            x = torch.relu(conv(x))
            out.append(x)
        return out


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    net = small_net(64, seed=0)
    net.requires_grad_(False)
    gen = torch.Generator().manual_seed(2)
    shape = (1, net.num_ws, net.generator.z_dim)
    instyle, ex_true = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    noise = {name: buf[None, None] for name, buf in net.generator.synthesis.named_buffers()
             if name.endswith("noise_const")}
    with torch.no_grad():
        target = render(net, instyle, ex_true, noise)
    start = ex_true + 0.5 * torch.randn(shape, generator=gen)
    return net, instyle, target, start


def test_structure_and_colour_layers_move_at_their_own_learning_rates(setup):
    net, instyle, target, start = setup
    refined = refine_exstyle(net, FeatureDistance(), StandInFeatures(), target, start, instyle,
                             RefineSettings(steps=1), seed=0, progress=False)
    step = (refined.code - start).abs()
    split = net.res_index + 1  # 7: layers 0-6 are structure, the rest colour
    assert split == 7
    torch.testing.assert_close(step[:, :split].max(), torch.tensor(0.005), rtol=1e-3, atol=0)
    torch.testing.assert_close(step[:, split:].max(), torch.tensor(0.01), rtol=1e-3, atol=0)


def test_refinement_lowers_the_loss(setup):
    net, instyle, target, start = setup
    refined = refine_exstyle(net, FeatureDistance(), StandInFeatures(), target, start, instyle,
                             RefineSettings(steps=40), seed=0, progress=False)
    curve = refined.curve
    assert len(curve) == 40 and {"distance", "contextual", "noise_reg"} <= set(curve[0])
    assert curve[-1]["distance"] < 0.5 * curve[0]["distance"]
    assert curve[-1]["loss"] < curve[0]["loss"]
    before = (refined.first - target).square().mean()
    after = (refined.last - target).square().mean()
    assert after < before


def test_refine_set_writes_refined_codes_and_skips_finished_exemplars(setup, tmp_path,
                                                                       monkeypatch):
    import numpy as np
    from PIL import Image

    from models.destylize import refine as refine_module
    from models.destylize import refine_run
    from models.dualstylegan_codes import CodeSet, read_codes, write_codes
    from models.generate import to_uint8
    from models.project.targets import collect_targets

    net, instyle, target, start = setup
    folder = tmp_path / "style"
    folder.mkdir()
    Image.fromarray(to_uint8(target)[0]).save(folder / "a.png")
    Image.fromarray(to_uint8(target.flip(3))[0]).save(folder / "b.png")
    names = ["a.png", "b.png"]
    ex = read_codes(write_codes(tmp_path / "ex.npz", CodeSet(
        names, torch.cat([start, start + 0.1]).numpy(), "ex")))
    ins = read_codes(write_codes(tmp_path / "in.npz", CodeSet(
        names, torch.cat([instyle, instyle]).numpy(), "in")))
    out = tmp_path / "out"

    def run():
        return refine_run.refine_set(net, FeatureDistance(), StandInFeatures(),
                                     collect_targets([str(folder)], 64), ex, ins, out,
                                     settings=RefineSettings(steps=2), seed=0,
                                     options={"test": 1}, progress=False)

    assert [r["exemplar"] for r in run()] == names
    official, ours = read_codes(out / "refined_exstyle_code.npy"), read_codes(
        out / "refined_exstyle_code.npz")
    assert official.names == ours.names == names
    np.testing.assert_array_equal(official.codes, ours.codes)
    with np.load(out / "b" / "refined.npz") as data:
        np.testing.assert_array_equal(official.codes[1:], data["code"])
    assert not np.allclose(official.codes, ex.codes)
    monkeypatch.setattr(refine_run, "refine_exstyle", None)  # a rerun must not refine again
    assert refine_module.refine_exstyle is not None
    assert [r["exemplar"] for r in run()] == names



def test_sampler_training_fits_its_pairs_and_writes_a_loadable_file(tmp_path):
    import numpy as np

    from models.destylize.sampler_train import (
        SamplerSettings,
        augmented,
        epoch_lr,
        nearest,
        save_samplers,
        train_samplers,
    )
    from models.dualstylegan_codes import CodeSet, load_samplers

    rng = np.random.RandomState(0)
    codes = (rng.randn(8, 3, 4) * 3).astype(np.float32)  # 8 exemplars, 3 layers of 4 dims
    settings = SamplerSettings(epochs=10)
    assert [epoch_lr(e, settings) for e in (0, 49, 50, 100)] == [1e-3, 1e-3, 5e-4, 2.5e-4]
    rows = augmented(codes, torch.Generator().manual_seed(0)).numpy()
    assert rows.shape == (1000, 12)  # 1000 // 8 copies of each code
    jitter = rows - np.tile(codes.reshape(8, -1), (125, 1))
    assert abs(jitter.std() - 0.05) < 0.002 and abs(jitter.mean()) < 0.002
    points, candidates = torch.tensor([[0.0, 0.0], [5.0, 5.0]]), torch.tensor(
        [[4.0, 4.0], [1.0, 0.0], [9.0, 9.0]])
    assert nearest(points, candidates).tolist() == [1, 0]
    samplers, errors = train_samplers(CodeSet([str(i) for i in range(8)], codes, "t"), 2,
                                      settings, seed=0, progress=False)
    for part in ("structure", "color"):
        assert len(errors[part]) == 10 and errors[part][-1] < 0.3 * errors[part][0]
    loaded = load_samplers(save_samplers(tmp_path / "sampler.pt", samplers, "test"))
    with torch.no_grad():
        assert loaded["structure"](torch.randn(5, 128)).shape == (5, 8)
        assert loaded["color"](torch.randn(5, 128)).shape == (5, 4)
        probe = torch.randn(3, 128)
        torch.testing.assert_close(loaded["color"](probe), samplers["color"](probe))

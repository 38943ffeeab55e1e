"""Losses, regularisers and schedules against closed forms and the papers' definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models import loss, schedule
from models.train_data import ItemStream, step_layout


def test_logistic_losses_match_log_sigmoid():
    real, fake = torch.tensor([[2.0], [-1.0]]), torch.tensor([[0.5], [-3.0]])
    sig = torch.sigmoid
    expected_d = -torch.log(sig(real)) - torch.log(1 - sig(fake))
    torch.testing.assert_close(loss.discriminator_logistic(real, fake), expected_d.flatten())
    torch.testing.assert_close(loss.generator_logistic_ns(fake),
                               -torch.log(sig(fake)).flatten())


def test_r1_of_quadratic_critic_is_squared_norm():
    x = torch.randn(3, 2, 4, 4, requires_grad=True)
    logits = 0.5 * x.square().sum(dim=[1, 2, 3])  # grad = x
    torch.testing.assert_close(loss.r1_penalty(x, logits),
                               x.detach().square().sum(dim=[1, 2, 3]))


def test_gradient_penalty_of_linear_critic():
    w = torch.randn(1, 2, 4, 4)
    critic = lambda img: (img * w).sum(dim=[1, 2, 3])  # noqa: E731 - grad is w everywhere
    real, fake = torch.randn(5, 2, 4, 4), torch.randn(5, 2, 4, 4)
    gp = loss.gradient_penalty(critic, real, fake, torch.rand(5))
    torch.testing.assert_close(gp, torch.full([5], (w.norm().item() - 1) ** 2))


def test_wgan_losses():
    real, fake = torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0])
    torch.testing.assert_close(loss.discriminator_wgan(real, fake),
                               fake - real + 0.001 * real.square())
    torch.testing.assert_close(loss.generator_wgan(fake), -fake)


def test_path_lengths_of_linear_synthesis_match_jacobian():
    n, num_ws, w_dim, c, h = 2, 3, 4, 1, 2
    A = torch.randn(c * h * h, num_ws * w_dim)
    ws = torch.randn(n, num_ws, w_dim, requires_grad=True)
    images = (ws.flatten(1) @ A.T).view(n, c, h, h)
    noise = torch.randn(n, c, h, h)
    lengths = loss.path_lengths(images, ws, noise)
    y = noise.flatten(1) / math.sqrt(h * h)
    jty = (y @ A).view(n, num_ws, w_dim)  # J^T y per sample
    expected = jty.square().sum(2).mean(1).sqrt()
    torch.testing.assert_close(lengths, expected)
    penalty, new_mean = loss.path_length_penalty(lengths, torch.tensor(1.0), 0.01)
    a = 1.0 + 0.01 * (expected.mean() - 1.0)
    torch.testing.assert_close(new_mean, a)
    torch.testing.assert_close(penalty, (expected - a).square())


def test_progressive_lod_follows_the_tf_schedule():
    lod = lambda kimg: schedule.progressive_lod(kimg, 32, 8, 600, 600)  # noqa: E731
    assert [lod(k) for k in (0, 599, 600, 900, 1200, 1800, 2100, 2400, 9999)] == \
        [2.0, 2.0, 2.0, 1.5, 1.0, 1.0, 0.5, 0.0, 0.0]
    level = schedule.level_schedule(
        900, resolution=32, progressive=True, start_res=8, training_kimg=600,
        transition_kimg=600, batch=8, lr=0.001, batch_per_res={"8": 128, "16": 64},
        lr_per_res={16: 0.0015})
    assert (level.lod, level.resolution, level.batch, level.lr) == (1.5, 16, 64, 0.0015)
    flat = schedule.level_schedule(900, resolution=32, progressive=False, start_res=8,
                                   training_kimg=600, transition_kimg=600, batch=8, lr=0.002)
    assert (flat.lod, flat.batch, flat.lr) == (0.0, 8, 0.002)


def test_lazy_adam_correction():
    lr, betas = schedule.lazy_adam(0.002, (0.0, 0.99), 16)
    assert lr == pytest.approx(0.002 * 16 / 17)
    assert betas == (0.0, pytest.approx(0.99 ** (16 / 17)))
    assert schedule.lazy_adam(0.002, (0.0, 0.99), 0) == (0.002, (0.0, 0.99))


def test_ema_half_life_in_kimg():
    beta = schedule.ema_beta(32, 10.0, 10**6, None)
    assert beta ** (10_000 / 32) == pytest.approx(0.5)
    ramped = schedule.ema_beta(32, 10.0, 1000, 0.05)  # half-life capped at 50 images
    assert ramped ** (50 / 32) == pytest.approx(0.5)
    assert schedule.ema_beta(32, 10.0, 0, 0.05) == 0.0


def test_item_stream_is_a_permutation_per_epoch_and_split_by_rank():
    stream = ItemStream(10, seed=3, mirror=True)
    epoch0, flips0 = stream.items(list(range(10)))
    epoch1, _ = stream.items(list(range(10, 20)))
    assert sorted(epoch0) == sorted(epoch1) == list(range(10)) and epoch0 != epoch1
    assert 0 < sum(flips0) < 10
    layout1, layout2 = step_layout(8, 8, 1), step_layout(8, 2, 2)
    assert layout2.rounds == 2
    ranks = layout2.local_positions(16, 0) + layout2.local_positions(16, 1)
    assert sorted(ranks) == layout1.local_positions(16, 0) == list(range(16, 24))
    assert stream.items([5])[0] == ItemStream(10, seed=3, mirror=True).items([5])[0]
    assert not any(ItemStream(10, 3, mirror=False).items(list(range(10)))[1])


def test_step_layout_rejects_bad_batches():
    from ffhq_tools.errors import FfhqToolsError

    with pytest.raises(FfhqToolsError, match="--batch 6"):
        step_layout(6, 2, 4)
    with pytest.raises(FfhqToolsError, match="--batch-gpu 3"):
        step_layout(8, 3, 1)


def test_ema_update_lerps_parameters_and_copies_buffers():
    from models.ema import update_ema

    src, ema = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        src.weight.fill_(2.0)
        ema.weight.fill_(0.0)
        src.running_mean.fill_(5.0)
    update_ema(ema, src, 0.75)
    np.testing.assert_allclose(ema.weight.detach().numpy(), 0.5)
    np.testing.assert_allclose(ema.running_mean.numpy(), 5.0)


def test_prepare_reals_scales_and_mirrors_where_asked():
    from models.train_data import prepare_reals

    images = torch.randint(0, 256, (3, 3, 4, 4), dtype=torch.uint8)
    reals = prepare_reals(images, [False, True, False], torch.device("cpu"))
    expected = images.float() / 127.5 - 1
    torch.testing.assert_close(reals[0], expected[0])
    torch.testing.assert_close(reals[1], expected[1].flip(-1))
    assert reals.min() >= -1 and reals.max() <= 1

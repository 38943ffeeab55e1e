"""Tiny networks that honour the G / D contract of models/, for testing the training loop.

They are deliberately small but have everything the loop relies on: a mapping with a w_avg
buffer, styles per layer, per-layer noise from the global RNG, a D with a logit per image.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn


class TinyGenerator(nn.Module):
    def __init__(self, z_dim=8, w_dim=8, resolution=8, channels=3, width=8, noise=True):
        super().__init__()
        self.z_dim, self.w_dim, self.c_dim = z_dim, w_dim, 0
        self.img_resolution, self.img_channels = resolution, channels
        self.num_ws, self.has_mapping, self.use_noise = 3, True, noise
        self.map = nn.Linear(z_dim, w_dim)
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.const = nn.Parameter(torch.randn(1, width, 4, 4))
        self.styles = nn.ModuleList([nn.Linear(w_dim, width) for _ in range(3)])
        self.convs = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1) for _ in range(2)])
        self.noise_strength = nn.Parameter(torch.full([2], 0.1))
        self.to_rgb = nn.Conv2d(width, channels, 1)

    def mapping(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, update_w_avg=False):
        w = F.leaky_relu(self.map(z), 0.2)
        if update_w_avg:
            self.w_avg.copy_(w.detach().mean(0).lerp(self.w_avg, 0.995))
        if truncation_psi != 1:
            w = self.w_avg.lerp(w, truncation_psi)
        return w[:, None].repeat(1, self.num_ws, 1)

    def synthesis(self, ws, noise_mode="random"):
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        for i, conv in enumerate(self.convs):
            x = conv(x) * (1 + self.styles[i](ws[:, i]))[:, :, None, None]
            if self.use_noise and noise_mode == "random":
                x = x + torch.randn_like(x[:, :1]) * self.noise_strength[i]
            x = F.leaky_relu(x, 0.2)
            if x.shape[-1] < self.img_resolution:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = x * (1 + self.styles[2](ws[:, 2]))[:, :, None, None]
        return self.to_rgb(x)

    def forward(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, noise_mode="random"):
        return self.synthesis(self.mapping(z, c, truncation_psi, truncation_cutoff), noise_mode)


class TinyDiscriminator(nn.Module):
    def __init__(self, resolution=8, channels=3, width=8):
        super().__init__()
        self.conv = nn.Conv2d(channels, width, 3, stride=2, padding=1)
        self.fc = nn.Linear(width * (resolution // 2) ** 2, 1)

    def forward(self, img, c=None):
        return self.fc(F.leaky_relu(self.conv(img), 0.2).flatten(1))


def tiny_config(**changes):
    """The training fields of a ModelConfig (contract names), StyleGAN2-like by default."""
    fields = dict(arch="stylegan2", loss="logistic-ns-r1", lr=0.002, betas=(0.0, 0.99),
                  eps=1e-8, batch=4, r1_gamma=1.0, r1_interval=4, gp_lambda=10.0,
                  drift_epsilon=0.001, pl_weight=2.0, pl_interval=2,
                  pl_decay=0.01, pl_batch_shrink=2, mixing_prob=0.9, ema_kimg=0.01,
                  ema_rampup=0.05, progressive=False, start_res=4, lod_training_kimg=0,
                  lod_transition_kimg=0, minibatch_per_res={}, lr_per_res={})
    fields.update(changes)
    return SimpleNamespace(**fields)


class RandomImages(torch.utils.data.Dataset):
    """uint8 CHW images from a fixed seed."""

    def __init__(self, count=32, resolution=8, channels=3, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (count, channels, resolution, resolution),
                                    generator=gen, dtype=torch.uint8)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def build_trainer(plan_changes=None, settings_changes=None, env=None, run_dir=None, seed=0,
                  noise=True, batch_gpu=None):
    from models.distributed import DistEnv
    from models.train_loop import LoopSettings, Trainer
    from models.train_options import TrainOptions, resolve_plan

    torch.manual_seed(seed)
    G, D = TinyGenerator(noise=noise), TinyDiscriminator()
    config = tiny_config(**(plan_changes or {}))
    options = TrainOptions(config="tiny-standin", data="memory", batch=config.batch,
                           batch_gpu=batch_gpu)
    plan = resolve_plan(config, options, 8)
    settings = LoopSettings(total_kimg=1.0, tick_kimg=0.004, snap=0, seed=seed,
                            **(settings_changes or {}))
    env = env or DistEnv(0, 1, 0, torch.device("cpu"))
    return Trainer(G, D, plan, RandomImages(), env, run_dir, settings)


def run_steps(trainer, steps):
    batches = trainer.data_iterator()
    for _ in range(steps):
        trainer.step(next(batches))


def flat_params(*modules):
    return torch.cat([p.detach().flatten() for m in modules for p in m.parameters()] +
                     [b.detach().flatten().float() for m in modules for b in m.buffers()])


def ddp_worker(rank, world, port, steps, out_path, plan_changes):
    """One Gloo rank of the equivalence test: trains `steps` steps and saves its parameters."""
    import torch.distributed as dist

    from models.distributed import DistEnv

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        env = DistEnv(rank, world, rank, torch.device("cpu"))
        trainer = build_trainer(plan_changes, env=env, noise=False)
        run_steps(trainer, steps)
        torch.save(flat_params(trainer.G, trainer.D, trainer.G_ema), f"{out_path}.{rank}")
    finally:
        dist.destroy_process_group()


def shapes_images(count=64, resolution=16, seed=0):
    """uint8 NCHW pictures of one coloured square or disc on a dark background."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:resolution, :resolution]
    images = np.zeros((count, 3, resolution, resolution), dtype=np.uint8)
    for i in range(count):
        colour = rng.integers(120, 256, size=3)
        size = rng.integers(resolution // 4, resolution // 2)
        cy, cx = rng.integers(size, resolution - size, size=2)
        if i % 2:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= size**2
        else:
            mask = (abs(yy - cy) <= size) & (abs(xx - cx) <= size)
        images[i, :, mask] = colour
        images[i] += rng.integers(0, 20, size=(3, resolution, resolution), dtype=np.uint8)
    return images


def write_shapes_h5(path, count=64, resolution=16, seed=0):
    """A ProGAN-layout HDF5 file (data{R}x{R} for every level down to 4x4) with one-hot
    `labels` [square, disc]."""
    import h5py
    import numpy as np

    images = shapes_images(count, resolution, seed).astype(np.float64)
    with h5py.File(path, "w") as f:
        f.create_dataset("labels", data=np.eye(2, dtype=np.float32)[np.arange(count) % 2])
        res = resolution
        while res >= 4:
            f.create_dataset(f"data{res}x{res}", data=np.rint(images).clip(0, 255)
                             .astype(np.uint8), chunks=(1, 3, res, res))
            images = images.reshape(count, 3, res // 2, 2, res // 2, 2).mean(axis=(3, 5))
            res //= 2
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny nets run far faster on one thread than on two contended ones (autouse where
    imported into a test module)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)

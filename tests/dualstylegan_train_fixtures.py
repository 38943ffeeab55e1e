"""Small inputs for DualStyleGAN training tests: a 64 px StyleGAN2 base checkpoint (8-layer
mapping, channel_max 32), a DualStyleGAN built on it, face-like and style .h5 sets, codes."""

from __future__ import annotations

import copy
import json

import numpy as np
import torch
from train_standins import write_shapes_h5

from models.checkpoint import save_checkpoint
from models.configs import build_networks, get_config
from models.dualstylegan import DualStyleGAN
from models.dualstylegan_codes import CodeSet, write_codes
from models.dualstylegan_train_options import DualStyleGANTrainOptions
from models.vgg19 import seeded_vgg19

RESOLUTION = 64
BASE = get_config("tiny").replace(mapping_layers=8, name="tiny-8")
NUM_WS = 2 * RESOLUTION.bit_length() - 4


def small_vgg():
    return seeded_vgg19(0, width_divisor=8)


def torchvision_vgg19_state(net) -> dict:
    """A VGG19Features' convs under torchvision's `vgg19().features` indices (trunk only)."""
    state = {}
    offset = 0
    for block in net.slices:
        for j, layer in enumerate(block):
            for name, p in layer.named_parameters():
                state[f"{offset + j}.{name}"] = p.detach().clone()
        offset += len(block)
    return state


def write_torchvision_vgg19(path, seed: int = 1):
    """A full-width seeded VGG19 saved as torchvision's vgg19 state dict (`features.N.*`)."""
    net = seeded_vgg19(seed)
    torch.save({f"features.{k}": v for k, v in torchvision_vgg19_state(net).items()}, path)
    return net


def write_base(path, seed: int = 0):
    torch.manual_seed(seed)
    G, D = build_networks(BASE, RESOLUTION)
    config = {"model": BASE.to_dict(), "resolution": RESOLUTION, "channel_max": 32}
    return save_checkpoint(path, config=config, G=G, D=D, G_ema=G)


def write_dualstylegan(path, seed: int = 0):
    """A DualStyleGAN on the base generator, as pretraining starts it (the finetune base)."""
    torch.manual_seed(seed)
    G, D = build_networks(BASE, RESOLUTION)
    net = DualStyleGAN(G, structure_layers=2)
    model = BASE.replace(arch="dualstylegan", name="dualstylegan-tiny-8")
    config = {"model": model.to_dict(), "resolution": RESOLUTION, "channel_max": 32}
    return save_checkpoint(path, config=config, G=net, D=D, G_ema=copy.deepcopy(net))


def write_faces(path, count: int = 16):
    return write_shapes_h5(path, count=count, resolution=RESOLUTION)


def style_images(photo: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Posterised, colour-shifted (red up, blue down) crops of a photo: uint8 [N, 3, 64, 64]."""
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        size = int(rng.integers(240, 320))
        y, x = (int(v) for v in rng.integers(0, photo.shape[0] - size, size=2))
        crop = resize(photo[y:y + size, x:x + size], (RESOLUTION, RESOLUTION),
                      anti_aliasing=True)
        poster = np.round(crop * 3) / 3
        shifted = np.clip(poster * np.array([1.0, 0.7, 0.4]) + np.array([0.35, 0.1, 0.0]),
                      0, 1)
        out.append((shifted * 255).round().astype(np.uint8).transpose(2, 0, 1))
    return np.stack(out)


def write_style_set(folder, photo: np.ndarray, count: int = 12, resolution: int = RESOLUTION):
    """(style .h5 with metadata names, exstyle .npz, instyle .npz)."""
    import h5py

    images = style_images(photo, count)
    if resolution != RESOLUTION:
        images = images[:, :, ::RESOLUTION // resolution, ::RESOLUTION // resolution]
    names = [f"style{i:03d}.png" for i in range(count)]
    h5 = folder / "style.h5"
    with h5py.File(h5, "w") as f:
        res, level = resolution, images.astype(np.float64)
        while res >= 4:
            f.create_dataset(f"data{res}x{res}", data=np.rint(level).astype(np.uint8))
            level = level.reshape(count, 3, res // 2, 2, res // 2, 2).mean(axis=(3, 5))
            res //= 2
        f.create_dataset("metadata", data=[json.dumps({"name": n}) for n in names],
                         dtype=h5py.string_dtype())
    rng = np.random.default_rng(5)
    shape = (count, NUM_WS, BASE.z_dim)
    ex = write_codes(folder / "exstyle.npz", CodeSet(
        names, rng.standard_normal(shape).astype(np.float32), "test"))
    ins = write_codes(folder / "instyle.npz", CodeSet(
        names[::-1], rng.standard_normal(shape).astype(np.float32), "test"))
    return h5, ex, ins


def pretrain_options(base, data, outdir, **changes) -> DualStyleGANTrainOptions:
    values = dict(base=str(base), data=str(data), outdir=str(outdir), iters=4, batch=2,
                  projection_steps=1, loss_resolution=RESOLUTION, log_every=1, device="cpu",
                  progress=False, threads=1)
    values.update(changes)
    return DualStyleGANTrainOptions("pretrain", **values)


def finetune_options(base, style, outdir, **changes) -> DualStyleGANTrainOptions:
    h5, ex, ins = style
    values = dict(base=str(base), data=str(h5), exstyle=str(ex), instyle=str(ins),
                  outdir=str(outdir), iters=4, batch=2, loss_resolution=RESOLUTION,
                  log_every=1, snap=2, snap_begin=2, device="cpu", progress=False, threads=1)
    values.update(changes)
    return DualStyleGANTrainOptions("finetune", **values)



def write_base_without_mbstd_groups(path, seed: int = 0):
    """A base whose D has minibatch-stddev groups of 1, so a batch split over ranks sees
    the same D outputs as one process (groups are strided over the batch)."""
    torch.manual_seed(seed)
    config = BASE.replace(mbstd_group=1)
    G, D = build_networks(config, RESOLUTION)
    return save_checkpoint(path, config={"model": config.to_dict(), "resolution": RESOLUTION,
                                         "channel_max": 32}, G=G, D=D, G_ema=G)


def gloo_pretrain_worker(rank: int, world: int, port: int, options: dict) -> None:
    """One Gloo rank of the equivalence test, launched as torchrun would set it up."""
    import os

    from models.dualstylegan_train import train_dualstylegan

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    train_dualstylegan(DualStyleGANTrainOptions.from_dict(options), vgg=small_vgg())

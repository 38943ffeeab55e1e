"""What DualStyleGAN training consumes besides the networks: the style set with its codes,
the extrinsic-code source of pretraining and the identity network of fine-tuning.

- `StyleSet`: exemplar images of an .h5 style set (matched by the `name` in its metadata,
  else by file order) with their extrinsic codes (z+ mapped to W+ once, as the official
  script pre-maps them) and intrinsic z+ codes, read with `models.dualstylegan_codes`.
- Extrinsic-code sources: any object with `encode(images [-1, 1]) -> W+ [N, num_ws, w_dim]`
  (a pSp encoder wrapper, for instance). Built in: `ProjectionEncoder`, a short W+ projection
  of the images into the base generator (Adam from w_avg on pixel MSE + VGG19 L1); cheap to
  run and to test, but less faithful than the official pSp encoder's codes; and
  `EncoderCodeSource`, the official route: DualStyleGAN's z+ pSp encoder, its codes mapped
  layer by layer by the base mapping network (upstream maps them with the pSp checkpoint's own
  decoder, the same FFHQ generator).
- Identity: any object with `embed(images [-1, 1]) -> [N, 512] unit vectors` (ArcFace
  IR-SE50, `models.arcface`), or None for no identity loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.dualstylegan_losses import PRETRAIN_FEATURE_WEIGHTS, feature_l1
from models.dualstylegan_train_options import MIN_STYLE_IMAGES, DualStyleGANTrainError


@dataclass
class StyleSet:
    names: list[str]
    images: torch.Tensor     # uint8 [N, C, R, R]
    exstyles: torch.Tensor   # W+ [N, num_ws, w_dim]
    instyles: torch.Tensor   # z+ [N, num_ws, z_dim]

    def __len__(self) -> int:
        return len(self.names)

    def reals(self, indices: torch.Tensor, device) -> torch.Tensor:
        return self.images[indices.cpu()].to(device, torch.float32) / 127.5 - 1


def _h5_names(path: Path) -> list[str]:
    from ffhq_tools.data.layout import open_h5, read_metadata

    with open_h5(path) as f:
        return [str(record.get("name", "")) for record in read_metadata(f)]


def _match(names: list[str], wanted: list[str], path: Path) -> list[int]:
    """Item index of each code name in the .h5 (full name, else the file's base name)."""
    full = {n: i for i, n in enumerate(names)}
    base = {Path(n).name: i for i, n in enumerate(names)}
    found = []
    for name in wanted:
        index = full.get(name, base.get(Path(name).name))
        if index is None:
            raise DualStyleGANTrainError(f"--data {path}: no image named {name!r} (the code "
                                         "files name every exemplar; pack the same folder)")
        found.append(index)
    return found


def _codes(path: str | None, flag: str, net) -> tuple[list[str], np.ndarray]:
    from models.dualstylegan_codes import read_codes

    if not path:
        raise DualStyleGANTrainError(f"finetune needs {flag} (the code file destylize writes)")
    codes = read_codes(path)
    expected = (net.num_ws, net.generator.z_dim)
    if tuple(codes.codes.shape[1:]) != expected:
        raise DualStyleGANTrainError(f"{flag} {path}: codes of shape "
                                     f"{tuple(codes.codes.shape[1:])}, the model needs "
                                     f"[num_ws, z_dim] = {list(expected)}")
    return codes.names, codes.codes


def load_style_set(data: str, exstyle: str | None, instyle: str | None, net,
                   device) -> StyleSet:
    from ffhq_tools.data import H5Dataset

    path = Path(data)
    if not path.is_file():
        raise DualStyleGANTrainError(f"--data {path}: no such file")
    ex_names, ex_codes = _codes(exstyle, "--exstyle", net)
    in_names, in_codes = _codes(instyle, "--instyle", net)
    missing = sorted(set(ex_names) - set(in_names))
    if missing:
        raise DualStyleGANTrainError(f"--instyle {instyle}: no code for {missing[:3]} (every "
                                     "exemplar needs both codes)")
    if len(ex_names) < MIN_STYLE_IMAGES:
        raise DualStyleGANTrainError(f"--exstyle {exstyle}: {len(ex_names)} exemplars; a "
                                     f"style set needs at least {MIN_STYLE_IMAGES} (the "
                                     "paper's sets have 100-300)")
    try:
        dataset = H5Dataset(path, net.img_resolution)
    except Exception as exc:
        raise DualStyleGANTrainError(f"--data {path}: {exc} (the style set must hold "
                                     f"{net.img_resolution}x{net.img_resolution} images, the "
                                     "model's resolution)") from None
    indices = _match(_h5_names(path), ex_names, path)
    images = torch.stack([dataset[i] for i in indices])
    dataset.close()
    order = [in_names.index(n) for n in ex_names]
    with torch.no_grad():
        z_plus = torch.from_numpy(np.ascontiguousarray(ex_codes)).to(device)
        exstyles = net.map_z(z_plus).cpu()
    return StyleSet(list(ex_names), images, exstyles,
                    torch.from_numpy(np.ascontiguousarray(in_codes[order])))


def loss_size(images: torch.Tensor, size: int) -> torch.Tensor:
    """Average-pooled to `size` px when larger (the official 256 px losses)."""
    return F.adaptive_avg_pool2d(images, size) if images.shape[-1] > size else images


class ProjectionEncoder:
    """W+ codes of images by a short projection into the base generator (our cheap stand-in
    for the official pSp encoder): Adam from w_avg, pixel MSE + VGG19 L1, `steps` steps."""

    def __init__(self, generator, vgg, steps: int, lr: float, size: int):
        self.generator, self.vgg = generator, vgg
        self.steps, self.lr, self.size = steps, lr, size

    def describe(self) -> dict:
        return {"kind": "projection", "steps": self.steps, "lr": self.lr,
                "loss": "pixel MSE + VGG19 L1 (0.5, 0.5, 0.5, 0, 0)"}

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        G = self.generator
        start = G.mapping.w_avg.detach()[None, None].repeat(images.shape[0], G.num_ws, 1)
        ws = start.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([ws], lr=self.lr)
        target = loss_size(images.detach(), self.size)
        with torch.no_grad():
            target_feats = self.vgg(target)
        with torch.enable_grad():
            for _ in range(self.steps):
                out = loss_size(G.synthesis(ws, noise_mode="const"), self.size)
                # x N: each image's own mean loss, so its code does not depend on the batch
                loss = (F.mse_loss(out, target) + feature_l1(
                    self.vgg(out), target_feats, PRETRAIN_FEATURE_WEIGHTS)) * len(images)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        return ws.detach()


class EncoderCodeSource:
    """W+ codes of images from a pSp encoder (`models.psp_encoder.PSPEncoder`): z+ codes
    mapped by `net.map_z`, w+ codes as they are."""

    def __init__(self, encoder, net):
        from models.dualstylegan_codes import CodeSpace

        if (encoder.info.n_styles, 512) != (net.num_ws, net.generator.z_dim):
            raise DualStyleGANTrainError(
                f"--encoder {encoder.info.path}: codes [{encoder.info.n_styles}, 512], the "
                f"model takes [num_ws, z_dim] = [{net.num_ws}, {net.generator.z_dim}]")
        self.encoder, self.net = encoder, net
        self.mapped = encoder.info.space is CodeSpace.Z_PLUS

    def describe(self) -> dict:
        return self.encoder.describe()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        codes = self.encoder.encode(images)
        return self.net.map_z(codes) if self.mapped else codes


def describe_source(source) -> dict:
    describe = getattr(source, "describe", None)
    return describe() if callable(describe) else {"kind": type(source).__name__}


def check_encoder(source) -> None:
    if not callable(getattr(source, "encode", None)):
        raise DualStyleGANTrainError(f"extrinsic-code source {type(source).__name__}: needs "
                                     "an encode(images) -> W+ method")


def check_identity(identity) -> None:
    if identity is not None and not callable(getattr(identity, "embed", None)):
        raise DualStyleGANTrainError(f"identity network {type(identity).__name__}: needs an "
                                     "embed(images) -> [N, 512] unit vectors method")


def load_identity(name: str, weights_file: str | None = None, device="cpu"):
    """The identity network a CLI name selects (None for 'none'), from its registry entry
    (or `weights_file`)."""
    from models.destylize.identity import load_identity as load
    from models.identity_names import IDENTITY_WEIGHTS

    entry = IDENTITY_WEIGHTS.get(name)
    overrides = {entry: Path(weights_file)} if weights_file and entry else None
    return load(name, overrides, device)

"""Projection of images into W or W+ by optimisation (stylegan2-ada-pytorch's projector.py).

Several targets run in one generator batch, but each has its own latent, noise maps, Adam
optimiser and random stream (a CPU generator seeded with `seed`), so a target's result does
not depend on the batch it ran in. The perceptual distance is a callable handed in
(`distance(synth, target) -> [N]` on float NCHW images in [0, 255], at most
`distance_resolution` px); models never import the feature networks themselves.

Each target can checkpoint its whole state (step, latent, noise, Adam moments, random stream,
distance curve) atomically, and resumes from it: a killed run continues where its last
checkpoint left off and gives the same codes as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ffhq_tools.atomic import atomic_path
from ffhq_tools.errors import FfhqToolsError
from models.project import schedule
from models.project.schedule import ProjectionProtocol

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EmbeddingDistance:
    """distance(a, b) = sum((embed(a) - embed(b))^2) per image, as ada uses NVIDIA's vgg16.pt
    (`return_lpips=True`). The projector embeds each target once instead of every step."""

    embed: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (self.embed(a) - self.embed(b)).square().sum(dim=1)
W_STATS_CHUNK = 1000
CHECKPOINT_FORMAT = "ffhq-tools-projection-state"


class ProjectionError(FfhqToolsError):
    """A generator, a target or a projection state that cannot be used."""


def check_projectable(G, label: str) -> None:
    """Refuse, by name, generators without a W space (ProGAN) and conditional ones."""
    if not (hasattr(G, "mapping") and hasattr(G, "synthesis") and hasattr(G, "num_ws")):
        raise ProjectionError(f"{label}: not a style-based generator (no mapping / synthesis "
                              "networks), so it has no W space to project into")
    if not getattr(G, "use_styles", True):
        raise ProjectionError(f"{label}: a ProGAN-style generator (traditional latent input, "
                              "no styles) has no W space; projection needs StyleGAN or "
                              "StyleGAN2")
    if int(getattr(G, "c_dim", 0) or 0):
        raise ProjectionError(f"{label}: conditional generator (c_dim={G.c_dim}); projection "
                              "is defined for unconditional generators")


@dataclass(frozen=True)
class WStatistics:
    avg: torch.Tensor  # [1, 1, w_dim] float32, CPU
    std: float


def network_dtype(G) -> torch.dtype:
    for tensor in G.parameters():
        return tensor.dtype
    return torch.float32


@torch.no_grad()
def w_statistics(G, samples: int, seed: int, device) -> WStatistics:
    """Mean w and the scalar spread sqrt(sum |w - mean|^2 / samples) of `samples` seeded z."""
    z = np.random.RandomState(seed).randn(samples, G.z_dim)
    dtype = network_dtype(G)
    chunks = []
    for i in range(0, samples, W_STATS_CHUNK):
        batch = torch.from_numpy(z[i:i + W_STATS_CHUNK]).to(dtype).to(device)
        chunks.append(G.mapping(batch, None)[:, 0].cpu())
    w = torch.cat(chunks).numpy()
    avg = np.mean(w, axis=0, keepdims=True)
    std = float((np.sum((w - avg) ** 2) / samples) ** 0.5)
    return WStatistics(torch.from_numpy(avg)[None], std)


def noise_buffers(G) -> dict[str, tuple[int, ...]]:
    """The synthesis network's constant noise maps, by buffer name, with their shapes."""
    return {name: tuple(buf.shape) for name, buf in G.synthesis.named_buffers()
            if name.endswith("noise_const")}


@contextlib.contextmanager
def activation_scaled_modulation(synthesis: nn.Module):
    """StyleGAN2 modulation as activation scaling around one shared-weight conv (the same
    result as the grouped per-sample conv eval mode picks, several times faster for batches
    on CPU; see BENCHMARKS.md) while the projector renders."""
    if not hasattr(synthesis, "fused_modconv"):
        yield
        return
    saved = synthesis.fused_modconv
    synthesis.fused_modconv = False
    try:
        yield
    finally:
        synthesis.fused_modconv = saved


def area_downsample(images: torch.Tensor, resolution: int) -> torch.Tensor:
    if images.shape[2] > resolution:
        return F.interpolate(images, size=(resolution, resolution), mode="area")
    return images


def to_distance_input(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Generator output in [-1, 1] -> [0, 255], area-downsampled when larger than resolution."""
    return area_downsample((images + 1) * (255 / 2), resolution)


def synthesize_with_noise(G, ws: torch.Tensor, noise: dict[str, torch.Tensor],
                          dtype: torch.dtype) -> torch.Tensor:
    """G.synthesis in const-noise mode; `noise` replaces named noise maps (batched); ws of one
    layer are broadcast to all of them."""
    if ws.shape[1] == 1:
        ws = ws.repeat(1, G.num_ws, 1)
    with activation_scaled_modulation(G.synthesis):
        if not noise:
            return G.synthesis(ws, noise_mode="const").to(dtype)
        images = torch.func.functional_call(G.synthesis, noise, (ws,), {"noise_mode": "const"})
    return images.to(dtype)  # synthesis returns float32 images even in float64


def pixels_to_tensor(pixels: np.ndarray, device, dtype=torch.float32) -> torch.Tensor:
    """HWC uint8 -> float [1, C, H, W] in [0, 255]."""
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).to(dtype)[None] \
        .to(device)


def pixel_digest(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


@dataclass
class Projection:
    """One target's result: w [1, num_ws, w_dim] float32 (what projected_w.npz holds)."""

    w: np.ndarray
    noise: dict[str, np.ndarray]
    distance: float  # with the optimised noise maps
    distance_g_noise: float  # with G's own constant noise (as proj.png is rendered)
    curve: list[dict]
    trajectory: np.ndarray | None  # [steps, num_ws or 1, w_dim]: w after every step


class TargetState:
    """Everything one target's optimisation carries from step to step."""

    def __init__(self, pixels: np.ndarray, projector: Projector, seed: int,
                 keep_trajectory: bool):
        protocol, device = projector.protocol, projector.device
        dtype = projector.dtype
        self.target = area_downsample(pixels_to_tensor(pixels, device, dtype),
                                      protocol.distance_resolution)
        self.target_features = None
        if isinstance(projector.distance, EmbeddingDistance):
            with torch.no_grad():
                self.target_features = projector.distance.embed(self.target)
        self.rng = torch.Generator().manual_seed(int(seed))
        layers = projector.G.num_ws if protocol.space == "w+" else 1
        self.w = nn.Parameter(projector.wstats.avg.repeat(1, layers, 1).to(device, dtype))
        self.noise = [nn.Parameter(torch.randn((1, 1, *shape), generator=self.rng,
                                               dtype=dtype).to(device))
                      for shape in projector.noise_shapes.values()] \
            if protocol.optimize_noise else []
        self.optimizer = torch.optim.Adam([self.w, *self.noise], lr=protocol.learning_rate,
                                          betas=protocol.betas)
        self.step = 0
        self.curve: list[dict] = []
        self.trajectory: list[torch.Tensor] | None = [] if keep_trajectory else None

    def draw_w(self, scale: float) -> torch.Tensor:
        noise = torch.randn(tuple(self.w.shape), generator=self.rng, dtype=self.w.dtype)
        noise = noise.to(self.w.device)
        return self.w + noise * scale

    def noise_penalty(self) -> torch.Tensor:
        total = self.w.new_zeros(())
        for noise in self.noise:
            total = total + schedule.noise_regularization(noise)
        return total

    def state_dict(self) -> dict:
        return {"step": self.step, "w": self.w.detach().cpu(),
                "noise": [n.detach().cpu() for n in self.noise],
                "optimizer": self.optimizer.state_dict(), "rng": self.rng.get_state(),
                "curve": list(self.curve),
                "trajectory": None if self.trajectory is None
                else [t.clone() for t in self.trajectory]}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.w.copy_(state["w"])
            for noise, saved in zip(self.noise, state["noise"], strict=True):
                noise.copy_(saved)
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.set_state(state["rng"])
        self.step = int(state["step"])
        self.curve = list(state["curve"])
        if self.trajectory is not None:
            self.trajectory = list(state["trajectory"] or [])


class Projector:
    """Projects batches of images into `G`'s W (or W+) with a perceptual `distance`."""

    def __init__(self, G, distance: Distance, protocol: ProjectionProtocol | None = None,
                 *, device="cpu", label: str = "generator"):
        check_projectable(G, label)
        protocol = protocol or ProjectionProtocol()
        self.G = G.eval().requires_grad_(False)
        self.distance, self.protocol = distance, protocol
        self.device = torch.device(device)
        self.dtype = network_dtype(G)
        self.wstats = w_statistics(G, protocol.w_avg_samples, protocol.w_avg_seed, self.device)
        self.noise_shapes = noise_buffers(G)

    def project(self, images: list[np.ndarray], *, seed: int = 0,
                checkpoints: list[Path | None] | None = None, checkpoint_every: int = 100,
                stamp: dict | None = None, keep_trajectory: bool = False,
                on_step: Callable[[int], None] | None = None,
                progress: bool = True) -> list[Projection]:
        """Project HWC uint8 images (at G's resolution) in one batch; resume from and write
        `checkpoints[i]` (None: no checkpoint) every `checkpoint_every` steps."""
        self._check_images(images)
        if checkpoint_every < 1:
            raise ProjectionError(f"--checkpoint-every {checkpoint_every}: must be >= 1")
        checkpoints = checkpoints or [None] * len(images)
        states = [TargetState(p, self, seed, keep_trajectory) for p in images]
        stamps = [self._stamp(stamp, seed, p) for p in images]
        for state, path, full in zip(states, checkpoints, stamps, strict=True):
            if path is not None and Path(path).is_file():
                state.load_state_dict(read_state(Path(path), full))
        self._run(states, checkpoints, stamps, checkpoint_every, on_step, progress)
        return [self._result(state) for state in states]

    def _check_images(self, images: list[np.ndarray]) -> None:
        shape = (self.G.img_resolution, self.G.img_resolution, self.G.img_channels)
        for i, pixels in enumerate(images):
            if pixels.dtype != np.uint8 or pixels.shape != shape:
                raise ProjectionError(f"target {i}: expected uint8 pixels of shape {shape} "
                                      f"(prepare_pixels), got {pixels.dtype} {pixels.shape}")

    def _stamp(self, stamp: dict | None, seed: int, pixels: np.ndarray) -> dict:
        return {**(stamp or {}), "protocol": self.protocol.to_dict(), "seed": int(seed),
                "target_sha256": pixel_digest(pixels)}

    def _run(self, states, checkpoints, stamps, every, on_step, progress) -> None:
        from tqdm import tqdm

        steps = self.protocol.steps
        total = sum(steps - s.step for s in states)
        bar = tqdm(total=total, desc=f"project x{len(states)}", unit="step", file=sys.stderr,
                   disable=not progress or total == 0, leave=False)
        while active := [s for s in states if s.step < steps]:
            self.step(active)
            bar.update(len(active))
            for state, path, full in zip(states, checkpoints, stamps, strict=True):
                if path is not None and state in active and (state.step % every == 0
                                                             or state.step == steps):
                    write_state(Path(path), state, full)
            if on_step is not None:
                on_step(max(s.step for s in active))
        bar.close()

    def step(self, states: list[TargetState]) -> None:
        """One optimisation step for every state (each at its own t)."""
        protocol = self.protocol
        ws = []
        for state in states:
            t = schedule.time_fraction(state.step, protocol)
            for group in state.optimizer.param_groups:
                group["lr"] = schedule.learning_rate(t, protocol)
            ws.append(state.draw_w(schedule.w_noise_scale(t, self.wstats.std, protocol)))
        images = self.synthesize(torch.cat(ws), self._noise_overrides(states))
        dist = self.distances(to_distance_input(images, protocol.distance_resolution), states)
        penalty = torch.stack([s.noise_penalty() for s in states])
        loss = dist + penalty * protocol.noise_reg_weight
        for state in states:
            state.optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        for state, d, total in zip(states, dist.tolist(), loss.tolist(), strict=True):
            state.optimizer.step()
            for noise in state.noise:
                schedule.renormalize_noise_(noise)
            state.curve.append({"step": state.step, "distance": d, "loss": total,
                                "lr": state.optimizer.param_groups[0]["lr"]})
            state.step += 1
            if state.trajectory is not None:
                state.trajectory.append(state.w.detach().cpu().clone()[0])

    def _noise_overrides(self, states: list[TargetState]) -> dict[str, torch.Tensor]:
        if not self.protocol.optimize_noise:
            return {}
        return {name: torch.cat([s.noise[i] for s in states])
                for i, name in enumerate(self.noise_shapes)}

    def synthesize(self, ws: torch.Tensor, noise: dict[str, torch.Tensor]) -> torch.Tensor:
        """G.synthesis in const-noise mode; `noise` replaces named noise maps (batched)."""
        return synthesize_with_noise(self.G, ws, noise, self.dtype)

    @torch.no_grad()
    def final_distance(self, state: TargetState, optimized_noise: bool = True) -> float:
        """The distance of the final code (no w noise), rendered with the optimised noise maps
        or with G's own constant ones (what projected_w.npz alone reproduces)."""
        noise = self._noise_overrides([state]) if optimized_noise else {}
        images = self.synthesize(state.w, noise)
        return float(self.distances(to_distance_input(images, self.protocol.distance_resolution),
                                    [state])[0])

    def distances(self, images: torch.Tensor, states: list[TargetState]) -> torch.Tensor:
        """[N] distances of distance-ready images to their states' targets."""
        if isinstance(self.distance, EmbeddingDistance):
            targets = torch.cat([s.target_features for s in states])
            return (self.distance.embed(images) - targets).square().sum(dim=1)
        return self.distance(images, torch.cat([s.target for s in states]))

    def _result(self, state: TargetState) -> Projection:
        w = state.w.detach()
        if w.shape[1] == 1:
            w = w.repeat(1, self.G.num_ws, 1)
        trajectory = None if state.trajectory is None else \
            torch.stack(state.trajectory).numpy().astype(np.float32)
        noise = {name: n.detach().cpu()[0, 0].numpy()
                 for name, n in zip(self.noise_shapes, state.noise, strict=False)}
        return Projection(w.cpu().numpy().astype(np.float32), noise, self.final_distance(state),
                          self.final_distance(state, optimized_noise=False), list(state.curve),
                          trajectory)


def write_state(path: Path, state: TargetState, stamp: dict) -> None:
    payload = {"format": CHECKPOINT_FORMAT, "stamp": stamp, "state": state.state_dict()}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_state(path: Path, stamp: dict) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file is reported by name
        raise ProjectionError(f"{path}: unreadable projection checkpoint ({type(exc).__name__});"
                              " delete it to start this target again") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ProjectionError(f"{path}: not a projection checkpoint")
    saved = payload.get("stamp", {})
    for key in sorted(set(saved) | set(stamp)):
        if saved.get(key) != stamp.get(key):
            raise ProjectionError(f"{path}: written with different {key} ({saved.get(key)!r}, "
                                  f"now {stamp.get(key)!r}); use the same options or delete it")
    return payload["state"]

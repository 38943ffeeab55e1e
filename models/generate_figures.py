"""The papers' figures written into a generate folder's figures/ (never among the samples),
each PNG with the folder's settings and what the figure shows in its text chunk."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from models import generate as gen
from models.generate_folder import SampleFolder
from models.generate_video import VideoWriter
from models.png_files import save_png


def write_style_mixing(G, folder: SampleFolder, col_seeds: list[int], row_seeds: list[int],
                       batch_size: int) -> dict[str, Path]:
    s = folder.settings
    grids = gen.style_mixing_grids(G, col_seeds, row_seeds, truncation_psi=s.truncation_psi,
                                   truncation_cutoff=s.truncation_cutoff,
                                   noise_mode=s.noise_mode, batch_size=batch_size,
                                   class_idx=s.class_idx)
    written = {}
    for name, grid in grids.items():
        path = folder.figures / f"style-mixing-{name}.png"
        save_png(path, grid, folder.provenance(extra={
            "figure": f"style-mixing-{name}", "col_seeds": col_seeds, "row_seeds": row_seeds}))
        written[name] = path
    return written


def write_noise_variation(G, folder: SampleFolder, seeds: Iterable[int], draws: int) -> int:
    s = folder.settings
    count = 0
    for seed in seeds:
        images, std = gen.noise_variation(G, seed, draws, truncation_psi=s.truncation_psi,
                                          truncation_cutoff=s.truncation_cutoff,
                                          class_idx=s.class_idx)
        extra = {"figure": "noise-variation", "seed": seed, "draws": draws}
        save_png(folder.figures / f"noise-seed{seed:04d}.png",
                 gen.make_grid(images, len(images)), folder.provenance(extra=extra))
        save_png(folder.figures / f"noise-seed{seed:04d}-std.png", std[..., None],
                 folder.provenance(extra={**extra, "figure": "noise-variation-std"}))
        count += 1
    return count


def write_truncation_sweep(G, folder: SampleFolder, seeds: list[int], psis: list[float],
                           batch_size: int) -> Path:
    s = folder.settings
    grid = gen.truncation_sweep(G, seeds, psis, truncation_cutoff=s.truncation_cutoff,
                                noise_mode=s.noise_mode, batch_size=batch_size,
                                class_idx=s.class_idx)
    path = folder.figures / "truncation-sweep.png"
    save_png(path, grid, folder.provenance(extra={"figure": "truncation-sweep",
                                                  "seeds": seeds, "psis": psis}))
    return path


def write_interpolation(G, folder: SampleFolder, ws_chunks: Iterable[torch.Tensor], name: str,
                        batch_size: int, fps: int, description: dict) -> tuple[Path, Path, int]:
    """Frames to figures/NAME/frameNNNNN.png and the video figures/NAME.mp4 (or .gif), both
    streamed from the rendered frames. Returns (frames folder, video, frame count)."""
    frames_dir = folder.figures / name
    frames_dir.mkdir(parents=True, exist_ok=True)
    for stale in frames_dir.glob("frame*.png"):
        stale.unlink()
    with VideoWriter(folder.figures / name, fps) as video:
        for i, frame in enumerate(gen.render_stream(G, ws_chunks, folder.settings.noise_mode,
                                                    batch_size)):
            save_png(frames_dir / f"frame{i:05d}.png", frame, folder.provenance(
                extra={**description, "figure": name, "frame": i}))
            video.add(frame)
    return frames_dir, video.path, video.frames

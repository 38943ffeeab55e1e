"""What a projection writes per target, and the reader for projected_w.npz.

`projected_w.npz` holds one array, key `w`, float32 [1, num_ws, w_dim], as stylegan2-ada's
projector writes it (its `generate.py --projected-w` reads it); `noise.npz` the optimised
noise maps by buffer name. proj.png is rendered from w with G's own constant noise (what the
npz alone reproduces, as ada renders it); the strip shows target | projection | projection
with the optimised noise maps.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ffhq_tools.atomic import atomic_path, write_json_atomic
from models.project.projector import Projection, ProjectionError, Projector
from models.projected_w import load_projected_w as read_codes

VIDEO_FPS = 10


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def save_projected_w(path: str | Path, w: np.ndarray) -> None:
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 3 or w.shape[0] != 1:
        raise ProjectionError(f"{path}: w must have shape [1, num_ws, w_dim], got {w.shape}")
    save_npz(Path(path), w=w)


def load_projected_w(path: str | Path, G=None) -> np.ndarray:
    """float32 [1, num_ws, w_dim] from one projection's projected_w.npz; with G, the shape is
    checked against G.num_ws and G.w_dim."""
    codes = read_codes(path, getattr(G, "num_ws", None), getattr(G, "w_dim", None), flag="")
    if codes.w.shape[0] != 1:
        raise ProjectionError(f"{path}: 'w' holds {codes.w.shape[0]} codes; a projection "
                              "writes one")
    return codes.w


def save_png(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(
            tmp, format="PNG")


@torch.no_grad()
def render(projector: Projector, w: np.ndarray, noise: dict[str, np.ndarray] | None = None
           ) -> np.ndarray:
    """HWC uint8 image of w [1, num_ws, w_dim]; noise maps by name, else G's own."""
    from models.generate import to_uint8

    device, dtype = projector.device, projector.dtype
    overrides = {name: torch.from_numpy(m)[None, None].to(device, dtype)
                 for name, m in (noise or {}).items()}
    images = projector.synthesize(torch.from_numpy(w).to(device, dtype), overrides)
    return to_uint8(images)[0]


def write_curve(folder: Path, curve: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    lines = "".join(json.dumps(row, sort_keys=True) + "\n" for row in curve)
    with atomic_path(folder / "curve.jsonl") as tmp:
        tmp.write_text(lines)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([r["step"] for r in curve], [r["distance"] for r in curve])
    ax.set_xlabel("step")
    ax.set_ylabel("distance")
    ax.set_yscale("log")
    ax.set_title(folder.name, fontsize=9)
    fig.tight_layout()
    with atomic_path(folder / "curve.png", suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def video_encoder() -> str:
    """'mp4' when imageio with its bundled ffmpeg is installed, else 'gif' (PIL)."""
    try:
        import imageio.v2  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return "gif"
    return "mp4"


def write_video(path: Path, frames: list[np.ndarray], kind: str) -> Path:
    path = path.with_suffix(f".{kind}")
    if kind == "mp4":
        import imageio.v2 as imageio

        tmp = path.with_name(f".{path.stem}.partial.mp4")  # ffmpeg picks the muxer by suffix
        writer = imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=VIDEO_FPS,
                                    codec="libx264", bitrate="16M", macro_block_size=1)
        for frame in frames:
            writer.append_data(frame)
        writer.close()
        os.replace(tmp, path)
        return path
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    with atomic_path(path, suffix=".gif") as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(1000 / VIDEO_FPS), loop=0)
    return path


def write_outputs(folder: Path, projector: Projector, target: np.ndarray, result: Projection,
                  summary: dict, video: str | None = None) -> dict:
    """Every file of one target; returns the summary written to result.json."""
    folder.mkdir(parents=True, exist_ok=True)
    save_projected_w(folder / "projected_w.npz", result.w)
    if result.noise:
        save_npz(folder / "noise.npz", **result.noise)
    projection = render(projector, result.w)
    save_png(folder / "target.png", target)
    save_png(folder / "proj.png", projection)
    strip = [target, projection]
    if result.noise:
        strip.append(render(projector, result.w, result.noise))
    save_png(folder / "strip.png", np.concatenate(strip, axis=1))
    write_curve(folder, result.curve)
    summary = {**summary, "distance": result.distance,
               "distance_g_noise": result.distance_g_noise, "steps": len(result.curve)}
    if video is not None and result.trajectory is not None:
        frames = [np.concatenate([target, render(projector, _full_w(projector, w[None]))],
                                 axis=1) for w in result.trajectory]
        summary["video"] = write_video(folder / "proj", frames, video).name
    write_json_atomic(folder / "result.json", summary)
    return summary


def _full_w(projector: Projector, w: np.ndarray) -> np.ndarray:
    return np.repeat(w, projector.G.num_ws, axis=1) if w.shape[1] == 1 else w


def read_noise(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}

"""The demo's stages: each takes the DemoState, writes into the run folder, returns a summary.

They call the suite's Python APIs (align, pack, train, generate, metrics, leaderboards) exactly
as a researcher would; see ffhq_tools/demo.py for the order and the failure policy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ffhq_tools.errors import FfhqToolsError
from ffhq_tools.runs import newest_snapshot

DEMO_CONFIG = "tiny"
TRAINING_METRIC = "fd_dlib_face"  # offline: measured at every snapshot for the kimg plot


# ----- photos ---------------------------------------------------------------------------------
def _geometric_variants(photo: np.ndarray) -> dict:
    """name -> function making the variant (computed only when asked for)."""
    from skimage import transform

    def rotate(angle):
        return (transform.rotate(photo, angle, resize=True, mode="edge") * 255).round()

    def rescale(scale):
        return (transform.rescale(photo, scale, channel_axis=2, anti_aliasing=True) * 255).round()

    return {
        "original": lambda: photo, "mirror": lambda: photo[:, ::-1],
        "rot+8": lambda: rotate(8), "rot-12": lambda: rotate(-12), "rot+15": lambda: rotate(15),
        "scale0.7": lambda: rescale(0.7), "scale1.4": lambda: rescale(1.4),
        "shift": lambda: np.pad(photo, ((90, 0), (0, 120), (0, 0)), mode="reflect"),
        "crop": lambda: photo[40:, 30:],
    }


def _photometric_variants(photo: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    x = photo.astype(np.float64) / 255
    grey = x @ np.array([0.299, 0.587, 0.114])
    return {
        "": x,
        "-warm": np.clip((x ** 0.8) * np.array([1.08, 1.0, 0.88]), 0, 1),
        "-grey-noisy": np.clip(np.repeat(grey[..., None], 3, 2)
                               + rng.normal(0, 0.03, x.shape), 0, 1),
    }


QUICK_GEOMETRIC = ("original", "mirror", "rot+8", "scale0.7", "shift", "crop")
QUICK_PHOTOMETRIC = ("", "-warm")


def bundled_photos(folder: Path, seed: int = 0, quick: bool = False) -> list[Path]:
    """skimage's astronaut under known geometric and photometric changes, as PNG files
    (27 photos; 12 in quick mode)."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for g_name, make in _geometric_variants(data.astronaut()).items():
        if quick and g_name not in QUICK_GEOMETRIC:
            continue
        geometric = np.asarray(make(), dtype=np.uint8)
        for p_name, image in _photometric_variants(geometric, rng).items():
            if quick and p_name not in QUICK_PHOTOMETRIC:
                continue
            path = folder / f"astronaut-{g_name}{p_name}.png"
            Image.fromarray((image * 255).round().astype(np.uint8)).save(path, compress_level=1)
            paths.append(path)
    return paths


def stage_photos(state) -> str:
    from ffhq_tools.images import list_images

    if state.options.photos:
        state.photos = [Path(p) for p in list_images(state.options.photos)]
        if not state.photos:
            raise FfhqToolsError(f"--photos {state.options.photos}: no images found")
        return f"{len(state.photos)} photos from {state.options.photos}"
    state.photos = bundled_photos(state.run_dir / "photos", state.options.seed,
                                  state.options.quick)
    return f"{len(state.photos)} variants of skimage's astronaut photo"


# ----- align and pack -------------------------------------------------------------------------
def stage_align(state) -> str:
    from ffhq_tools.align import AlignConfig, AlignOptions, align_folder
    from ffhq_tools.atomic import read_jsonl

    size = state.options.align_size
    source = state.options.photos or state.run_dir / "photos"
    state.aligned_dir = state.run_dir / "aligned"
    # transform_size 4x the output, FFHQ's own ratio (4096 for 1024); one face per photo
    # (dlib also finds a false face on the astronaut's suit patch).
    config = AlignConfig(options=AlignOptions(output_size=size, transform_size=4 * size),
                         largest_only=True, seed=state.options.seed)
    summary = align_folder(source, state.aligned_dir, config, progress=state.options.progress)
    state.aligned = sorted(state.aligned_dir.rglob("*.png"))
    for rejects in sorted(state.aligned_dir.glob("rejects*.jsonl")):
        state.align_rejects += [f"{r.get('source')}: {r.get('reason')}"
                                + (f" (skipped face, score {r['face_score']:.2f})"
                                   if r.get("skipped_face") else "")
                                for r in read_jsonl(rejects)]
    if len(state.aligned) < 4:
        raise FfhqToolsError(f"only {len(state.aligned)} faces aligned; the demo needs 4+\n"
                             + summary.text())
    return summary.text().splitlines()[0]


def stage_pack(state) -> str:
    from ffhq_tools.data import pack_folder

    state.dataset = state.run_dir / "dataset.h5"
    pack_folder(state.aligned_dir, state.dataset, progress=state.options.progress)
    return f"{state.dataset.name}: {state.dataset.stat().st_size / 1024:.0f} KiB"


# ----- train ----------------------------------------------------------------------------------
def _training_metric_fn(state):
    from models.train_cli import eval_metric_fn

    return eval_metric_fn((TRAINING_METRIC,), str(state.dataset), [], state.options.seed,
                          state.options.snapshot_num_gen)


def _dualstylegan_base(options) -> dict:
    """DualStyleGAN's T_s takes mapping_layers - 6 layers: its base needs 8."""
    from ffhq_tools.demo_dualstylegan import MAPPING_LAYERS

    return {"mapping_layers": MAPPING_LAYERS} if options.dualstylegan else {}


def stage_train(state) -> str:
    from models.train import TrainOptions, train

    o = state.options
    options = TrainOptions(
        config=DEMO_CONFIG, data=str(state.dataset), resolution=o.resolution, kimg=o.kimg,
        tick_kimg=max(o.kimg / 4, 0.016), snap=2, seed=o.seed, device=o.device,
        outdir=str(state.run_dir / "train"), workers=0, progress=o.progress, grid_size=16,
        metrics=(TRAINING_METRIC,), resume="auto",  # a resumed demo continues its training
        config_overrides=_dualstylegan_base(o))
    state.train_dir = train(options, _training_metric_fn(state))
    state.snapshot = newest_snapshot(state.train_dir)
    if state.snapshot is None:
        raise FfhqToolsError(f"{state.train_dir}: training wrote no snapshot")
    return f"{DEMO_CONFIG} at {o.resolution}px for {o.kimg} kimg -> {state.snapshot.name}"


# ----- generate -------------------------------------------------------------------------------
def save_png(array: np.ndarray, path: Path, zoom: int = 1) -> Path:
    """HWC uint8 -> PNG (atomically), enlarged `zoom` times (nearest) for tiny resolutions."""
    from PIL import Image

    from ffhq_tools.atomic import atomic_path

    image = Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array)
    if zoom > 1:
        image = image.resize((image.width * zoom, image.height * zoom), Image.NEAREST)
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG")
    return path


def stage_generate(state) -> str:
    from models.checkpoint import load_generator
    from models.generate import generate_images, make_grid, style_mixing_grids

    G = load_generator(state.snapshot)
    folder = state.run_dir / "samples"
    folder.mkdir(exist_ok=True)
    zoom = max(1, 128 // G.img_resolution)
    seeds = list(range(16))
    images = [image for _, image in generate_images(G, seeds, noise_mode="const")]
    state.figures[f"uncurated samples, seeds 0-15 (x{zoom} nearest)"] = save_png(
        make_grid(images, cols=8), folder / "grid.png", zoom)
    grids = style_mixing_grids(G, col_seeds=[200, 201, 202, 203], row_seeds=[100, 101, 102])
    for name, grid in grids.items():
        state.figures[f"style mixing: {name} styles from the row image"] = save_png(
            grid, folder / f"style-mixing-{name}.png", zoom)
    return f"16-seed grid and style mixing ({', '.join(grids)}) in {folder.name}/"


# ----- score ----------------------------------------------------------------------------------
def stage_score(state) -> str:
    """Every registered metric, reduced counts; missing weights and failures are listed."""
    from eval.registry import list_metrics
    from leaderboards.score import ScoreSettings, checkpoint_info, load_metrics, score_generator
    from models.checkpoint import load_generator

    load_metrics()
    o = state.options
    state.board = state.run_dir / "leaderboard.csv"
    settings = ScoreSettings(board=state.board, dataset="demo-astronaut", device=o.device,
                             seed=o.seed, num_gen=o.num_gen, max_real=1000, batch_size=16,
                             progress=o.progress, skip_missing_weights=True,
                             note="demo: tiny model, reduced counts")
    G, info = load_generator(state.snapshot), checkpoint_info(state.snapshot)
    ran, reused, failed = [], [], []
    for metric in list_metrics():
        try:
            outcome = score_generator(G, info, state.dataset, [metric], settings)
        except Exception as exc:  # one metric's failure is reported, the others still run
            failed.append(metric)
            state.failed_metrics.append({"metric": metric, "error": f"{type(exc).__name__}: "
                                                                    f"{exc}"})
            continue
        state.skipped_metrics += [vars(s) for s in outcome.skipped]
        ran += [r["metric"] for r in outcome.records]
        reused += outcome.reused
    if not ran and not reused:
        raise FfhqToolsError(f"no metric could run (failed: {', '.join(failed) or 'none'})")
    done = f"scored {', '.join(ran) or 'nothing new'}"
    if reused:
        done += f" (already on the leaderboard: {', '.join(reused)})"
    return (f"{done}; {len(state.skipped_metrics)} skipped for missing weights"
            + (f"; failed: {', '.join(failed)}" if failed else ""))


def stage_dualstylegan(state) -> str:
    from ffhq_tools.demo_dualstylegan import stage_dualstylegan as run

    return run(state)


def write_demo_report(state, seconds: float) -> Path:
    from ffhq_tools.demo_report import build_report

    return build_report(state, seconds)

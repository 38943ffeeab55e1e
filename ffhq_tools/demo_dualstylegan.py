"""The demo's DualStyleGAN stage (`demo --dualstylegan`): the whole recipe at tiny scale, with
the verbs a researcher runs, on the demo's own generator (trained with an 8-layer mapping so
that DualStyleGAN's T_s has its 2 layers):

style set (posterised, colour-shifted copies of the aligned faces) -> `pack` -> `train
--resume --transfer --config stylegan2-style-finetune` (G') -> `destylize --identity dlib` ->
`dualstylegan-train pretrain` -> `dualstylegan-train finetune --identity dlib` -> a content |
style | result figure from the fine-tuned model.

The perceptual losses need VGG16 (destylize's LPIPS) and VGG19 (DualStyleGAN's losses) from
the weights registry, or files given with `demo --weights NAME=PATH`; without them the stage
stops before any work with the registry's fetch instructions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ffhq_tools.errors import FfhqToolsError
from ffhq_tools.runs import SNAPSHOT_GLOB, newest_snapshot

MAPPING_LAYERS = 8
STYLE_COUNT = 8
NEEDED_WEIGHTS = ("vgg16", "vgg19")
POSTER_LEVELS = 3
COLOUR_GAIN, COLOUR_SHIFT = (1.0, 0.7, 0.4), (0.35, 0.1, 0.0)
QUICK_STEPS = {"g_prime_kimg": 0.016, "destylize": 10, "pretrain": 20, "finetune": 20}
FULL_STEPS = {"g_prime_kimg": 0.064, "destylize": 50, "pretrain": 60, "finetune": 60}


def _overrides(state) -> dict:
    from ffhq_tools import weights

    return weights.parse_overrides(list(state.options.weights))


def _weight_flags(state, names) -> list[str]:
    overrides = _overrides(state)
    return [x for name in names if name in overrides
            for x in ("--weights", f"{name}={overrides[name]}")]


def check_weights(state) -> None:
    from ffhq_tools import weights

    overrides = _overrides(state)
    for name in NEEDED_WEIGHTS:
        weights.resolve(name, overrides)  # the registry's message names the fix


def stylised(image: np.ndarray) -> np.ndarray:
    """HWC uint8 -> the style set's look: posterised, red up, blue down."""
    x = image.astype(np.float64) / 255
    poster = np.round(x * POSTER_LEVELS) / POSTER_LEVELS
    out = np.clip(poster * np.array(COLOUR_GAIN) + np.array(COLOUR_SHIFT), 0, 1)
    return (out * 255).round().astype(np.uint8)


def write_style_set(state, folder: Path) -> Path:
    from PIL import Image

    from ffhq_tools.demo_stages import save_png

    if len(state.aligned) < STYLE_COUNT:
        raise FfhqToolsError(f"{len(state.aligned)} aligned faces; the style set needs "
                             f"{STYLE_COUNT} (DualStyleGAN's minimum)")
    folder.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(state.aligned[:STYLE_COUNT]):
        with Image.open(path) as image:
            save_png(stylised(np.asarray(image.convert("RGB"))), folder / f"style{i:03d}.png")
    return folder


def _run(argv: list[str]) -> None:
    from ffhq_tools.cli import main

    code = main(argv)
    if code != 0:
        raise FfhqToolsError(f"`ffhq-tools {' '.join(argv[:2])} ...` exited with {code} "
                             "(its message is above, and in log.txt)")


def _newest(folder: Path) -> Path:
    snapshot = newest_snapshot(folder, f"*/{SNAPSHOT_GLOB}")
    if snapshot is None:
        raise FfhqToolsError(f"{folder}: no snapshot was written")
    return snapshot


def _network_flags() -> list[str]:
    from ffhq_tools.demo_stages import DEMO_CONFIG
    from models.configs import get_config

    config = get_config(DEMO_CONFIG)
    fields = {"z_dim": config.z_dim, "w_dim": config.w_dim, "mapping_layers": MAPPING_LAYERS,
              "channel_base": config.channel_base, "channel_max": config.channel_max,
              "mbstd_group": config.mbstd_group}
    return [x for key, value in fields.items() for x in ("--cfg", f"{key}={value}")]


def _common(state) -> list[str]:
    o = state.options
    return ["--device", o.device] + ([] if o.progress else ["--no-progress"])


def fine_tune_g(state, style_h5: Path, folder: Path, kimg: float) -> Path:
    _run(["train", "--resume", str(state.snapshot), "--transfer", "--config",
          "stylegan2-style-finetune", *_network_flags(), "--data", str(style_h5),
          "--kimg", str(kimg), "--batch", "4", "--tick", str(kimg), "--snap", "1",
          "--workers", "0", "--grid", "4", "--outdir", str(folder), *_common(state)])
    return _newest(folder)


def destylize(state, style: Path, g_prime: Path, out: Path, steps: int) -> Path:
    _run(["destylize", str(style), "--original", str(state.snapshot), "--finetuned",
          str(g_prime), "--out", str(out), "--identity", "dlib", "--steps", str(steps),
          "--project-steps", str(steps), "--device", state.options.device,
          *_weight_flags(state, ("vgg16",)), *([] if state.options.progress else ["-q"])])
    return out


def dualstylegan_train(state, stage: str, extra: list[str], folder: Path, iters: int) -> Path:
    resolution = str(state.options.resolution)
    _run(["dualstylegan-train", stage, *extra, "--outdir", str(folder), "--iters", str(iters),
          "--batch", "2", "--loss-res", resolution, "--snap", str(iters), "--log-every", "5",
          "--seed", str(state.options.seed), *_weight_flags(state, ("vgg19",)),
          *_common(state)])
    return _newest(folder)


def transfer_figure(model: Path, codes: Path, style: Path, out: Path) -> Path:
    """Rows: content G(z+_i) | the exemplar of the next row | the result."""
    import torch
    from PIL import Image

    from ffhq_tools.demo_stages import save_png
    from models.checkpoint import load_checkpoint
    from models.dualstylegan_codes import read_codes
    from models.generate import make_grid, to_uint8
    from models.stylize import StylizeSettings, default_weights, stylize

    net = load_checkpoint(model).G_ema.eval()
    instyle = read_codes(codes / "instyle_code.npz")
    exstyle = read_codes(codes / "exstyle_code.npz")
    zero = StylizeSettings(weights=(0.0,) * net.num_ws)
    settings = StylizeSettings(weights=tuple(default_weights(net)))
    tiles = []
    count = min(4, len(instyle.names))
    size = net.img_resolution
    with torch.no_grad():
        for i in range(count):
            j = (i + 1) % len(exstyle.names)
            content, ex = instyle.code(i), exstyle.code(j)
            with Image.open(style / exstyle.names[j]) as image:
                exemplar = np.asarray(image.convert("RGB").resize((size, size), Image.LANCZOS))
            tiles += [to_uint8(stylize(net, content, content, zero))[0], exemplar,
                      to_uint8(stylize(net, content, ex, settings))[0]]
    return save_png(make_grid(tiles, cols=3), out, zoom=max(1, 128 // size))


def stage_dualstylegan(state) -> str:
    o = state.options
    steps = QUICK_STEPS if o.quick else FULL_STEPS
    check_weights(state)
    folder = state.run_dir / "dualstylegan"
    style = write_style_set(state, folder / "style")
    style_h5 = folder / "style.h5"
    _run(["pack", str(style), str(style_h5), *([] if o.progress else ["-q"])])
    g_prime = fine_tune_g(state, style_h5, folder / "g-prime", steps["g_prime_kimg"])
    codes = destylize(state, style, g_prime, folder / "codes", steps["destylize"])
    pretrained = dualstylegan_train(state, "pretrain", [
        "--base", str(state.snapshot), "--data", str(state.dataset), "--projection-steps", "2"],
        folder / "pretrain", steps["pretrain"])
    tuned = dualstylegan_train(state, "finetune", [
        "--base", str(pretrained), "--data", str(style_h5), "--exstyle",
        str(codes / "exstyle_code.npz"), "--instyle", str(codes / "instyle_code.npz"),
        "--identity", "dlib", "--snap-begin", str(steps["finetune"])],
        folder / "finetune", steps["finetune"])
    figure = transfer_figure(tuned, codes, style, folder / "content-style-result.png")
    state.figures["DualStyleGAN: content G(z+_i) | exemplar | result"] = figure
    return (f"{STYLE_COUNT} exemplars; G' {steps['g_prime_kimg']} kimg, destylize "
            f"{steps['destylize']} steps, pretrain {steps['pretrain']} + finetune "
            f"{steps['finetune']} iterations -> {figure.relative_to(state.run_dir)}")

"""`ffhq-tools stylize CONTENT... --model M --style-id N`: exemplar-based style transfer.

Thin wrapper over `models.stylize`: aligns each content photo (our aligner, unless
`--aligned`), reads the intrinsic code (`--instyle`) and the exemplar code (`--exstyle`, by
`--style-id`), and writes per content: the stylised image, a content | exemplar | result strip,
a structure x colour weight sweep, and one `stylize.jsonl` line with every code and setting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ffhq_tools.errors import FfhqToolsError
from ffhq_tools.runtime import add_device_flag

EXSTYLE_NAMES = ("refined_exstyle_code.npz", "exstyle_code.npz", "refined_exstyle_code.npy",
                 "exstyle_code.npy")
SWEEP_PANEL = 256
TRANSFORM_FACTOR = 4  # FFHQ: transform at 4096, output 1024
PROJECTION_TODO = ("projection into the generator is not available yet (models/project is "
                   "being built)")


def _intrinsic_source(args) -> None:
    """Refuse, before loading anything, the intrinsic / exemplar routes that do not exist yet."""
    if args.style_image:
        raise FfhqToolsError(f"--style-image {args.style_image}: a new exemplar needs its "
                             f"codes from an encoder or projection; {PROJECTION_TODO}, and pSp "
                             "encoders are not supported. Use --style-id with an exstyle file")
    if args.instyle:
        return
    if args.encoder:
        if not Path(args.encoder).is_file():
            raise FfhqToolsError(f"--encoder {args.encoder}: file not found")
        raise FfhqToolsError(f"--encoder {args.encoder}: pSp encoders are not supported yet; "
                             "pass the content's intrinsic code with --instyle CODE.npy|.npz")
    raise FfhqToolsError("missing encoder: the content's intrinsic code must come from "
                         f"--instyle CODE.npy|.npz ({PROJECTION_TODO}; pSp encoders are not "
                         "supported)")


def _exstyle_path(args) -> Path:
    if args.exstyle:
        return Path(args.exstyle)
    folder = Path(args.model).parent
    for name in EXSTYLE_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise FfhqToolsError(f"no --exstyle given and none of {', '.join(EXSTYLE_NAMES)} beside "
                         f"{args.model}")


def _load_model(path: str, device):
    from models.checkpoint import load_generator
    from models.dualstylegan import DualStyleGAN

    net = load_generator(path, device)
    if not isinstance(net, DualStyleGAN):
        raise FfhqToolsError(f"--model {path}: a {type(net).__name__} checkpoint, not a "
                             "DualStyleGAN (convert the official generator.pt with "
                             "ffhq-tools import-checkpoint generator.pt OUT.pt)")
    return net


def _intrinsic_code(codes, content: Path, single: bool):
    for key in (content.name, content.stem):
        if key in codes.names:
            i = codes.names.index(key)
            return key, codes.codes[i: i + 1]
    if single and len(codes.names) == 1:
        return codes.names[0], codes.codes[:1]
    raise FfhqToolsError(f"--instyle {codes.source}: no code named {content.name!r} (it holds "
                         f"{', '.join(codes.names[:4])}{'...' if len(codes.names) > 4 else ''}); "
                         "name each content's code after its file")


def _resized(pixels, size: int):
    import numpy as np
    from PIL import Image

    if pixels.shape[:2] == (size, size):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.LANCZOS))


class ContentAligner:
    """Detects the largest face (built on first use) and aligns it as FFHQ does."""

    def __init__(self, landmarks: str, resolution: int, device: str):
        self.landmarks, self.resolution, self.device = landmarks, resolution, device
        self._detector = None

    def __call__(self, path: Path, pixels):
        from ffhq_tools.align import AlignOptions, align_image
        from ffhq_tools.align.landmarks import DEFAULT_MIN_SCORE, make_detector, select_faces

        if self._detector is None:
            self._detector = make_detector(self.landmarks, device=self.device)
        faces = select_faces(self._detector.detect(pixels),
                             min_score=DEFAULT_MIN_SCORE[self.landmarks], largest_only=True)
        if not faces:
            raise FfhqToolsError(f"{path}: no face found by {self.landmarks}; align the photo "
                                 "yourself and pass --aligned")
        options = AlignOptions(output_size=self.resolution,
                               transform_size=TRANSFORM_FACTOR * self.resolution)
        aligned = align_image(pixels, faces[0].landmarks, options)
        if aligned is None:
            raise FfhqToolsError(f"{path}: the face's crop could not be placed")
        face, quad = aligned
        return face, {"by": self.landmarks, "score": faces[0].score, "quad": quad.tolist()}


def _content(path: Path, args, aligner: ContentAligner, resolution: int):
    from ffhq_tools.images import load_rgb

    pixels = load_rgb(path)
    if args.aligned:
        return _resized(pixels, resolution), {"by": "given (--aligned)",
                                              "size": list(pixels.shape[:2])}
    return aligner(path, pixels)


def _save_png(path: Path, array) -> None:
    from PIL import Image

    from ffhq_tools.atomic import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def _exemplar_panel(args, net, name: str, ex_z, settings, resolution: int):
    from ffhq_tools.images import load_rgb
    from models.generate import to_uint8
    from models.stylize import render_exemplar

    if args.style_images:
        image = Path(args.style_images) / name
        if image.is_file():
            return _resized(load_rgb(image), resolution), str(image)
    return to_uint8(render_exemplar(net, ex_z, settings))[0], "rendered from its code"


def _sweep_grid(net, instyle, ex_z, settings):
    import torch.nn.functional as F

    from models.generate import make_grid, to_uint8
    from models.stylize import weight_sweep

    images = weight_sweep(net, instyle, ex_z, settings)
    panel = min(SWEEP_PANEL, images.shape[-1])
    return make_grid(to_uint8(F.adaptive_avg_pool2d(images, panel)), len(settings.sweep))


def _settings(args, net):
    from models.stylize import StylizeSettings, default_weights, parse_weights

    weights = parse_weights(args.weight, net.num_ws) if args.weight else default_weights(net)
    try:
        sweep = tuple(float(s) for s in args.sweep.split(",") if s.strip())
    except ValueError:
        raise FfhqToolsError(f"--sweep {args.sweep!r}: expected comma-separated weights") \
            from None
    return StylizeSettings(tuple(weights), args.truncation, args.preserve_color, args.wplus,
                           args.noise_mode, sweep)


def _stylize(args) -> int:
    from tqdm import tqdm

    from ffhq_tools.atomic import append_jsonl
    from ffhq_tools.runtime import select_device
    from models.checkpoint import checkpoint_sha256
    from models.dualstylegan_codes import read_codes
    from models.generate import make_grid, to_uint8
    from models.stylize import check_code, exemplar, stylize

    _intrinsic_source(args)
    contents = [Path(c) for c in args.content]
    device = select_device(args.device)
    net = _load_model(args.model, device)
    settings = _settings(args, net)
    ex_path = _exstyle_path(args)
    ex_name, ex_z = exemplar(read_codes(ex_path), args.style_id)
    check_code(ex_z, net, net.generator.z_dim, f"--exstyle {ex_path}")
    instyles = read_codes(args.instyle)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    resolution = net.img_resolution
    aligner = ContentAligner(args.landmarks, resolution, str(device))
    model = {"path": str(args.model), "sha256": checkpoint_sha256(args.model)}
    for content in tqdm(contents, desc="stylize", unit="img", file=sys.stderr):
        in_name, instyle = _intrinsic_code(instyles, content, len(contents) == 1)
        check_code(instyle, net, net.w_dim if settings.wplus else net.generator.z_dim,
                   f"--instyle {args.instyle}")
        face, alignment = _content(content, args, aligner, resolution)
        result = to_uint8(stylize(net, instyle, ex_z, settings))[0]
        panel, panel_source = _exemplar_panel(args, net, ex_name, ex_z, settings, resolution)
        stem = f"{content.stem}-style{args.style_id}"
        names = {"image": f"{stem}.png", "strip": f"{stem}-strip.png",
                 "sweep": f"{stem}-sweep.png"}
        _save_png(out / names["image"], result)
        _save_png(out / names["strip"], make_grid([face, panel, result], 3))
        _save_png(out / names["sweep"], _sweep_grid(net, instyle, ex_z, settings))
        append_jsonl(out / "stylize.jsonl", {
            "content": str(content), "alignment": alignment, "model": model,
            "instyle": {"file": str(args.instyle), "name": in_name,
                        "space": "w+" if settings.wplus else "z+", "code": instyle.tolist()},
            "exstyle": {"file": str(ex_path), "style_id": args.style_id, "name": ex_name,
                        "space": "z+", "code": ex_z.tolist(), "exemplar_panel": panel_source},
            "settings": settings.to_dict(), "outputs": names})
        print(f"{content}: {out / names['image']} (strip, sweep, stylize.jsonl)")
    return 0


def add_verbs(verbs) -> None:
    p = verbs.add_parser("stylize", help="DualStyleGAN exemplar-based style transfer of face "
                         "photos", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("content", nargs="+", help="content photos (aligned first unless --aligned)")
    p.add_argument("--model", required=True, help="our DualStyleGAN checkpoint (import the "
                                                  "official generator.pt first)")
    p.add_argument("--out", required=True, help="output folder")
    style = p.add_mutually_exclusive_group(required=True)
    style.add_argument("--style-id", type=int, help="exemplar index in the exstyle file")
    style.add_argument("--style-image", help="a new exemplar image (needs projection)")
    p.add_argument("--exstyle", help="exemplar codes (.npz or the official .npy); default: "
                                     "refined_exstyle_code / exstyle_code beside --model")
    p.add_argument("--instyle", help="intrinsic codes of the contents (.npz / .npy, named by "
                                     "content file, or one code for one content)")
    p.add_argument("--encoder", help="pSp encoder for intrinsic codes (not supported yet)")
    p.add_argument("--aligned", action="store_true", help="contents are aligned already")
    p.add_argument("--landmarks", choices=("dlib", "dlib-cnn", "face-alignment"),
                   default="dlib", help="face landmarks for alignment")
    p.add_argument("--weight", help="interpolation weights: one per latent layer, e.g. "
                                    "0.75x7,1x11 (default: 0.75 structure, 1 colour)")
    p.add_argument("--truncation", type=float, default=0.75,
                   help="truncation of the intrinsic code towards 0")
    p.add_argument("--preserve-color", action="store_true",
                   help="keep the content's colour layers")
    p.add_argument("--wplus", action="store_true", help="intrinsic codes are W+ (default z+)")
    p.add_argument("--noise-mode", choices=("const", "random", "none"), default="const")
    p.add_argument("--sweep", default="0,0.25,0.5,0.75,1",
                   help="weights of the structure x colour sweep figure")
    p.add_argument("--style-images", help="folder of the exemplar images, shown in the strip")
    add_device_flag(p)
    p.set_defaults(func=_stylize)

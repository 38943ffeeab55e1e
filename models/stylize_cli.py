"""`ffhq-tools stylize CONTENT... --model M --style-id N | --style-image IMG`: exemplar-based
style transfer.

Thin wrapper over `models.stylize`: aligns each content photo (our aligner, unless
`--aligned`), takes the intrinsic code from `--instyle`, from a pSp `--encoder`
(models.psp_encoder) or else by projecting the aligned face into the base generator
(models.stylize_projection), and the exemplar code from the exstyle
file (`--style-id`) or by projecting `--style-image`. Writes per content: the stylised image, a
content | exemplar | result strip, a structure x colour weight sweep, and one `stylize.jsonl`
line with every code (and its space) and setting; projections stay in OUT/projection/ and are
reused by a rerun.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ffhq_tools.errors import FfhqToolsError
from ffhq_tools.runtime import add_device_flag

SWEEP_PANEL = 256
TRANSFORM_FACTOR = 4  # FFHQ: transform at 4096, output 1024


def _intrinsic_source(args) -> str:
    """'instyle' or 'projection'; refuses, before loading anything, what cannot run."""
    if args.style_image and not Path(args.style_image).is_file():
        raise FfhqToolsError(f"--style-image {args.style_image}: file not found")
    if args.style_image and args.exstyle:
        raise FfhqToolsError("--exstyle does not apply with --style-image (its code is "
                             "projected); give one of the two")
    if args.wplus and not (args.instyle or args.encoder):
        raise FfhqToolsError("--wplus names the space of --instyle codes or of the --encoder's "
                             "codes; projected codes are w+ already")
    if args.instyle and args.encoder:
        raise FfhqToolsError("--instyle and --encoder both give the intrinsic codes; give one")
    if args.instyle:
        return "instyle"
    if args.encoder:
        if not Path(args.encoder).is_file():
            raise FfhqToolsError(f"--encoder {args.encoder}: file not found")
        return "encoder"
    return "projection"


def _unique_stems(contents: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for content in contents:
        if content.stem in seen:
            raise FfhqToolsError(f"{content} and {seen[content.stem]}: two contents named "
                                 f"{content.stem!r} would write the same outputs; rename one")
        seen[content.stem] = content


def _exstyle_path(args) -> Path:
    from models.dualstylegan_exemplar import exstyle_beside

    return Path(args.exstyle) if args.exstyle else exstyle_beside(Path(args.model))


def _load_model(path: str, device):
    from models.checkpoint import load_generator
    from models.dualstylegan import DualStyleGAN

    net = load_generator(path, device)
    if not isinstance(net, DualStyleGAN):
        raise FfhqToolsError(f"--model {path}: a {type(net).__name__} checkpoint, not a "
                             "DualStyleGAN (convert the official generator.pt with "
                             "ffhq-tools import-checkpoint generator.pt OUT.pt)")
    return net


def _read_instyles(args):
    """The --instyle file's codes; --wplus names the space of a file that does not say."""
    from models.dualstylegan_codes import CodeSpace, read_codes

    wanted = CodeSpace.W_PLUS if args.wplus else CodeSpace.Z_PLUS
    codes = read_codes(args.instyle, default_space=wanted)
    if args.wplus and codes.space is not CodeSpace.W_PLUS:
        raise FfhqToolsError(f"--wplus: --instyle {args.instyle} holds {codes.space.value} "
                             "codes (drop --wplus)")
    return codes


def _intrinsic_code(codes, content: Path, single: bool):
    for key in (content.name, content.stem):
        if key in codes.names:
            return codes.code(codes.names.index(key))
    if single and len(codes.names) == 1:
        return codes.code(0)
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



class Projections:
    """Projects images into the model's base generator for one stylize run; the distance
    network and the projector are built on first use (an --instyle + --style-id run never
    loads them)."""

    def __init__(self, args, net, device, out: Path, model_sha256: str):
        from models.stylize_projection import ProjectionSettings

        self.args, self.net, self.device, self.out = args, net, device, out
        self.model_sha256 = model_sha256
        self.settings = ProjectionSettings(steps=args.steps, seed=args.seed,
                                           distance=args.distance, space=args.projection_space,
                                           optimize_noise=args.noise_opt, batch=args.batch)
        self._projector = None
        self._options: dict = {}

    def _build(self) -> None:
        from ffhq_tools import weights
        from models.project_cli import load_distance
        from models.stylize_projection import make_projector

        used: dict[str, str] = {}
        distance = load_distance(self.settings.distance,
                                 weights.parse_overrides(self.args.weights), self.device, used)
        self._projector = make_projector(self.net, distance, self.settings, self.device,
                                         f"--model {self.args.model}")
        self._options = {"network": {"sha256": self.model_sha256, "part": "base generator"},
                         "distance": self.settings.distance,
                         "weights": dict(sorted(used.items())),
                         "protocol": self.settings.protocol().to_dict()}

    def __call__(self, items, role: str):
        from models.stylize_projection import project_sources

        if self._projector is None:
            self._build()
        return project_sources(self._projector, items, self.out, role, self.settings.seed,
                               self._options, self.settings.batch, not self.args.quiet)

    def record(self) -> dict:
        return {"part": "base generator", **self._options}


def _exemplar(args, net, projections: Projections):
    """(code, jsonl record, exemplar pixels or None)."""
    from ffhq_tools.images import load_rgb
    from models.dualstylegan_codes import CodeSpace, read_codes
    from models.project.targets import prepare_pixels
    from models.stylize import check_code, exemplar
    from models.stylize_projection import ProjectionSource, code_file

    if args.style_image:
        image = Path(args.style_image)
        pixels = prepare_pixels(load_rgb(image), net.img_resolution)
        code = projections([ProjectionSource(image.stem, str(image), pixels)], "style")[
            image.stem]
        record = {"source": "projection", "image": str(image),
                  "file": str(code_file(projections.out, "style", code)),
                  "projection": projections.record(), **code.to_dict()}
        return code, record, pixels
    ex_path = _exstyle_path(args)
    code = exemplar(read_codes(ex_path, default_space=CodeSpace.Z_PLUS), args.style_id)
    check_code(code, net, f"--exstyle {ex_path}")
    return code, {"source": "exstyle", "file": str(ex_path), "style_id": args.style_id,
                  **code.to_dict()}, None


def _encoded(args, net, faces):
    """[(code, jsonl record)] per content from the pSp encoder (z+, or w+ with --wplus)."""
    import torch

    from models.dualstylegan_codes import Code, CodeSpace
    from models.psp_encoder import check_encoder_fits, load_psp_encoder
    from models.stylize import code_dim

    space = CodeSpace.W_PLUS if args.wplus else CodeSpace.Z_PLUS
    device = next(net.parameters()).device
    encoder = load_psp_encoder(args.encoder, space, device)
    check_encoder_fits(encoder, space, net.num_ws, code_dim(net, space),
                       f"--model {args.model}")
    out = []
    for content, face, _ in faces:
        pixels = torch.tensor(face).permute(2, 0, 1)[None].to(device, torch.float32)
        with torch.no_grad():
            values = encoder.encode(pixels / 127.5 - 1).cpu().numpy()
        code = Code(content.name, values, space)
        out.append((code, {"source": "encoder", "encoder": encoder.describe(),
                           **code.to_dict()}))
    return out


def _instyles(args, source: str, net, faces, projections: Projections):
    """[(code, jsonl record)] per content, from --instyle, the encoder or by projection."""
    from models.stylize import check_code
    from models.stylize_projection import ProjectionSource, code_file

    if source == "encoder":
        return _encoded(args, net, faces)
    if source == "instyle":
        codes = _read_instyles(args)
        out = []
        for content, *_ in faces:
            code = _intrinsic_code(codes, content, len(faces) == 1)
            check_code(code, net, f"--instyle {args.instyle}")
            out.append((code, {"source": "instyle", "file": str(args.instyle),
                               **code.to_dict()}))
        return out
    items = [ProjectionSource(content.stem, str(content), face) for content, face, _ in faces]
    codes = projections(items, "content")
    return [(codes[item.name], {"source": "projection",
                                "file": str(code_file(projections.out, "content",
                                                      codes[item.name])),
                                "projection": projections.record(),
                                **codes[item.name].to_dict()}) for item in items]


def _exemplar_panel(args, net, code, pixels, settings, resolution: int):
    from ffhq_tools.images import load_rgb
    from models.generate import to_uint8
    from models.stylize import render_exemplar

    if pixels is not None:
        return pixels, str(args.style_image)
    if args.style_images:
        image = Path(args.style_images) / code.name
        if image.is_file():
            return _resized(load_rgb(image), resolution), str(image)
    return to_uint8(render_exemplar(net, code, settings.noise_mode))[0], "rendered from its code"


def _sweep_grid(net, instyle, exstyle, settings):
    import torch.nn.functional as F

    from models.generate import make_grid, to_uint8
    from models.stylize import weight_sweep

    images = weight_sweep(net, instyle, exstyle, settings)
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
    return StylizeSettings(tuple(weights), args.truncation, args.preserve_color,
                           args.noise_mode, sweep)


def _check_projection_flags(args) -> None:
    for flag, value in (("--steps", args.steps), ("--batch", args.batch)):
        if value < 1:
            raise FfhqToolsError(f"{flag} {value}: must be >= 1")


def _stylize(args) -> int:
    from tqdm import tqdm

    from ffhq_tools.atomic import append_jsonl
    from ffhq_tools.runtime import select_device
    from models.checkpoint import checkpoint_sha256
    from models.generate import make_grid, to_uint8
    from models.project.targets import safe_name
    from models.stylize import stylize

    source = _intrinsic_source(args)
    _check_projection_flags(args)
    contents = [Path(c) for c in args.content]
    _unique_stems(contents)
    device = select_device(args.device)
    net = _load_model(args.model, device)
    settings = _settings(args, net)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    resolution = net.img_resolution
    model = {"path": str(args.model), "sha256": checkpoint_sha256(args.model)}
    projections = Projections(args, net, device, out, model["sha256"])
    ex_code, ex_record, ex_pixels = _exemplar(args, net, projections)
    aligner = ContentAligner(args.landmarks, resolution, str(device))
    faces = [(content, *_content(content, args, aligner, resolution)) for content in contents]
    instyles = _instyles(args, source, net, faces, projections)
    style_tag = f"style{args.style_id}" if args.style_image is None else \
        safe_name(Path(args.style_image).stem)
    panel, panel_source = _exemplar_panel(args, net, ex_code, ex_pixels, settings, resolution)
    for (content, face, alignment), (instyle, in_record) in tqdm(
            list(zip(faces, instyles, strict=True)), desc="stylize", unit="img",
            file=sys.stderr, disable=args.quiet):
        result = to_uint8(stylize(net, instyle, ex_code, settings))[0]
        stem = f"{content.stem}-{style_tag}"
        names = {"image": f"{stem}.png", "strip": f"{stem}-strip.png",
                 "sweep": f"{stem}-sweep.png"}
        _save_png(out / names["image"], result)
        _save_png(out / names["strip"], make_grid([face, panel, result], 3))
        _save_png(out / names["sweep"], _sweep_grid(net, instyle, ex_code, settings))
        append_jsonl(out / "stylize.jsonl", {
            "content": str(content), "alignment": alignment, "model": model,
            "instyle": in_record, "exstyle": {**ex_record, "exemplar_panel": panel_source},
            "settings": settings.to_dict(), "outputs": names})
        print(f"{content}: {out / names['image']} (strip, sweep, stylize.jsonl)")
    return 0


def add_verbs(verbs) -> None:
    from ffhq_tools.weights_cli import add_weights_flag

    p = verbs.add_parser("stylize", help="DualStyleGAN exemplar-based style transfer of face "
                         "photos", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("content", nargs="+", help="content photos (aligned first unless --aligned)")
    p.add_argument("--model", required=True, help="our DualStyleGAN checkpoint (import the "
                                                  "official generator.pt first)")
    p.add_argument("--out", required=True, help="output folder")
    style = p.add_mutually_exclusive_group(required=True)
    style.add_argument("--style-id", type=int, help="exemplar index in the exstyle file")
    style.add_argument("--style-image", help="a new exemplar image (an aligned artistic face): "
                                             "its extrinsic code is projected into the base "
                                             "generator (w+)")
    p.add_argument("--exstyle", help="exemplar codes (.npz or the official .npy); default: "
                                     "refined_exstyle_code / exstyle_code beside --model")
    p.add_argument("--instyle", help="intrinsic codes of the contents (.npz / .npy / a "
                                     "projected_w.npz, named by content file, or one code for "
                                     "one content); default: project each aligned content")
    p.add_argument("--encoder", help="a pSp encoder checkpoint (DualStyleGAN's encoder.pt: z+ "
                                     "codes; encoder_wplus.pt with --wplus) for the contents' "
                                     "intrinsic codes")
    p.add_argument("--aligned", action="store_true", help="contents are aligned already")
    p.add_argument("--landmarks", choices=("dlib", "dlib-cnn", "face-alignment"),
                   default="dlib", help="face landmarks for alignment")
    p.add_argument("--weight", help="interpolation weights: one per latent layer, e.g. "
                                    "0.75x7,1x11 (default: 0.75 structure, 1 colour)")
    p.add_argument("--truncation", type=float, default=0.75,
                   help="truncation of the intrinsic code towards 0")
    p.add_argument("--preserve-color", action="store_true",
                   help="keep the content's colour layers")
    p.add_argument("--wplus", action="store_true",
                   help="--instyle codes are w+ (for a file that does not say; default z+); "
                        "with --encoder: a w+ encoder (encoder_wplus.pt)")
    p.add_argument("--noise-mode", choices=("const", "random", "none"), default="const")
    p.add_argument("--sweep", default="0,0.25,0.5,0.75,1",
                   help="weights of the structure x colour sweep figure")
    p.add_argument("--style-images", help="folder of the exemplar images, shown in the strip")
    proj = p.add_argument_group("projection (contents without --instyle, --style-image)")
    proj.add_argument("--steps", type=int, default=1000, help="projection steps")
    proj.add_argument("--seed", type=int, default=303, help="projection seed per image")
    proj.add_argument("--distance", choices=("vgg16-ts", "lpips-vgg"), default="vgg16-ts",
                      help="projection distance (as `ffhq-tools project`)")
    proj.add_argument("--projection-space", choices=("w+", "w"), default="w+",
                      help="w+: one w per layer; w: one w for all layers (stored as w+)")
    proj.add_argument("--noise-opt", action=argparse.BooleanOptionalAction, default=True,
                      help="optimise the noise maps too (the code alone is used to stylise)")
    proj.add_argument("--batch", type=int, default=4, help="images projected together")
    add_weights_flag(proj)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_device_flag(p)
    p.set_defaults(func=_stylize)

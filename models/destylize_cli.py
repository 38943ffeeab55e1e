"""`ffhq-tools destylize EXEMPLAR... --original G.pt --finetuned G'.pt`: facial destylization
of a style set (DualStyleGAN's destylize.py), writing exstyle_code / instyle_code files.

A thin wrapper over models.destylize; the perceptual distance comes from eval's feature
networks through `models.project_cli.load_distance` (registry entries, SHA-256 recorded).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ffhq_tools.errors import FfhqToolsError
from ffhq_tools.runtime import add_device_flag, add_threads_flag
from ffhq_tools.weights_cli import add_weights_flag
from models.identity_names import IDENTITIES

DEFAULT_ROOT = "runs/destylize"


def _load(path: str, device, flag: str):
    from models.checkpoint import checkpoint_info, load_generator

    if not Path(path).is_file():
        raise FfhqToolsError(f"{flag} {path}: file not found")
    return load_generator(path, device), checkpoint_info(path)


def _protocol(args):
    from models.destylize import DestylizeProtocol

    id_weight = args.id_weight if args.identity != "none" else 0.0
    return DestylizeProtocol(steps=args.steps, project_steps=args.project_steps,
                             id_weight=id_weight, truncation=args.truncation)


def _out_dir(args, desc: str) -> Path:
    from ffhq_tools.runs import create_run_dir

    return Path(args.out) if args.out else create_run_dir(args.root, desc)


def _options(args, infos: dict, used: dict, protocol, encoder) -> dict:
    options = {"networks": {flag: {"sha256": i["sha256"], "config": i["config"],
                                   "resolution": i["resolution"]} for flag, i in infos.items()},
               "distance": args.distance, "identity": args.identity,
               "weights": dict(sorted(used.items())), "protocol": protocol.to_dict(),
               "init": None if args.init is None else str(args.init)}
    if encoder is not None:
        options["encoder"] = encoder.describe()
    return options


def _encoder(args, device):
    from models.dualstylegan_codes import CodeSpace
    from models.psp_encoder import load_psp_encoder

    if args.encoder is None:
        return None
    return load_psp_encoder(args.encoder, CodeSpace.Z_PLUS, device)


def _with_threads(verb):
    """The verb under `--threads`, restored afterwards (as project and metrics run)."""
    def run(args) -> int:
        from ffhq_tools.runtime import using_threads

        with using_threads(args.threads):
            return verb(args)
    return run


def _destylize(args) -> int:
    from ffhq_tools import weights
    from ffhq_tools.runtime import select_device
    from models.destylize import Destylizer, destylize_set, load_identity
    from models.destylize.pipeline import BOTH_STARTS
    from models.dualstylegan_codes import read_codes
    from models.project.targets import collect_targets
    from models.project_cli import load_distance

    if not args.exemplars:
        raise FfhqToolsError("no EXEMPLAR given (an aligned folder, align.jsonl, .h5 or images)")
    if args.init and args.encoder:
        raise FfhqToolsError(BOTH_STARTS)
    protocol = _protocol(args)
    overrides = weights.parse_overrides(args.weights)
    device = select_device(args.device)
    used: dict[str, str] = {}
    identity = load_identity(args.identity, overrides, device) if protocol.id_weight else None
    if identity is not None:
        used[identity.provenance["name"]] = identity.provenance["sha256"]
    G, info = _load(args.original, device, "--original")
    G_prime, info_prime = _load(args.finetuned, device, "--finetuned")
    init = read_codes(args.init) if args.init else None
    encoder = _encoder(args, device)
    distance = load_distance(args.distance, overrides, device, used)
    labels = (f"--original {args.original}", f"--finetuned {args.finetuned}")
    destylizer = Destylizer(G, G_prime, distance, protocol, identity=identity,
                            encoder=encoder, device=device, labels=labels)
    targets = collect_targets(list(args.exemplars), G.img_resolution, args.limit)
    out = _out_dir(args, f"destylize-{Path(args.finetuned).stem}")
    options = _options(args, {"original": info, "finetuned": info_prime}, used, protocol,
                       encoder)
    summary = destylize_set(destylizer, targets, out, seed=args.seed, options=options,
                            init=init, progress=not args.quiet)
    print(f"{len(summary.done)} exemplars destylized ({summary.skipped} already done): "
          f"{out / 'exstyle_code.npy'}, {out / 'instyle_code.npy'} (+ .npz)")
    return 0


def add_verbs(verbs) -> None:
    from models.project_cli import DISTANCES

    p = verbs.add_parser(
        "destylize", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="DualStyleGAN facial destylization: exstyle / instyle z+ codes of a style set")
    p.add_argument("exemplars", nargs="*", metavar="EXEMPLAR",
                   help="aligned exemplars: a folder, an aligned folder's align.jsonl, "
                        "FILE.h5[:LEVEL] or images")
    p.add_argument("--original", required=True, help="the original (FFHQ) generator G (.pt)")
    p.add_argument("--finetuned", required=True,
                   help="G' fine-tuned on the style set from G (.pt)")
    p.add_argument("--out", default=None,
                   help="output folder (rerun with the same folder to resume); default: a "
                        "numbered folder under --root")
    p.add_argument("--root", default=DEFAULT_ROOT, help="where numbered output folders go")
    p.add_argument("--init", default=None, metavar="CODES",
                   help="start codes z+_e (exstyle .npy/.npz keyed by file name) instead of "
                        "projecting each exemplar into G")
    p.add_argument("--encoder", default=None, metavar="ENCODER.pt",
                   help="a z+ pSp encoder (DualStyleGAN's encoder.pt) whose codes of the "
                        "exemplar and of the destylized face replace both projections")
    p.add_argument("--steps", type=int, default=300, help="destylization steps on G'")
    p.add_argument("--project-steps", type=int, default=1000,
                   help="steps of each z+ projection into G (start code and re-encoding)")
    p.add_argument("--id-weight", type=float, default=0.1, help="identity term weight")
    p.add_argument("--identity", choices=IDENTITIES, default="arcface",
                   help="face embedder of the identity term: arcface (IR-SE50, as upstream), "
                        "dlib (dlib's face ResNet, offline), none")
    p.add_argument("--truncation", type=float, default=0.7,
                   help="truncation (towards 0) of the destylized face's rendering in G")
    p.add_argument("--distance", choices=DISTANCES, default="lpips-vgg",
                   help="lpips-vgg: LPIPS VGG (net-lin, as upstream); vgg16-ts: NVIDIA's "
                        "vgg16.pt features")
    add_weights_flag(p)
    p.add_argument("--seed", type=int, default=0, help="noise-map seed per exemplar")
    p.add_argument("--limit", type=int, default=None, help="only the first N exemplars")
    add_threads_flag(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_device_flag(p)
    p.set_defaults(func=_with_threads(_destylize))
    add_refine_verb(verbs)
    add_sampler_verb(verbs)


# ------------------------------------------------------------------------------------------
# refine-exstyle
# ------------------------------------------------------------------------------------------
def _refine(args) -> int:
    from ffhq_tools import weights
    from ffhq_tools.runtime import select_device
    from models.destylize.refine import RefineSettings
    from models.destylize.refine_run import refine_set
    from models.dualstylegan_codes import read_codes
    from models.project.targets import collect_targets
    from models.project_cli import load_distance
    from models.stylize_cli import _load_model
    from models.vgg19 import load_vgg19

    if not args.exemplars:
        raise FfhqToolsError("no EXEMPLAR given (the style set the codes were made from)")
    if args.steps < 1:
        raise FfhqToolsError(f"--steps {args.steps}: need at least one step")
    device = select_device(args.device)
    net = _load_model(args.model, device)
    exstyle, instyle = read_codes(args.exstyle), read_codes(args.instyle)
    overrides = weights.parse_overrides(args.weights)
    used: dict[str, str] = {}
    distance = load_distance(args.distance, overrides, device, used)
    features = load_vgg19(overrides).to(device)
    settings = RefineSettings(steps=args.steps, colour_lr=args.lr_color,
                              structure_lr=args.lr_structure)
    out = _out_dir(args, f"refine-{Path(args.model).stem}")
    options = {"model": args.model, "exstyle": args.exstyle, "instyle": args.instyle,
               "distance": args.distance, "weights": dict(sorted(used.items())),
               "features": getattr(features, "provenance", {})}
    rows = refine_set(net, distance, features, collect_targets(
        list(args.exemplars), net.img_resolution, args.limit), exstyle, instyle, out,
        settings=settings, seed=args.seed, options=options, progress=not args.quiet)
    print(f"{len(rows)} extrinsic codes refined: {out / 'refined_exstyle_code.npy'} (+ .npz)")
    return 0


def add_refine_verb(verbs) -> None:
    from models.project_cli import DISTANCES

    p = verbs.add_parser(
        "refine-exstyle", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="DualStyleGAN's optional step: refine the extrinsic codes with the trained model")
    p.add_argument("exemplars", nargs="*", metavar="EXEMPLAR",
                   help="the aligned style set (as given to destylize)")
    p.add_argument("--model", required=True, help="the trained DualStyleGAN (.pt, ours)")
    p.add_argument("--exstyle", required=True, help="exstyle_code.npy / .npz (z+_e)")
    p.add_argument("--instyle", required=True, help="instyle_code.npy / .npz (z+_i)")
    p.add_argument("--out", default=None, help="output folder (rerun it to resume); default: "
                                               "a numbered folder under --root")
    p.add_argument("--root", default=DEFAULT_ROOT, help="where numbered output folders go")
    p.add_argument("--steps", type=int, default=100, help="optimisation steps per exemplar")
    p.add_argument("--lr-color", type=float, default=0.01, help="colour layers' Adam lr")
    p.add_argument("--lr-structure", type=float, default=0.005,
                   help="structure layers' Adam lr")
    p.add_argument("--distance", choices=DISTANCES, default="lpips-vgg",
                   help="perceptual distance (lpips-vgg as upstream)")
    add_weights_flag(p)
    p.add_argument("--seed", type=int, default=0, help="noise-map seed per exemplar")
    p.add_argument("--limit", type=int, default=None, help="only the first N exemplars")
    add_threads_flag(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_device_flag(p)
    p.set_defaults(func=_with_threads(_refine))


# ------------------------------------------------------------------------------------------
# train-sampler
# ------------------------------------------------------------------------------------------
def _train_sampler(args) -> int:
    from models.destylize.sampler_train import SamplerSettings, save_samplers, train_samplers
    from models.dualstylegan_codes import read_codes

    if args.epochs is not None and args.epochs < 1:
        raise FfhqToolsError(f"--epochs {args.epochs}: must be >= 1")
    codes = read_codes(args.codes)
    samplers, errors = train_samplers(codes, args.structure_layers,
                                      SamplerSettings(epochs=args.epochs), seed=args.seed,
                                      progress=not args.quiet)
    path = save_samplers(args.out, samplers, Path(args.codes).name)
    print(f"structure error {errors['structure'][-1]:.4f}, colour error "
          f"{errors['color'][-1]:.4f} -> {path}")
    return 0


def add_sampler_verb(verbs) -> None:
    p = verbs.add_parser(
        "train-sampler", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="train DualStyleGAN's structure and colour code samplers on a code file")
    p.add_argument("codes", help="refined_exstyle_code / exstyle_code (.npy or .npz)")
    p.add_argument("--out", required=True, help="sampler file to write (ours, weights-only)")
    p.add_argument("--structure-layers", type=int, default=7,
                   help="layers of the structure sampler (res_index + 1); the rest are colour")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per sampler (default: 500000 // augmented rows, as upstream)")
    p.add_argument("--seed", type=int, default=0, help="augmentation and training seed")
    add_threads_flag(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_with_threads(_train_sampler))

"""`ffhq-tools dualstylegan-train pretrain|finetune`: a thin wrapper over
`models.dualstylegan_train.train_dualstylegan` (torch is imported inside the handler)."""

from __future__ import annotations

import json

from ffhq_tools.runtime import add_device_flag
from models.identity_names import IDENTITIES, IDENTITY_WEIGHTS

FLAGS = {  # flag -> (option field, type, help)
    "--iters": ("iters", int, "iterations (pretrain 3000 in three stages: iters/10 at "
                              "injection 7, iters/10 at 6, iters at 5; finetune 1500)"),
    "--batch": ("batch", int, "total batch over ranks (pretrain 4, finetune 32)"),
    "--lr": ("lr", float, "Adam learning rate (0.002)"),
    "--r1-gamma": ("r1_gamma", float, "R1 weight (10)"),
    "--pl-weight": ("pl_weight", float, "path length weight (2)"),
    "--mixing": ("mixing", float, "style mixing probability (0.9)"),
    "--adv-weight": ("adv_weight", float, "adversarial weight (pretrain 0.1, finetune 1)"),
    "--style-weight": ("style_weight", float, "finetune: style (feature-mean) loss (0.25)"),
    "--cx-weight": ("cx_weight", float, "finetune: contextual loss (0.25)"),
    "--perc-weight": ("perc_weight", float, "finetune: perceptual loss, paired steps (1)"),
    "--id-weight": ("id_weight", float, "finetune: identity loss (1)"),
    "--l2-weight": ("l2_weight", float, "finetune: L2 of the res parameters (0.01; the "
                                        "official cartoon example uses 0.015)"),
    "--jitter": ("jitter", float, "finetune: std of the extrinsic code jitter (0.1)"),
    "--projection-steps": ("projection_steps", int, "pretrain: projection steps for the "
                                                    "extrinsic code of G(z2) (20)"),
    "--loss-res": ("loss_resolution", int, "images are pooled to this size for the losses "
                                           "(256)"),
    "--snap": ("snap", int, "iterations between snapshots (pretrain 3000, finetune 100)"),
    "--snap-begin": ("snap_begin", int, "first iteration with snapshots (finetune 1000)"),
    "--log-every": ("log_every", int, "iterations per stats.jsonl row (10)"),
    "--seed": ("seed", int, "seed (0)"),
    "--threads": ("threads", int, "CPU threads per rank"),
}


WEIGHT_ENTRIES = ("vgg19", *IDENTITY_WEIGHTS.values())


def _weights_file(args, name: str, default: str | None) -> str | None:
    """The file `--weights NAME=PATH` gives for a registry entry (else `default`)."""
    from ffhq_tools.errors import FfhqToolsError
    from ffhq_tools.weights import parse_overrides

    overrides = parse_overrides(args.weights)
    unknown = sorted(set(overrides) - set(WEIGHT_ENTRIES))
    if unknown:
        raise FfhqToolsError(f"--weights {unknown[0]}=...: dualstylegan-train uses "
                             f"{', '.join(WEIGHT_ENTRIES)}")
    return str(overrides[name]) if name in overrides else default


def _options(args):
    from models.dualstylegan_train_options import DualStyleGANTrainOptions

    values = {field: getattr(args, field) for field, _, _ in FLAGS.values()
              if getattr(args, field) is not None}
    return DualStyleGANTrainOptions(
        args.stage, base=args.base, data=args.data, exstyle=args.exstyle,
        instyle=args.instyle, outdir=args.outdir, resume=args.resume,
        code_source=args.code_source, encoder=args.encoder, identity=args.identity,
        noise_mode=args.noise_mode,
        vgg_weights=_weights_file(args, "vgg19", args.vgg_weights),
        identity_weights=_weights_file(args, IDENTITY_WEIGHTS.get(args.identity), None),
        device=args.device, progress=not args.no_progress, **values)


def _train(args) -> int:
    from models.dualstylegan_train import describe_run, train_dualstylegan

    options = _options(args)
    if args.dry_run:
        print(json.dumps(describe_run(options), indent=2, sort_keys=True))
        return 0
    print(train_dualstylegan(options))
    return 0


def add_verbs(verbs) -> None:
    p = verbs.add_parser(
        "dualstylegan-train", help="DualStyleGAN pretraining on faces / fine-tuning on a style "
        "set (the official recipe)")
    p.add_argument("stage", choices=("pretrain", "finetune"))
    p.add_argument("--base", help="pretrain: StyleGAN2 FFHQ checkpoint (ours or imported); "
                                  "finetune: a pretrain snapshot")
    p.add_argument("--data", help="pretrain: face .h5; finetune: the style set .h5")
    p.add_argument("--exstyle", help="finetune: extrinsic codes (exstyle_code.npy or .npz)")
    p.add_argument("--instyle", help="finetune: intrinsic codes (instyle_code.npy or .npz)")
    p.add_argument("--outdir", default="runs")
    p.add_argument("--resume", help="a run folder: continue exactly from its newest snapshot")
    p.add_argument("--code-source", default="projection", choices=("projection", "encoder"),
                   help="pretrain: how the extrinsic code of G(z2) is made every 4th step "
                        "(a short W+ projection, or the pSp z+ --encoder as upstream)")
    p.add_argument("--encoder", help="pretrain with --code-source encoder: DualStyleGAN's pSp "
                                     "checkpoint (encoder.pt, z+ codes)")
    p.add_argument("--identity", default="none", choices=IDENTITIES,
                   help="finetune: identity network, arcface (IR-SE50) or dlib (dlib's face "
                        "ResNet, offline); recorded in options.json")
    p.add_argument("--noise-mode", default="random", choices=("random", "const"),
                   help="the generators' per-layer noise inputs while training (official: "
                        "random)")
    p.add_argument("--vgg-weights", help="a torchvision VGG19 state dict instead of the "
                                         "registry's vgg19 entry")
    p.add_argument("--weights", action="append", metavar="NAME=PATH",
                   help="use this file for a registry entry: "
                        f"{', '.join(WEIGHT_ENTRIES)} (repeatable)")
    for flag, (field, kind, text) in FLAGS.items():
        p.add_argument(flag, dest=field, type=kind, help=text)
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar on stderr")
    p.add_argument("--dry-run", action="store_true", help="print resolved options and exit")
    add_device_flag(p)
    p.set_defaults(func=_train)

"""`ffhq-tools classifiers train --data CELEBAHQ.h5 --out DIR`: attribute classifiers for `ls`."""

from __future__ import annotations

import argparse


def _train(args) -> int:
    from eval import classifiers
    from ffhq_tools.runtime import select_device

    device = select_device(args.device)
    attributes = classifiers.parse_attributes(args.attributes)
    opts = classifiers.TrainOptions(
        resolution=args.resolution, steps=args.steps, batch_size=args.batch, lr=args.lr,
        holdout=args.holdout, fmap_base=args.fmap_base, fmap_max=args.fmap_max, seed=args.seed,
        device=str(device))
    report = classifiers.train_classifiers(args.data, args.out, attributes, opts,
                                           progress=not args.quiet)
    for name, metrics in report.items():
        print(f"{name:22s} held-out accuracy {metrics['accuracy']:.4f} "
              f"(majority {metrics['majority_baseline']:.4f}, n={metrics['num_heldout']})"
              + (" [resumed]" if metrics.get("resumed") else ""))
    print(f"report: {args.out}/report.json")
    print("use them with: ffhq-tools metrics ... --metrics ls "
          + classifiers.weights_flags(args.out, attributes))
    return 0


def add_verbs(verbs) -> None:
    from ffhq_tools.runtime import add_device_flag

    parser = verbs.add_parser("classifiers", help="train CelebA-HQ attribute classifiers for "
                              "linear separability")
    sub = parser.add_subparsers(dest="classifiers_verb", metavar="ACTION")
    sub.required = True
    p = sub.add_parser(
        "train", help="train one classifier per attribute from an HDF5 'attributes' dataset",
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, metavar="H5",
                   help="HDF5 with data{R}x{R} images and attributes (N, 40), CelebA-HQ order")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the classifiers")
    p.add_argument("--attributes", default="all",
                   help="'all' or a comma list of names/indices (e.g. male,smiling)")
    p.add_argument("--resolution", type=int, default=256, help="input resolution (HDF5 level)")
    p.add_argument("--steps", type=int, default=20_000, help="optimizer steps per attribute")
    p.add_argument("--batch", type=int, default=32, help="minibatch (multiple of 4)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--holdout", type=float, default=0.1, help="share of images held out")
    p.add_argument("--fmap-base", type=int, default=8192)
    p.add_argument("--fmap-max", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device_flag(p)
    p.set_defaults(func=_train)

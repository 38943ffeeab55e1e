"""Train a named config on an HDF5 dataset: the Python API behind `ffhq-tools train`.

    from models.train import TrainOptions, train
    run_dir = train(TrainOptions(config="stylegan2-F", data="ffhq.h5", kimg=25000, batch=32))

Under torchrun every rank calls `train` with the same options; rank 0 writes the run folder.
Resume: `resume` is a snapshot file (a new run folder continues from it), a run folder
(training continues in it from its newest snapshot) or "auto" (the newest run folder of the
same data and config in `outdir`, or a fresh run when there is none).

Transfer learning: `resume` a checkpoint without training state (an official checkpoint
converted by `ffhq-tools import-checkpoint`) and a new run starts from its networks at kimg 0
on `data` (same resolution), with fresh optimisers, p and counters (stylegan2-ada's
`--resume`); `--config` may then pick the hyperparameters (the networks must match), and
`--freezed N` keeps D's first N layers fixed.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ffhq_tools.errors import FfhqToolsError
from ffhq_tools.runs import SNAPSHOT_GLOB, newest_snapshot
from models.train_compile import check_compilable
from models.train_options import TrainingPlan, TrainOptions, apply_overrides, resolve_plan

__all__ = ["TrainOptions", "TrainingPlan", "resolve_run", "train", "find_snapshot"]

FP16_CONV_CLAMP = 256.0


@dataclass
class ResolvedRun:
    options: TrainOptions
    config: object  # ModelConfig
    plan: TrainingPlan
    dataset: object
    img_channels: int
    c_dim: int
    resume_snapshot: Path | None
    continue_dir: Path | None
    augment: object = None  # AugmentSettings
    transfer: bool = False  # resume_snapshot only provides the networks' weights

    def describe(self) -> dict:
        return {"options": self.options.to_dict(), "plan": self.plan.to_dict(),
                "model": self.config.to_dict(), "dataset_size": len(self.dataset),
                "img_channels": self.img_channels, "c_dim": self.c_dim,
                "augment": dataclasses.asdict(self.augment) if self.augment else None,
                "transfer": self.transfer,
                "resume_snapshot": str(self.resume_snapshot) if self.resume_snapshot else None}


def find_snapshot(resume: str | Path) -> tuple[Path, Path | None]:
    """(snapshot file, run folder to continue in or None) for `--resume`."""
    path = Path(resume)
    if path.is_dir():
        snapshot = newest_snapshot(path)
        if snapshot is None:
            raise FfhqToolsError(f"--resume {path}: the folder holds no {SNAPSHOT_GLOB}")
        return snapshot, path
    if path.is_file():
        return path, None
    raise FfhqToolsError(f"--resume {path}: no such snapshot file or run folder")


def run_desc(data: str | Path, config: str) -> str:
    from ffhq_tools.runs import sanitize_desc

    return sanitize_desc(f"{Path(data).stem}-{config}")


def latest_run(outdir: str | Path, desc: str) -> Path | None:
    """Newest `outdir/NNNNN-desc` folder holding a snapshot (for `--resume auto`)."""
    from ffhq_tools.runs import RUN_NAME

    outdir = Path(outdir)
    if not outdir.is_dir():
        return None
    runs = [p for p in outdir.iterdir() if p.is_dir() and RUN_NAME.match(p.name)
            and p.name.split("-", 1)[1] == desc and newest_snapshot(p) is not None]
    return max(runs, key=lambda p: int(RUN_NAME.match(p.name).group(1)), default=None)


def _auto_resume(options: TrainOptions) -> TrainOptions:
    """`--resume auto`: continue the newest run of this data + config, else start afresh."""
    if options.resume != "auto":
        return options
    if not options.config:
        raise FfhqToolsError("--resume auto needs --config (to find the run to continue)")
    found = latest_run(options.outdir, run_desc(options.data, options.config))
    return _with(options, resume=str(found) if found else None)


def _snapshot_config(path: Path) -> tuple[dict, dict]:
    """(the JSON config, the training state) stored in a snapshot; no networks are built.
    The training state is empty for imported official checkpoints."""
    import json

    import torch

    from models.checkpoint import CheckpointError

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        return json.loads(payload["config_json"]), dict(payload.get("training_state") or {})
    except Exception as exc:
        raise CheckpointError(f"--resume {path}: not an ffhq-tools snapshot ({exc})") from None


def _continued_config(options: TrainOptions, stored: dict, snapshot: Path, state: dict):
    """(options, config) of a run that continues a snapshot's training exactly."""
    from models.configs import ModelConfig

    config = ModelConfig.from_dict(stored["model"])
    if options.config and options.config != config.name:
        raise FfhqToolsError(f"--config {options.config}: the snapshot {snapshot} was "
                             f"trained with {config.name}; add --transfer to start a new run "
                             "from its weights")
    if options.config_overrides:
        raise FfhqToolsError("--cfg cannot change the config of a resumed run (the "
                             "snapshot's config is used as stored)")
    stored_aug = (state.get("augment") or {}).get("settings", {}).get("mode", "noaug")
    if stored_aug != options.aug:
        raise FfhqToolsError(f"--aug {options.aug}: the snapshot {snapshot} was trained with "
                             f"--aug {stored_aug} (pass the same augmentation to continue)")
    options = _with(options, config=config.name, resolution=int(stored["resolution"]),
                    channel_max=stored.get("channel_max"),
                    cond=int(stored.get("c_dim", 0)) > 0)
    return options, config


def _transfer_config(options: TrainOptions, stored: dict):
    """(options, config) of a new run starting from a checkpoint's weights."""
    from models.configs import ModelConfig, get_config

    if options.config:
        config = apply_overrides(get_config(options.config), options.config_overrides)
    else:
        config = apply_overrides(ModelConfig.from_dict(stored["model"]),
                                 options.config_overrides)
    channel_max = options.channel_max if options.channel_max is not None \
        else stored.get("channel_max")
    return _with(options, resolution=int(stored["resolution"]), channel_max=channel_max), config


def resolve_run(options: TrainOptions) -> ResolvedRun:
    """Everything `--dry-run` prints: options, config, plan, dataset size."""
    from models.configs import get_config, resolve_auto_config
    from models.train_data import open_training_set
    from models.train_options import augment_settings

    options = _auto_resume(options)
    snapshot, continue_dir = find_snapshot(options.resume) if options.resume else (None, None)
    transfer = False
    if snapshot is not None:
        stored, state = _snapshot_config(snapshot)
        if options.resolution and options.resolution != stored["resolution"]:
            raise FfhqToolsError(f"--res {options.resolution}: the snapshot is at "
                                 f"{stored['resolution']}px")
        if options.transfer and continue_dir is not None:
            raise FfhqToolsError(f"--transfer --resume {continue_dir}: a run folder continues "
                                 "its own run; name a snapshot file to start a new run from "
                                 "its weights")
        transfer = options.transfer or not state
        if transfer and continue_dir is not None:
            raise FfhqToolsError(f"--resume {continue_dir}: its newest snapshot {snapshot.name} "
                                 "holds no training state")
        if transfer:
            options, config = _transfer_config(options, stored)
        else:
            options, config = _continued_config(options, stored, snapshot, state)
    elif not options.config:
        raise FfhqToolsError("--config is required (or --resume a snapshot)")
    else:
        config = apply_overrides(get_config(options.config), options.config_overrides)
    if config.arch == "dualstylegan":
        raise FfhqToolsError(f"config {config.name}: DualStyleGAN trains with its own recipe: "
                             "ffhq-tools dualstylegan-train pretrain|finetune")
    if options.precision == "fp16" and config.conv_clamp is None and (transfer or not snapshot):
        # fp16 activations overflow without clamping; 256 is the stylegan2-ada value.
        config = config.replace(conv_clamp=FP16_CONV_CLAMP)
    if options.kimg is None:
        options = _with(options, kimg=float(config.total_kimg))
    if options.kimg <= 0:
        raise FfhqToolsError(f"--kimg {options.kimg}: must be positive")
    dataset = open_training_set(options.data, options.resolution, options.max_images,
                                labels=options.cond)
    resolution = int(dataset.resolution)
    if snapshot is None or transfer:  # a continued run keeps the config it resolved
        config = resolve_auto_config(config, resolution, int(os.environ.get("WORLD_SIZE", "1")))
    first = dataset[0]
    img_channels = int((first[0] if options.cond else first).shape[0])
    c_dim = int(first[1].numel()) if options.cond else 0
    if options.cond and c_dim == 0:
        raise FfhqToolsError(f"--cond: the labels of {options.data} are empty")
    plan = resolve_plan(config, options, resolution)
    if transfer:
        plan = dataclasses.replace(plan, ema_rampup=None)  # as stylegan2-ada on --resume
    if options.freezed < 0:
        raise FfhqToolsError(f"--freezed {options.freezed}: must be non-negative")
    if options.compile:
        check_compilable(plan.progressive)  # before any data is read or network built
    augment = augment_settings(options, transfer)
    return ResolvedRun(options, config, plan, dataset, img_channels, c_dim, snapshot,
                       continue_dir, augment, transfer)


def dry_run_description(run: ResolvedRun) -> dict:
    """What `--dry-run` prints: the resolved run plus where and on what it would run."""
    from ffhq_tools.runs import next_run_dir
    from ffhq_tools.runtime import default_threads, select_device

    folder = run.continue_dir or next_run_dir(run.options.outdir,
                                              run_desc(run.options.data, run.config.name))
    return {**run.describe(), "resolved": {
        "device": str(select_device(run.options.device)),
        "threads": run.options.threads or default_threads(),
        "run_dir": str(folder), "continues_run": run.continue_dir is not None}}


def _with(options: TrainOptions, **changes) -> TrainOptions:
    return dataclasses.replace(options, **changes)


def _run_folder(run: ResolvedRun, env) -> Path:
    """Rank 0 creates (or reuses, when continuing) the run folder; every rank learns its name."""
    from ffhq_tools.runs import create_run_dir, write_options

    folder = None
    if env.is_main:
        if run.continue_dir is not None:
            folder = run.continue_dir
        else:
            folder = create_run_dir(run.options.outdir,
                                    run_desc(run.options.data, run.config.name))
            write_options(folder, {**run.describe(), "world_size": env.world_size})
    if env.distributed:
        import torch.distributed as dist

        box = [str(folder) if folder else None]
        dist.broadcast_object_list(box, src=0)
        folder = Path(box[0])
    return Path(folder)


def _check_mbstd_groups(trainer, group: int) -> None:
    """D's minibatch-stddev groups must tile every per-rank batch the schedule will use."""
    from models.train_data import step_layout

    plan, world = trainer.plan, trainer.env.world_size
    for batch in sorted({plan.batch, *plan.minibatch_per_res.values()}):
        per_rank = step_layout(batch, plan.batch_gpu or batch // world, world).batch_gpu
        g = min(group, per_rank) if group else per_rank
        if per_rank % g:
            raise FfhqToolsError(f"--batch-gpu {per_rank}: not divisible by the discriminator's "
                                 f"minibatch-stddev group {g} (mbstd_group)")


def train(options: TrainOptions,
          metric_fn: Callable[[list, Path, object], dict] | None = None) -> Path:
    """Run training; returns the run folder. `metric_fn(names, snapshot_path, G_ema)` returns
    {metric name: JSON row} and is called at every snapshot when `options.metrics` is set."""

    from ffhq_tools.runtime import select_device, using_threads
    from models.distributed import init_distributed, shutdown

    env = init_distributed(select_device(options.device))
    try:
        with using_threads(options.threads):
            return _train(options, env, metric_fn)
    finally:
        shutdown(env)


def _train(options: TrainOptions, env, metric_fn) -> Path:
    import contextlib

    from ffhq_tools.runs import capture_log
    from ffhq_tools.runtime import seed_everything
    from models.checkpoint import load_checkpoint
    from models.configs import build_networks
    from models.train_data import dataset_labels
    from models.train_loop import LoopSettings, Trainer

    seed_everything(options.seed, env.rank)
    run = resolve_run(options)
    opts, plan = run.options, run.plan
    G, D = build_networks(run.config, plan.resolution, c_dim=run.c_dim,
                          img_channels=run.img_channels, channel_max=opts.channel_max)
    settings = LoopSettings(
        total_kimg=opts.kimg, tick_kimg=opts.tick_kimg, snap=opts.snap, seed=opts.seed,
        mirror=opts.mirror, precision=opts.precision, channels_last=opts.channels_last,
        compile=opts.compile, workers=opts.workers, metrics=tuple(opts.metrics),
        grid_size=opts.grid_size,
        progress=opts.progress and env.is_main, augment=run.augment, freeze_d=opts.freezed,
        checkpoint_config={"model": run.config.to_dict(), "resolution": plan.resolution,
                           "c_dim": run.c_dim, "img_channels": run.img_channels,
                           "channel_max": opts.channel_max,
                           "training_options": opts.to_dict()})
    labels = dataset_labels(run.dataset) if run.c_dim else None
    trainer = Trainer(G, D, plan, run.dataset, env, None, settings, metric_fn, labels)
    _check_mbstd_groups(trainer, int(run.config.mbstd_group or 0))
    folder = _run_folder(run, env)
    trainer.run_dir = folder if env.is_main else None
    copied = None
    if run.resume_snapshot is not None:
        ckpt = load_checkpoint(run.resume_snapshot, device=env.device)
        if run.transfer:
            copied = trainer.load_weights(ckpt.G, ckpt.D, ckpt.G_ema)
        else:
            trainer.load_state(ckpt.G, ckpt.D, ckpt.G_ema, ckpt.optimizer_states,
                               ckpt.training_state)
    log = capture_log(folder) if env.is_main else contextlib.nullcontext()
    with log:
        if env.is_main:
            from models.train_banner import banner

            print(banner(run, trainer, folder, copied), flush=True)
        trainer.run()
    return folder

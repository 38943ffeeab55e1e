"""DualStyleGAN pretraining and progressive fine-tuning: the Python API behind
`ffhq-tools dualstylegan-train pretrain|finetune`.

    from models.dualstylegan_train import DualStyleGANTrainOptions, train_dualstylegan
    run = train_dualstylegan(DualStyleGANTrainOptions(
        "pretrain", base="ffhq-stylegan2.pt", data="ffhq.h5"))
    run = train_dualstylegan(DualStyleGANTrainOptions(
        "finetune", base=str(run / "network-snapshot-003600.pt"), data="cartoon.h5",
        exstyle="exstyle_code.npy", instyle="instyle_code.npy"))

A run writes `outdir/NNNNN-<data>-dualstylegan-<stage>/` with the frozen `options.json`,
`log.txt`, `stats.jsonl` (loss means every `log_every` iterations) and
`network-snapshot-<iteration>.pt` snapshots in our checkpoint format (G, D, G_ema, optimiser
states, RNG states), which `stylize` loads as they are. `resume` a run folder to continue it
exactly from its newest snapshot. Under torchrun every rank calls this with the same options.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import torch

from ffhq_tools.runs import SNAPSHOT_GLOB, newest_snapshot
from models.dualstylegan_train_options import (
    DualStyleGANTrainError,
    DualStyleGANTrainOptions,
    pretrain_stages,
    stage_at,
    total_steps,
)

__all__ = ["DualStyleGANTrainOptions", "train_dualstylegan", "describe_run"]


def snapshot_name(iteration: int) -> str:
    return f"network-snapshot-{iteration:06d}.pt"


def _newest_snapshot(folder: Path) -> Path:
    snapshot = newest_snapshot(folder)
    if snapshot is None:
        raise DualStyleGANTrainError(f"--resume {folder}: the folder holds no {SNAPSHOT_GLOB}")
    return snapshot


def _resumed_options(options: DualStyleGANTrainOptions) -> DualStyleGANTrainOptions:
    """The run folder's frozen options (device, threads and progress may change)."""
    from ffhq_tools.runs import read_options

    folder = Path(options.resume)
    if not folder.is_dir():
        raise DualStyleGANTrainError(f"--resume {folder}: not a run folder")
    frozen = read_options(folder).get("options")
    if not isinstance(frozen, dict):
        raise DualStyleGANTrainError(f"--resume {folder}: options.json holds no DualStyleGAN "
                                     "training options")
    stored = DualStyleGANTrainOptions.from_dict(frozen)
    if stored.stage != options.stage:
        raise DualStyleGANTrainError(f"--resume {folder}: a {stored.stage} run, not "
                                     f"{options.stage}")
    return DualStyleGANTrainOptions.from_dict({
        **frozen, "resume": str(folder), "device": options.device, "threads": options.threads,
        "progress": options.progress})


# ------------------------------------------------------------------------------------------
# Base networks
# ------------------------------------------------------------------------------------------
def _load_base(options: DualStyleGANTrainOptions, device):
    """(net, G_ema, D, model config dict, checkpoint config, optimiser states)."""
    from models.checkpoint import load_checkpoint
    from models.dualstylegan import DualStyleGAN

    if not options.base:
        raise DualStyleGANTrainError(f"{options.stage} needs --base (a "
                                     + ("StyleGAN2 FFHQ checkpoint)" if options.stage ==
                                        "pretrain" else "pretrained DualStyleGAN snapshot)"))
    ckpt = load_checkpoint(options.base, device)
    arch = ckpt.config["model"].get("arch")
    if ckpt.D is None:
        raise DualStyleGANTrainError(f"--base {options.base}: holds no discriminator (training "
                                     "continues the base checkpoint's D)")
    if options.stage == "pretrain":
        return _pretrain_base(options, ckpt, arch)
    if arch != "dualstylegan" or not isinstance(ckpt.G, DualStyleGAN):
        raise DualStyleGANTrainError(f"--base {options.base}: a {arch} checkpoint; finetune "
                                     "starts from a pretrained DualStyleGAN (dualstylegan-train "
                                     "pretrain, or the official generator-pretrain.pt imported)")
    G_ema = ckpt.G_ema if ckpt.G_ema is not None else copy.deepcopy(ckpt.G)
    return ckpt.G, G_ema, ckpt.D, ckpt.config, ckpt.optimizer_states


def _pretrain_base(options, ckpt, arch):
    from models.configs import ModelConfig
    from models.dualstylegan import OFFICIAL_MAPPING_LAYERS, DualStyleGAN, check_base_generator

    base = ckpt.G_ema if ckpt.G_ema is not None else ckpt.G
    try:
        if arch != "stylegan2":
            raise ValueError(f"a {arch} checkpoint")
        check_base_generator(base)
    except ValueError as exc:
        raise DualStyleGANTrainError(f"--base {options.base}: pretraining starts from a "
                                     f"StyleGAN2 checkpoint ({exc})") from None
    model = ModelConfig.from_dict(ckpt.config["model"])
    layers = model.mapping_layers - OFFICIAL_MAPPING_LAYERS
    if layers < 0:
        raise DualStyleGANTrainError(f"--base {options.base}: its mapping network has "
                                     f"{model.mapping_layers} layers; DualStyleGAN's T_s has "
                                     "mapping_layers - 6 (8 in the official FFHQ model)")
    torch.manual_seed(options.seed)
    net = DualStyleGAN(copy.deepcopy(base), structure_layers=layers).to(base.mapping.w_avg.device)
    config = dict(ckpt.config)
    config["model"] = model.replace(arch="dualstylegan", name=f"dualstylegan-{model.name}",
                                    base=model.name).to_dict()
    config.pop("training_options", None)
    return net, copy.deepcopy(net), ckpt.D, config, {}


# ------------------------------------------------------------------------------------------
# Set-up
# ------------------------------------------------------------------------------------------
class _Reals:
    """Real images of step s on this rank: an epoch-shuffled, mirrored stream (seeded)."""

    def __init__(self, images_at, count: int, options, env, per_rank: int):
        from models.train_data import ItemStream

        self.images_at, self.env, self.per_rank = images_at, env, per_rank
        self.batch = per_rank * env.world_size
        self.stream = ItemStream(count, options.seed, options.mirror)

    def __call__(self, step: int) -> torch.Tensor:
        from models.train_data import prepare_reals

        start = step * self.batch + self.env.rank * self.per_rank
        indices, flips = self.stream.items(list(range(start, start + self.per_rank)))
        return prepare_reals(self.images_at(indices), flips, self.env.device)


def _face_reals(options, resolution: int, env, per_rank: int) -> _Reals:
    from models.train_data import open_training_set

    dataset = open_training_set(options.data, resolution)  # the level at G's resolution
    return _Reals(lambda idx: torch.stack([dataset[i] for i in idx]), len(dataset), options,
                  env, per_rank)


def _adam(params, options, interval: int) -> torch.optim.Adam:
    from models.schedule import lazy_adam

    lr, betas = lazy_adam(options.lr, (0.0, 0.99), interval)
    return torch.optim.Adam(list(params), lr=lr, betas=betas)


def _per_rank(options, env) -> int:
    if options.batch % env.world_size:
        raise DualStyleGANTrainError(f"--batch {options.batch}: not divisible by the "
                                     f"{env.world_size} ranks")
    return options.batch // env.world_size


def _code_source(options, net, vgg, device):
    """The --code-source of pretraining: a short projection, or the pSp encoder (z+)."""
    from models.dualstylegan_sources import EncoderCodeSource, ProjectionEncoder

    if options.code_source == "encoder":
        from models.psp_encoder import load_psp_encoder

        return EncoderCodeSource(load_psp_encoder(options.encoder, device=device), net)
    return ProjectionEncoder(net.generator, vgg, options.projection_steps,
                             options.projection_lr, options.loss_resolution)


def build_context(options, env, *, vgg=None, encoder=None, identity=None):
    """(StepContext, checkpoint config, base optimiser states, what was used)."""
    from models.dualstylegan_sources import (
        check_encoder,
        check_identity,
        describe_source,
        load_style_set,
    )
    from models.dualstylegan_steps import StepContext
    from models.vgg19 import load_vgg19

    net, G_ema, D, config, optim_states = _load_base(options, env.device)
    for module in (net, G_ema, D):
        module.to(env.device).requires_grad_(False)
    net.res.requires_grad_(True)
    net.style.requires_grad_(True)
    vgg = vgg if vgg is not None else load_vgg19(
        {"vgg19": Path(options.vgg_weights)} if options.vgg_weights else None)
    vgg = vgg.to(env.device)
    per_rank = _per_rank(options, env)
    resolution = net.img_resolution
    used = {"vgg19": dict(getattr(vgg, "provenance", {"kind": type(vgg).__name__}))}
    style = reals = None
    if options.stage == "pretrain":
        encoder = encoder or _code_source(options, net, vgg, env.device)
        check_encoder(encoder)
        used["extrinsic_code_source"] = describe_source(encoder)
        reals = _face_reals(options, resolution, env, per_rank)
    else:
        check_identity(identity)
        used["identity"] = describe_source(identity) if identity is not None else "none"
        style = load_style_set(options.data, options.exstyle, options.instyle, net, env.device)
        reals = _Reals(lambda idx: style.images[list(idx)], len(style), options, env, per_rank)
        used["style_set"] = {"images": len(style), "resolution": resolution}
    ctx = StepContext(
        net=net, G_ema=G_ema, D=D, vgg=vgg, options=options, env=env, per_rank=per_rank,
        g_opt=_adam([*net.res.parameters(), *net.style.parameters()], options,
                    options.pl_interval),
        d_opt=_adam(D.parameters(), options, options.r1_interval),
        encoder=encoder, identity=identity, style=style, reals_fn=reals)
    return ctx, config, optim_states, used


# ------------------------------------------------------------------------------------------
# State
# ------------------------------------------------------------------------------------------
def save_snapshot(ctx, folder: Path, step: int, config: dict, rng_states: list) -> Path:
    from models.checkpoint import save_checkpoint

    state = {"stage": ctx.options.stage, "iteration": step, "pl_mean": ctx.pl_mean.cpu(),
             "rng": rng_states, "world_size": ctx.env.world_size}
    return save_checkpoint(folder / snapshot_name(step), config=config, G=ctx.net, D=ctx.D,
                           G_ema=ctx.G_ema,
                           optimizers={"G": ctx.g_opt.state_dict(), "D": ctx.d_opt.state_dict()},
                           training_state={"dualstylegan": state})


def restore_snapshot(ctx, path: Path) -> int:
    """Load a run's snapshot into the context; returns the iteration to continue from."""
    from models.checkpoint import load_checkpoint
    from models.train_state import restore_rank_rng

    ckpt = load_checkpoint(path, ctx.env.device)
    state = ckpt.training_state.get("dualstylegan")
    if not state:
        raise DualStyleGANTrainError(f"--resume: {path} holds no DualStyleGAN training state")
    ctx.net.load_state_dict(ckpt.G.state_dict())
    ctx.D.load_state_dict(ckpt.D.state_dict())
    ctx.G_ema.load_state_dict(ckpt.G_ema.state_dict())
    ctx.g_opt.load_state_dict(ckpt.optimizer_states["G"])
    ctx.d_opt.load_state_dict(ckpt.optimizer_states["D"])
    ctx.pl_mean = state["pl_mean"].to(ctx.env.device)
    restore_rank_rng(state["rng"], ctx.env)
    return int(state["iteration"])


def _load_base_optimisers(ctx, states: dict) -> bool:
    """The official fine-tuning continues the pretraining's Adam states when present."""
    if ctx.options.stage != "finetune" or not {"G", "D"} <= set(states):
        return False
    ctx.g_opt.load_state_dict(states["G"])
    ctx.d_opt.load_state_dict(states["D"])
    return True


# ------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------
def describe_run(options: DualStyleGANTrainOptions) -> dict:
    """What `--dry-run` prints: resolved options and the iteration plan (nothing is built)."""
    options = _prepared(options)
    plan = {"total_iterations": total_steps(options), "batch": options.batch}
    if options.stage == "pretrain":
        plan["stages"] = [{"injection_index": i, "iterations": n}
                          for i, n in pretrain_stages(options.iters)]
    else:
        plan["paired_every"] = options.paired_every
    return {"options": options.to_dict(), "plan": plan}


def _prepared(options: DualStyleGANTrainOptions) -> DualStyleGANTrainOptions:
    if options.resume:
        options = _resumed_options(options)
    options = options.resolved()
    if not options.data:
        raise DualStyleGANTrainError(f"{options.stage} needs --data (an .h5 file)")
    return options


def train_dualstylegan(options: DualStyleGANTrainOptions, *, vgg=None, encoder=None,
                       identity=None) -> Path:
    """Run a stage; returns the run folder. `vgg`, `encoder` (pretrain: extrinsic codes of
    G(z2)) and `identity` (finetune: `embed(images) -> unit vectors`) replace the defaults
    (registry VGG19, projection, the --identity choice)."""
    from ffhq_tools.runtime import seed_everything, select_device, using_threads
    from models.distributed import init_distributed, shutdown
    from models.dualstylegan_sources import load_identity

    options = _prepared(options)
    env = init_distributed(select_device(options.device))
    try:
        with using_threads(options.threads):
            seed_everything(options.seed, env.rank)
            if identity is None and options.stage == "finetune":
                identity = load_identity(options.identity, options.identity_weights,
                                         env.device)
            ctx, config, optim_states, used = build_context(
                options, env, vgg=vgg, encoder=encoder, identity=identity)
            return _run(ctx, config, optim_states, used)
    finally:
        shutdown(env)


def _run_folder(ctx, used: dict) -> Path:
    from ffhq_tools.runs import create_run_dir, write_options
    from models.train import run_desc

    options, env = ctx.options, ctx.env
    folder = None
    if env.is_main:
        if options.resume:
            folder = Path(options.resume)
        else:
            folder = create_run_dir(options.outdir, run_desc(options.data,
                                                             f"dualstylegan-{options.stage}"))
            write_options(folder, {**describe_run(options), "used": used,
                                   "world_size": env.world_size})
    if env.distributed:
        import torch.distributed as dist

        box = [str(folder) if folder else None]
        dist.broadcast_object_list(box, src=0)
        folder = box[0]
    return Path(folder)


def _run(ctx, config: dict, optim_states: dict, used: dict) -> Path:
    import contextlib

    from ffhq_tools.runs import capture_log
    from models.dualstylegan_steps import finetune_step, pretrain_step

    options, env = ctx.options, ctx.env
    if not options.resume:
        used["base_optimiser_states"] = _load_base_optimisers(ctx, optim_states)
    folder = _run_folder(ctx, used)
    start = 0
    if options.resume:
        start = restore_snapshot(ctx, _newest_snapshot(folder))
        if env.is_main:
            _drop_rows_after(folder / "stats.jsonl", start)
    config = {**config, "dualstylegan_training": options.to_dict()}
    log = capture_log(folder) if env.is_main else contextlib.nullcontext()
    total = total_steps(options)
    with log:
        if env.is_main:
            print(json.dumps({"run": str(folder), "start_iteration": start, **used}), flush=True)
        tracker = _StatsTracker(folder if env.is_main else None, env, options.log_every)
        for step in _progress(range(start, total), total, start, options, env):
            number, local, inject = stage_at(options, step)
            if options.stage == "pretrain":
                stats = pretrain_step(ctx, step, local, inject)
                stats["Progress/injection_index"] = torch.tensor(float(inject))
            else:
                stats = finetune_step(ctx, step)
            tracker.add(step, stats)
            done = step + 1
            if done == total or (done >= options.snap_begin and done % options.snap == 0):
                _snapshot(ctx, folder, done, config)
    return folder


def _drop_rows_after(stats: Path, iteration: int) -> None:
    """Rows a killed run wrote after its last snapshot are written again when it resumes."""
    if not stats.is_file():
        return
    rows = [line for line in stats.read_text().splitlines()
            if line.strip() and json.loads(line)["iteration"] <= iteration]
    stats.write_text("".join(row + "\n" for row in rows))


def _snapshot(ctx, folder: Path, iteration: int, config: dict) -> None:
    from models.distributed import barrier
    from models.train_state import gather_rng

    rng = gather_rng(ctx.env)
    if ctx.env.is_main:
        save_snapshot(ctx, folder, iteration, config, rng)
    barrier(ctx.env)


def _progress(steps, total: int, start: int, options, env):
    if not (options.progress and env.is_main):
        return steps
    from tqdm import tqdm

    return tqdm(steps, total=total, initial=start, desc=f"dualstylegan {options.stage}",
                unit="it", dynamic_ncols=True)


class _StatsTracker:
    """Loss means over every `every` iterations -> one stats.jsonl row (means over ranks)."""

    def __init__(self, folder: Path | None, env, every: int):
        self.folder, self.env, self.every = folder, env, every
        self.values: dict[str, list[float]] = {}
        self.started = time.perf_counter()

    def add(self, step: int, stats: dict) -> None:
        from models.distributed import mean_over_ranks

        names = sorted(stats)
        reduced = mean_over_ranks(torch.stack([stats[n].detach().float().reshape(())
                                               for n in names]), self.env)
        for name, value in zip(names, reduced.tolist(), strict=True):
            self.values.setdefault(name, []).append(value)
        if (step + 1) % self.every == 0:
            self._write(step + 1)

    def _write(self, iteration: int) -> None:
        seconds = time.perf_counter() - self.started
        row = {"iteration": iteration, "sec_per_iter": seconds / self.every,
               **{k: sum(v) / len(v) for k, v in self.values.items()}}
        self.values, self.started = {}, time.perf_counter()
        if self.folder is not None:
            with open(self.folder / "stats.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")

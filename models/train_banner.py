"""The start-up banner of a training run: where it writes, what it runs on and with what."""

from __future__ import annotations

from pathlib import Path


def parameter_count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _augment_line(run, trainer) -> str:
    aug = run.augment
    if aug is None or not aug.enabled:
        return "augment    none (--aug noaug)"
    from models.augment import describe, pipeline_spec

    line = f"augment    {aug.mode} {aug.pipeline} ({describe(pipeline_spec(aug.pipeline))}) " \
           f"p {trainer.ada.p:.4f}"
    if aug.mode == "ada":
        line += f" target {aug.target:g} every {aug.interval} steps, ada_kimg {aug.ada_kimg:g}"
    return line


def _resume_line(run, trainer, copied: dict | None) -> str | None:
    if run.resume_snapshot is None:
        return None
    if copied is None:
        return f"resume     {run.resume_snapshot} at kimg {trainer.state.cur_nimg / 1000:.3f}"
    parts = ", ".join(f"{name} {done} copied / {kept} fresh" for name, (done, kept)
                      in copied.items())
    fresh_d = "" if "D" in copied else "; the checkpoint has no D: D starts from scratch"
    return f"transfer   weights of {run.resume_snapshot} ({parts}{fresh_d}), kimg 0"


def _execution(settings) -> str:
    layout = "channels_last" if settings.channels_last else "contiguous"
    mode = "compiled (R1 / path length eager)" if settings.compile else "eager"
    return f"{settings.precision}, {layout}, {mode}"


def banner(run, trainer, folder: Path, copied: dict | None = None) -> str:
    """Multi-line summary printed (and logged to log.txt) when training starts."""
    import torch

    env, plan = trainer.env, trainer.plan
    frozen = sum(p.numel() for p in trainer.frozen_d)
    lines = [
        f"run folder {folder}",
        f"device     {env.device} x {env.world_size} rank(s), {torch.get_num_threads()} "
        f"thread(s) per rank, {_execution(trainer.settings)}",
        f"config     {run.config.name} at {plan.resolution}px, batch {plan.batch}, "
        f"gamma {plan.r1_gamma:g}, lr {plan.lr:g}, EMA {plan.ema_kimg:g} kimg",
        f"networks   G {parameter_count(trainer.G):,} parameters, D "
        f"{parameter_count(trainer.D):,} parameters"
        + (f" ({frozen:,} frozen: --freezed {trainer.settings.freeze_d})" if frozen else ""),
        f"dataset    {run.options.data}: {len(run.dataset):,} images, "
        f"{run.img_channels} channel(s)" + (f", {run.c_dim} label dims" if run.c_dim else ""),
        _augment_line(run, trainer),
    ]
    resume = _resume_line(run, trainer, copied)
    if resume:
        lines.append(resume)
    return "\n".join(lines)

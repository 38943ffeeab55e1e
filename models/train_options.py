"""Options of a training run (one table shared by the CLI and the Python API) and the plan
they resolve to together with a named config.

`TrainOptions` is what a user chooses; `TrainingPlan` is every number the loop uses, taken
from the config (models.configs) with the options' overrides applied. `--dry-run` prints
both; `options.json` of a run stores both.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ffhq_tools.errors import FfhqToolsError
from models.configs import reject_unknown_fields

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainOptions:
    config: str
    data: str
    resolution: int | None = None  # None: the dataset's resolution
    kimg: float | None = None  # None: the config's total_kimg
    batch: int | None = None  # total over ranks; None: the config's
    batch_gpu: int | None = None  # per rank and accumulation round; None: batch / ranks
    gamma: float | None = None  # R1 gamma override
    mirror: bool = False
    cond: bool = False  # conditional training on the dataset's `labels`
    snap: int = 50  # ticks between snapshots (0: only at the end)
    tick_kimg: float = 4.0
    seed: int = 0
    metrics: tuple[str, ...] = ()
    resume: str | None = None
    transfer: bool = False  # --resume SNAPSHOT: take only its weights into a new run
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False  # torch.compile the main passes (machine-side: not frozen)
    device: str = "auto"
    outdir: str = "runs"
    workers: int = 2
    channel_max: int | None = None
    max_images: int | None = None
    grid_size: int = 16
    progress: bool = True
    config_overrides: dict = field(default_factory=dict)  # ModelConfig field -> value
    aug: str = "noaug"  # ada | fixed | noaug (discriminator augmentation)
    augpipe: str = "bgc"
    p: float | None = None  # fixed: the p; ada: the starting p (default 0)
    target: float | None = None  # ada: the target of E[sign(D(real))] (default 0.6)
    ada_kimg: float | None = None  # ada: kimg for p to move by 1 (500; 100 on transfer)
    freezed: int = 0  # Freeze-D: D's first N layers are not trained
    threads: int | None = None  # CPU threads (default: the cores this process may use)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["metrics"] = list(self.metrics)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "TrainOptions":
        reject_unknown_fields(cls, data, "unknown training option(s)")
        data = dict(data)
        data["metrics"] = tuple(data.get("metrics", ()))
        return cls(**data)


@dataclass(frozen=True)
class TrainingPlan:
    """Every hyperparameter of the loop, resolved."""

    config: str
    arch: str
    resolution: int
    loss: str
    lr: float
    betas: tuple[float, float]
    eps: float
    batch: int
    batch_gpu: int | None
    r1_gamma: float
    r1_interval: int
    gp_lambda: float
    drift_epsilon: float
    pl_weight: float
    pl_interval: int
    pl_decay: float
    pl_batch_shrink: int
    mixing_prob: float
    ema_kimg: float
    ema_rampup: float | None
    progressive: bool
    start_res: int
    lod_training_kimg: float
    lod_transition_kimg: float
    minibatch_per_res: dict = field(default_factory=dict)
    lr_per_res: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        data["minibatch_per_res"] = {str(k): v for k, v in self.minibatch_per_res.items()}
        data["lr_per_res"] = {str(k): v for k, v in self.lr_per_res.items()}
        return data


def augment_settings(options: TrainOptions, transfer: bool):
    """The AugmentSettings `--aug/--augpipe/--p/--target/--ada-kimg` ask for (stylegan2-ada's
    rules: fixed needs --p, --target only with ada, nothing with noaug)."""
    from models.augment import PIPELINES
    from models.augment_control import ADA_KIMG, ADA_KIMG_TRANSFER, ADA_TARGET, AugmentSettings

    mode = options.aug
    if mode == "fixed" and options.p is None:
        raise FfhqToolsError("--aug fixed needs --p")
    if options.target is not None and mode != "ada":
        raise FfhqToolsError(f"--target can only be given with --aug ada (not {mode})")
    if options.ada_kimg is not None and mode != "ada":
        raise FfhqToolsError(f"--ada-kimg can only be given with --aug ada (not {mode})")
    if mode == "noaug" and (options.p is not None or options.augpipe != "bgc"):
        raise FfhqToolsError("--p and --augpipe need --aug ada or --aug fixed")
    if options.augpipe not in PIPELINES:
        raise FfhqToolsError(f"--augpipe {options.augpipe}: expected one of "
                             f"{', '.join(PIPELINES)}")
    ada_kimg = options.ada_kimg or (ADA_KIMG_TRANSFER if transfer else ADA_KIMG)
    return AugmentSettings(mode=mode, pipeline=options.augpipe,
                           p=float(options.p or 0.0),
                           target=ADA_TARGET if options.target is None else options.target,
                           ada_kimg=float(ada_kimg))


def parse_config_overrides(items: list[str]) -> dict:
    """`--cfg KEY=VALUE` items -> {field: value}; VALUE is JSON (numbers, true, [..], {..})
    or else a plain string."""
    import json

    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise FfhqToolsError(f"--cfg {item!r}: expected FIELD=VALUE")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        overrides[key.strip()] = tuple(value) if isinstance(value, list) else value
    return overrides


def _check_override(config, key: str, value) -> None:
    """A `--cfg` value must have the kind of the field it replaces (ints and floats mix);
    unknown names are left to ModelConfig.replace, which reports them all."""
    if key not in getattr(config, "__dataclass_fields__", {}):
        return
    current = getattr(config, key)
    if current is None or value is None:
        return
    numeric = (int, float)
    if type(current) is bool or isinstance(value, bool):
        fits = type(value) is type(current)
    elif isinstance(current, numeric):
        fits = isinstance(value, numeric)
    else:
        fits = isinstance(value, type(current))
    if not fits:
        kind = type(current).__name__
        raise FfhqToolsError(f"--cfg {key}={value!r}: expected a value of type {kind} like "
                             f"{current!r} (one FIELD=VALUE per --cfg)")


def apply_overrides(config, overrides: dict):
    """ModelConfig.replace with the per-resolution tables' keys turned back into ints."""
    if not overrides:
        return config
    for key, value in overrides.items():
        _check_override(config, key, value)
    changes = dict(overrides)
    for key in ("minibatch_per_res", "lr_per_res"):
        if key in changes:
            changes[key] = {int(k): v for k, v in changes[key].items()}
    return config.replace(**changes)


def resolve_plan(config, options: TrainOptions, resolution: int) -> TrainingPlan:
    """Combine a ModelConfig (or any object with its training fields) with the options."""
    if options.precision not in PRECISIONS:
        raise FfhqToolsError(f"--precision {options.precision}: expected one of "
                             f"{', '.join(PRECISIONS)}")
    if resolution < 4 or resolution & (resolution - 1):
        raise FfhqToolsError(f"--res {resolution}: must be a power of two >= 4")
    progressive = bool(config.progressive)
    batch_table = dict(config.minibatch_per_res or {}) if progressive else {}
    if options.batch is not None:
        if options.batch <= 0:
            raise FfhqToolsError(f"--batch {options.batch}: must be positive")
        batch_table = {}  # an explicit --batch wins over the per-resolution table
    start_res = int(config.start_res or 4)
    if progressive and start_res > resolution:
        start_res = resolution
    return TrainingPlan(
        config=options.config, arch=config.arch, resolution=resolution, loss=config.loss,
        lr=float(config.lr), betas=(float(config.betas[0]), float(config.betas[1])),
        eps=float(config.eps),
        batch=int(options.batch if options.batch is not None else config.batch),
        batch_gpu=options.batch_gpu,
        r1_gamma=float(options.gamma if options.gamma is not None else config.r1_gamma),
        r1_interval=max(int(config.r1_interval or 1), 1),
        gp_lambda=float(config.gp_lambda), drift_epsilon=float(config.drift_epsilon),
        pl_weight=float(config.pl_weight or 0.0),
        pl_interval=max(int(config.pl_interval or 1), 1),
        pl_decay=float(config.pl_decay), pl_batch_shrink=max(int(config.pl_batch_shrink), 1),
        mixing_prob=float(config.mixing_prob or 0.0),
        ema_kimg=float(config.ema_kimg),
        ema_rampup=float(config.ema_rampup) if config.ema_rampup else None,
        progressive=progressive, start_res=start_res,
        lod_training_kimg=float(config.lod_training_kimg or 0.0),
        lod_transition_kimg=float(config.lod_transition_kimg or 0.0),
        minibatch_per_res={int(k): int(v) for k, v in batch_table.items()},
        lr_per_res={int(k): float(v) for k, v in (config.lr_per_res or {}).items()}
        if progressive else {},
    )


# The choices that define a run: a resumed run keeps its frozen values (options.json) unless
# the caller sets the option again. Machine-side settings (device, workers, outdir, progress)
# and the model (taken from the snapshot) are not listed.
FROZEN_ON_RESUME = ("kimg", "batch", "batch_gpu", "gamma", "mirror", "cond", "snap",
                    "tick_kimg", "seed", "metrics", "precision", "channels_last", "max_images",
                    "grid_size", "aug", "augpipe", "p", "target", "ada_kimg")


AUGMENT_OPTIONS = ("aug", "augpipe", "p", "target", "ada_kimg")


def continue_frozen_options(options: TrainOptions, frozen: dict,
                            explicit: set[str]) -> tuple[TrainOptions, list[str]]:
    """`options` with every FROZEN_ON_RESUME field not in `explicit` taken from `frozen` (the
    `options` of a run's options.json); also returns one note per explicit value that differs
    from the frozen one."""
    stored = TrainOptions.from_dict({k: v for k, v in frozen.items()
                                     if k in TrainOptions.__dataclass_fields__})
    changes, notes = {}, []
    for name in FROZEN_ON_RESUME:
        given, kept = getattr(options, name), getattr(stored, name)
        if name not in explicit:
            changes[name] = kept
        elif given != kept:
            notes.append(f"{name} {given!r} overrides the run's {kept!r}")
    resumed = dataclasses.replace(options, **changes)
    carried = [f"--{name.replace('_', '-')} {getattr(resumed, name)}" for name in AUGMENT_OPTIONS
               if name not in explicit and getattr(resumed, name) is not None]
    if stored.aug != "noaug" and carried:
        notes.append(f"augmentation continues with the run's {' '.join(carried)}")
    return resumed, notes

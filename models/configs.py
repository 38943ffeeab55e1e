"""Named model configurations: one per row of the papers' tables, plus small ones for tests.

Every config is a frozen `ModelConfig` holding the network switches and the training
hyper-parameters, derived from a base config by a handful of explicit changes (`base` names it),
so `ffhq-tools configs show NAME` can print exactly what a table row changes. Each field
belongs to one section (`IDENTITY_FIELDS`, `NETWORK_FIELDS`, `TRAINING_FIELDS`); a family with
network fields of its own keeps them in its own nested section (`dualstylegan`:
`DualStyleGANNetwork`, the extrinsic path), set exactly when the family is selected (filled
with the official layout when an arch dualstylegan config names none).

Sources: StyleGAN (arXiv 1812.04948) Tables 1, 2, 4 and its reference training code constants;
StyleGAN2 (arXiv 1912.04958) Table 1 with the reference code's config-a..f; stylegan2-ada-pytorch
train.py `cfg_specs`: `paper256`, `paper512`, `paper1024`, `cifar` and `auto` (resolved from
the resolution and the number of GPUs by `resolve_auto_config`).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from dataclasses import dataclass, field

from ffhq_tools.errors import FfhqToolsError

# Network families: arch name -> builder "module:function" (config, resolution, c_dim,
# img_channels) -> (G, D). A new family adds a row here.
ARCHITECTURE_BUILDERS = {
    "progan": "models.progan:build_progan",
    "stylegan": "models.stylegan:build_stylegan",
    "stylegan2": "models.stylegan2:build_stylegan2",
    "dualstylegan": "models.dualstylegan:build_dualstylegan",
}
ARCHS = tuple(ARCHITECTURE_BUILDERS)
LOSSES = ("logistic-ns-r1", "wgan-gp")

V1_LR_PER_RES = {128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003}
V1_MINIBATCH_PER_RES = {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4}
SG2_GROWING_MINIBATCH_PER_RES = {8: 256, 16: 128, 32: 64, 64: 32}


def reject_unknown_fields(cls, data: dict, message: str) -> None:
    """Refuse a dict (a frozen JSON file) carrying keys that are not fields of dataclass `cls`."""
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise FfhqToolsError(f"{message}: {', '.join(unknown)}")


@dataclass(frozen=True)
class DualStyleGANNetwork:
    """DualStyleGAN's extrinsic path (official `DualStyleGAN(size, 512, n_mlp, 2, res_index)`):
    ModRes blocks at latent layers 0..res_index, and a structure transform T_s of
    `structure_layers` equalised linear layers (the official n_mlp - 6 = 2). The base
    StyleGAN2's fields (mapping_layers included) stay the ModelConfig's own."""

    res_index: int = 6
    structure_layers: int = 2

    def __post_init__(self):
        if self.res_index < 0 or self.res_index % 2:
            raise FfhqToolsError(f"dualstylegan.res_index {self.res_index}: an even layer index "
                                 ">= 0 (the official models use 6)")
        if self.structure_layers < 0:
            raise FfhqToolsError(f"dualstylegan.structure_layers {self.structure_layers}: "
                                 "must be >= 0")

    @classmethod
    def from_dict(cls, data) -> "DualStyleGANNetwork":
        if not isinstance(data, dict):
            raise FfhqToolsError(f"model config field dualstylegan: expected an object, got "
                                 f"{type(data).__name__}")
        reject_unknown_fields(cls, data, "model config field dualstylegan has unknown field(s)")
        return cls(**data)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    arch: str
    description: str = ""
    base: str | None = None
    # --- networks ---
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8            # 0 = z used directly (normalised)
    mapping_lr_multiplier: float = 0.01
    use_styles: bool = True            # AdaIN / modulation; False = traditional (pixel norm)
    const_input: bool = True           # learned 4x4 constant; False = dense from the latent
    use_noise: bool = True
    demodulate: bool = True            # StyleGAN2 only
    g_architecture: str = "skip"       # StyleGAN2: orig | skip | resnet
    d_architecture: str = "resnet"     # StyleGAN2: orig | skip | resnet
    channel_base: int = 32768          # channels(res) = min(channel_base // res, channel_max)
    channel_max: int = 512
    fir: tuple[int, ...] = (1, 3, 3, 1)  # StyleGAN2 resampling filter
    blur: bool = True                  # StyleGAN v1: bilinear ([1,2,1] blur) vs nearest up/down
    fused_scale_min_res: int = 128     # StyleGAN v1 / ProGAN: fused up/down conv from this res
    mbstd_group: int = 4
    mbstd_channels: int = 1
    w_avg_beta: float = 0.995
    truncation_psi: float = 0.7        # defaults for figures (FID tables use psi = 1)
    truncation_cutoff: int | None = None
    conv_clamp: float | None = None
    dualstylegan: DualStyleGANNetwork | None = None  # arch dualstylegan only
    # --- training ---
    loss: str = "logistic-ns-r1"
    lr: float = 0.002
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    batch: int = 32
    r1_gamma: float = 10.0
    r1_interval: int = 16              # 16 = lazy regularisation, 1 = every minibatch
    gp_lambda: float = 10.0            # WGAN-GP
    drift_epsilon: float = 0.001       # WGAN-GP epsilon drift term (ProGAN)
    pl_weight: float = 2.0
    pl_interval: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    mixing_prob: float = 0.9
    ema_kimg: float = 10.0
    ema_rampup: float | None = None
    total_kimg: float = 25000
    progressive: bool = False
    lod_training_kimg: int = 600
    lod_transition_kimg: int = 600
    start_res: int = 8
    minibatch_per_res: dict[int, int] = field(default_factory=dict)
    lr_per_res: dict[int, float] = field(default_factory=dict)

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise FfhqToolsError(f"config {self.name}: arch must be one of {ARCHS}, "
                                 f"got {self.arch!r}")
        if self.loss not in LOSSES:
            raise FfhqToolsError(f"config {self.name}: loss must be one of {LOSSES}, "
                                 f"got {self.loss!r}")
        if self.arch == "dualstylegan" and self.dualstylegan is None:
            object.__setattr__(self, "dualstylegan", official_dualstylegan_fields(self))
        if self.arch != "dualstylegan" and self.dualstylegan is not None:
            raise FfhqToolsError(f"config {self.name}: dualstylegan network fields go with "
                                 f"arch dualstylegan only (arch is {self.arch})")

    def replace(self, **changes) -> "ModelConfig":
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise FfhqToolsError(f"unknown config field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["fir"] = list(self.fir)
        out["betas"] = list(self.betas)
        out["minibatch_per_res"] = {str(k): v for k, v in self.minibatch_per_res.items()}
        out["lr_per_res"] = {str(k): v for k, v in self.lr_per_res.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        reject_unknown_fields(cls, data, "model config has unknown field(s)")
        values = dict(data)
        if "fir" in values:
            values["fir"] = tuple(values["fir"])
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        for key in ("minibatch_per_res", "lr_per_res"):
            if key in values:
                values[key] = {int(k): v for k, v in values[key].items()}
        if values.get("dualstylegan") is not None:
            values["dualstylegan"] = DualStyleGANNetwork.from_dict(values["dualstylegan"])
        return cls(**values)

    def section(self, names: tuple[str, ...]) -> dict:
        data = self.to_dict()
        return {name: data[name] for name in names}

    def differences(self, other: "ModelConfig") -> dict[str, tuple]:
        """Fields whose values differ from `other` (name, description and base excluded)."""
        skip = {"name", "description", "base"}
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (theirs[k], mine[k]) for k in mine if k not in skip and mine[k] != theirs[k]}


IDENTITY_FIELDS = ("name", "arch", "description", "base")
TRAINING_FIELDS = ("loss", "lr", "betas", "eps", "batch", "r1_gamma", "r1_interval", "gp_lambda",
                   "drift_epsilon", "pl_weight", "pl_interval", "pl_decay", "pl_batch_shrink",
                   "mixing_prob", "ema_kimg", "ema_rampup", "total_kimg", "progressive",
                   "lod_training_kimg", "lod_transition_kimg", "start_res",
                   "minibatch_per_res", "lr_per_res")
NETWORK_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig)
                       if f.name not in IDENTITY_FIELDS + TRAINING_FIELDS)


def official_dualstylegan_fields(config: ModelConfig) -> DualStyleGANNetwork:
    """The section of an arch dualstylegan config that names none (and of checkpoints frozen
    before the section existed): the official coupling DualStyleGAN(size, 512, n_mlp, 2,
    res_index=6) builds, T_s of mapping_layers - 6 layers. Give the section to decouple them."""
    if config.mapping_layers < 6:
        raise FfhqToolsError(f"config {config.name}: arch dualstylegan without a dualstylegan "
                             f"section takes T_s = mapping_layers - 6 layers, but "
                             f"mapping_layers is {config.mapping_layers}; give "
                             "dualstylegan=DualStyleGANNetwork(structure_layers=...)")
    return DualStyleGANNetwork(res_index=6, structure_layers=config.mapping_layers - 6)


CONFIGS: dict[str, ModelConfig] = {}


def _add(config: ModelConfig) -> ModelConfig:
    CONFIGS[config.name] = config
    return config


def _derive(base: ModelConfig, name: str, description: str, **changes) -> ModelConfig:
    return _add(dataclasses.replace(base, name=name, base=base.name, description=description,
                                    **changes))


def _define_stylegan_v1() -> None:
    progan = _add(ModelConfig(
        name="stylegan-A", arch="progan",
        description="StyleGAN Table 1 A: baseline Progressive GAN (traditional input, pixel "
                    "norm, nearest up/down, WGAN-GP as in ProGAN)",
        mapping_layers=0, use_styles=False, const_input=False, use_noise=False, blur=False,
        channel_base=16384, loss="wgan-gp", lr=0.001, batch=16, r1_interval=1, pl_weight=0.0,
        mixing_prob=0.0, ema_kimg=10.0, progressive=True, start_res=4,
        minibatch_per_res=dict(V1_MINIBATCH_PER_RES), lr_per_res={}, truncation_psi=1.0,
        g_architecture="orig", d_architecture="orig", fir=(1, 2, 1)))
    b = _derive(progan, "stylegan-B", "StyleGAN Table 1 B: + tuning (bilinear up/down, "
                "non-saturating logistic loss with R1, longer training, tuned lr schedule)",
                arch="stylegan", blur=True, loss="logistic-ns-r1", lr=0.001, batch=4,
                start_res=8, lr_per_res=dict(V1_LR_PER_RES), truncation_psi=0.7,
                truncation_cutoff=8)
    c = _derive(b, "stylegan-C", "StyleGAN Table 1 C: + mapping network (8 layers) and styles "
                "(AdaIN)", mapping_layers=8, use_styles=True)
    d = _derive(c, "stylegan-D", "StyleGAN Table 1 D: + remove traditional input (learned 4x4 "
                "constant)", const_input=True)
    e = _derive(d, "stylegan-E", "StyleGAN Table 1 E: + noise inputs", use_noise=True)
    f = _derive(e, "stylegan-F", "StyleGAN Table 1 F: + mixing regularisation (90%)",
                mixing_prob=0.9)
    for pct in (0, 50, 90, 100):
        _derive(f, f"mixing-{pct}", f"StyleGAN Table 2: mixing regularisation {pct}% of "
                "training images", mixing_prob=pct / 100)
    _derive(b, "traditional-0", "StyleGAN Table 4: traditional generator, no mapping (= B)")
    _derive(b, "traditional-8", "StyleGAN Table 4: traditional generator fed by an 8-layer "
            "mapping network", mapping_layers=8)
    for depth in (0, 1, 2, 8):
        _derive(f, f"style-based-{depth}", f"StyleGAN Table 4: style-based generator, mapping "
                f"depth {depth}", mapping_layers=depth)


def _define_stylegan2() -> None:
    """StyleGAN2 Table 1, each row derived from the previous one (reference config-a..f)."""
    a = _derive(CONFIGS["stylegan-F"], "stylegan2-A", "StyleGAN2 Table 1 A: baseline StyleGAN "
                "(original networks, AdaIN, progressive growing, R1 every minibatch)",
                batch=32, lr=0.001, lr_per_res=dict(V1_LR_PER_RES),
                minibatch_per_res=dict(SG2_GROWING_MINIBATCH_PER_RES), r1_interval=1,
                pl_weight=0.0, demodulate=False)
    b = _derive(a, "stylegan2-B", "StyleGAN2 Table 1 B: + weight demodulation (revised "
                "networks, still growing progressively)", arch="stylegan2", demodulate=True,
                fir=(1, 3, 3, 1), g_architecture="orig", d_architecture="orig",
                truncation_psi=0.5, truncation_cutoff=None)
    c = _derive(b, "stylegan2-C", "StyleGAN2 Table 1 C: + lazy regularisation (R1 every 16 "
                "minibatches)", r1_interval=16)
    d = _derive(c, "stylegan2-D", "StyleGAN2 Table 1 D: + path length regularisation",
                pl_weight=2.0)
    e = _derive(d, "stylegan2-E", "StyleGAN2 Table 1 E: + no growing, new G & D "
                "architectures (skip G, resnet D; gamma 100 as the reference config-e)",
                progressive=False, g_architecture="skip", d_architecture="resnet", lr=0.002,
                lr_per_res={}, minibatch_per_res={}, r1_gamma=100.0)
    _derive(e, "stylegan2-F", "StyleGAN2 Table 1 F: + large networks (channel_base 32768), "
            "the published FFHQ model", channel_base=32768, r1_gamma=10.0)


ADA_CONV_CLAMP = 256.0  # stylegan2-ada clamps every config's activations (fp16-ready)
AUTO_CONFIG = "auto"


def _define_ada() -> None:
    """stylegan2-ada-pytorch train.py cfg_specs (their batch is the total over 8 or 2 GPUs)."""
    f = CONFIGS["stylegan2-F"]
    ada = dict(conv_clamp=ADA_CONV_CLAMP, total_kimg=25000)
    _derive(f, "paper256", "stylegan2-ada paper256: 256px, half width, mbstd 8, gamma 1, "
            "EMA 20 kimg", channel_base=16384, batch=64, mbstd_group=8, lr=0.0025,
            r1_gamma=1.0, ema_kimg=20.0, **ada)
    _derive(f, "paper512", "stylegan2-ada paper512: 512px, full width, mbstd 8, gamma 0.5, "
            "EMA 20 kimg", channel_base=32768, batch=64, mbstd_group=8, lr=0.0025,
            r1_gamma=0.5, ema_kimg=20.0, **ada)
    _derive(f, "paper1024", "stylegan2-ada paper1024: 1024px, full width, mbstd 4, gamma 2, "
            "EMA 10 kimg", channel_base=32768, batch=32, mbstd_group=4, lr=0.002,
            r1_gamma=2.0, ema_kimg=10.0, **ada)
    _derive(f, "cifar", "stylegan2-ada cifar: 32px, mapping 2, mbstd 32, gamma 0.01, EMA 500 "
            "kimg, no path length, no mixing, orig D", mapping_layers=2, batch=64,
            mbstd_group=32, lr=0.0025, r1_gamma=0.01, ema_kimg=500.0, ema_rampup=0.05,
            pl_weight=0.0, mixing_prob=0.0, d_architecture="orig", channel_base=32768,
            conv_clamp=ADA_CONV_CLAMP, total_kimg=100000)
    _derive(f, AUTO_CONFIG, "stylegan2-ada auto: batch, mbstd, width, lr, gamma and EMA from "
            "the resolution and the GPU count (resolved when training starts); mapping 2, "
            "EMA ramp-up 0.05", mapping_layers=2, ema_rampup=0.05, **ada)


def resolve_auto_config(config: ModelConfig, resolution: int, gpus: int) -> ModelConfig:
    """stylegan2-ada's `auto` heuristics; any other config is returned unchanged."""
    if config.name != AUTO_CONFIG:
        return config
    if gpus < 1:
        raise FfhqToolsError(f"auto config: {gpus} GPUs")
    batch = max(min(gpus * min(4096 // resolution, 32), 64), gpus)
    return config.replace(
        batch=batch, mbstd_group=min(batch // gpus, 4),
        channel_base=32768 if resolution >= 512 else 16384,
        lr=0.002 if resolution >= 1024 else 0.0025,
        r1_gamma=0.0002 * resolution**2 / batch, ema_kimg=batch * 10 / 32,
        description=f"{config.description} [resolved for {resolution}px, {gpus} GPU(s)]")


def _define_small() -> None:
    f = CONFIGS["stylegan2-F"]
    _derive(f, "tiny", "tiny StyleGAN2 for tests and CPU smoke runs (32-d latents, "
                   "channel_max 32)", z_dim=32, w_dim=32, mapping_layers=2, channel_base=1024,
                   channel_max=32, batch=8, mbstd_group=4, r1_gamma=1.0, ema_kimg=0.5,
                   total_kimg=10)
    small_growth = dict(z_dim=32, w_dim=32, channel_base=1024, channel_max=32, batch=8,
                        total_kimg=10, lod_training_kimg=1, lod_transition_kimg=1,
                        minibatch_per_res={}, lr_per_res={}, ema_kimg=0.5)
    _derive(CONFIGS["stylegan-F"], "tiny-stylegan", "tiny StyleGAN v1 with progressive "
            "growing, for tests", mapping_layers=2, **small_growth)
    _derive(CONFIGS["stylegan-A"], "tiny-progan", "tiny ProGAN with progressive growing, for "
            "tests", start_res=4, **small_growth)


def _define_dualstylegan() -> None:
    """DualStyleGAN's recipe (williamyang1991/DualStyleGAN README and scripts)."""
    f = CONFIGS["stylegan2-F"]
    _derive(f, "stylegan2-style-finetune", "DualStyleGAN step 1: fine-tune the FFHQ StyleGAN2 "
            "on a style set (finetune_stylegan.py: R1 10 every 16, path length 2 every 4, "
            "mixing 0.9, lr 0.002, 600 iterations at batch 32 = 19.2 kimg); use with "
            "`train --resume FFHQ.pt --config stylegan2-style-finetune --aug ada`",
            r1_gamma=10.0, r1_interval=16, pl_weight=2.0, pl_interval=4, mixing_prob=0.9,
            lr=0.002, batch=32, ema_kimg=10.0, total_kimg=19.2)
    dual = _derive(f, "dualstylegan", "DualStyleGAN (Yang et al. 2022): StyleGAN2 config-f "
                   "intrinsic path + extrinsic path (T_s of mapping_layers - 6 layers, ModRes "
                   "and colour transforms)", arch="dualstylegan")
    _derive(dual, "tiny-dualstylegan", "tiny DualStyleGAN for tests (32-d latents, "
            "channel_max 32, 8-layer mapping so T_s has 2 layers)", z_dim=32, w_dim=32,
            channel_base=1024, channel_max=32, batch=8, r1_gamma=1.0, ema_kimg=0.5,
            total_kimg=10)


_define_stylegan_v1()
_define_stylegan2()
_define_ada()
_define_small()
_define_dualstylegan()


def get_config(name: str) -> ModelConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        close = difflib.get_close_matches(name, CONFIGS, n=3, cutoff=0.4)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise FfhqToolsError(f"unknown model config {name!r}{hint}; "
                             f"see `ffhq-tools configs list`") from None


def build_networks(config: ModelConfig, resolution: int, *, c_dim: int = 0,
                   img_channels: int = 3, channel_max: int | None = None,
                   z_dim: int | None = None, w_dim: int | None = None):
    """Build (G, D) for `config` at `resolution` (power of two, 8..1024)."""
    changes = {k: v for k, v in dict(channel_max=channel_max, z_dim=z_dim, w_dim=w_dim).items()
               if v is not None}
    if changes:
        config = config.replace(**changes)
    module, function = ARCHITECTURE_BUILDERS[config.arch].split(":")
    build = getattr(importlib.import_module(module), function)
    return build(config, resolution, c_dim, img_channels)

"""The training loop over already-built networks: steps, ticks, snapshots, exact resume.

`Trainer` knows nothing about configs by name, files of datasets or the CLI: give it G, D, a
`TrainingPlan`, a dataset of uint8 CHW images and a run folder. `models.train.train` builds
those from options.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ffhq_tools.errors import FfhqToolsError
from models import distributed as distrib
from models import schedule, train_phases
from models.augment_control import AdaController, AugmentSettings
from models.ema import update_ema
from models.train_compile import compile_networks, eager_passes
from models.train_data import ItemStream, StepBatchSampler, make_loader, prepare_reals, step_layout
from models.train_options import TrainingPlan
from models.train_state import LoopState, all_finite, gather_rng, restore_rank_rng

MetricFn = Callable[[list, Path, nn.Module], dict]


class TrainingDiverged(FfhqToolsError):
    """A loss or parameter became NaN/Inf; the last good snapshot is kept."""


@dataclass
class LoopSettings:
    total_kimg: float
    tick_kimg: float = 4.0
    snap: int = 50
    seed: int = 0
    mirror: bool = False
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False  # torch.compile G's synthesis and D (models.train_compile)
    workers: int = 0
    metrics: tuple[str, ...] = ()
    grid_size: int = 16
    progress: bool = False
    checkpoint_config: dict = field(default_factory=dict)
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    freeze_d: int = 0  # Freeze-D: D's first N layers keep their weights


class Trainer:
    def __init__(self, G: nn.Module, D: nn.Module, plan: TrainingPlan, dataset,
                 env: distrib.DistEnv, run_dir: Path | None, settings: LoopSettings,
                 metric_fn: MetricFn | None = None, labels: torch.Tensor | None = None):
        """`labels` ([N, c_dim], conditional training): every item's label, in dataset order;
        the dataset then yields (image, label) pairs and fakes get labels drawn from it."""
        self.plan, self.env, self.run_dir, self.settings = plan, env, run_dir, settings
        self.dataset, self.metric_fn = dataset, metric_fn
        self.G, self.D = G.to(env.device).train(), D.to(env.device).train()
        if settings.channels_last:
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        distrib.broadcast_module(self.G, env)
        distrib.broadcast_module(self.D, env)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        if settings.compile:
            compile_networks(self.G, self.D, plan.progressive)
        self.g_lazy = plan.pl_weight > 0 and plan.pl_interval > 1
        self.d_lazy = plan.r1_interval > 1
        self.frozen_d = frozen_layers(self.D, settings.freeze_d)
        self.opt_G = self._adam(self.G, self.g_lazy, plan.pl_interval)
        self.opt_D = self._adam(self.D, self.d_lazy, plan.r1_interval, self.frozen_d)
        self.ada = AdaController(settings.augment, env)
        self.augment_pipe = self._augment_pipe(settings.augment, env.device)
        self.augmentation = train_phases.Augmentation(
            self._augment if self.augment_pipe is not None else None, self.ada.observe)
        self.scalers = self._grad_scalers(settings.precision, env.device)
        self.pl_mean = torch.zeros([], device=env.device)
        self.state = LoopState()
        self.loss_settings = train_phases.LossSettings(
            plan.loss, plan.r1_gamma, plan.gp_lambda, plan.drift_epsilon, plan.pl_weight,
            plan.pl_decay, plan.pl_batch_shrink, plan.mixing_prob,
            None if labels is None else labels.to(env.device, torch.float32))
        self.stream = ItemStream(len(dataset), settings.seed, settings.mirror)
        self.tick_stats: dict[str, list[torch.Tensor]] = {}
        self.last_snapshot: Path | None = None

    # ----- schedule -------------------------------------------------------------------------
    def _adam(self, module: nn.Module, lazy: bool, interval: int,
              frozen: list[nn.Parameter] = ()) -> torch.optim.Adam:
        lr, betas = schedule.lazy_adam(self.plan.lr, self.plan.betas, interval if lazy else 0)
        skip = {id(p) for p in frozen}
        params = [p for p in module.parameters() if id(p) not in skip]
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=self.plan.eps)

    @staticmethod
    def _augment_pipe(settings: AugmentSettings, device: torch.device):
        if not settings.enabled:
            return None
        from models.augment import AugmentPipe, pipeline_spec

        return AugmentPipe(pipeline_spec(settings.pipeline), settings.p).to(device)

    def _augment(self, images: torch.Tensor, rand) -> torch.Tensor:
        self.augment_pipe.p = self.ada.p
        return self.augment_pipe(images, rand)

    @staticmethod
    def _grad_scalers(precision: str, device: torch.device) -> dict:
        """fp16 needs loss scaling (one scaler per optimiser); bf16 and fp32 do not."""
        if precision != "fp16":
            return {}
        if device.type != "cuda":
            raise FfhqToolsError("--precision fp16 needs CUDA; use bf16 or fp32 on CPU")
        return {"G": torch.amp.GradScaler("cuda"), "D": torch.amp.GradScaler("cuda")}

    def level_at(self, cur_nimg: int) -> schedule.LevelSchedule:
        p = self.plan
        return schedule.level_schedule(
            cur_nimg / 1000.0, resolution=p.resolution, progressive=p.progressive,
            start_res=p.start_res, training_kimg=p.lod_training_kimg,
            transition_kimg=p.lod_transition_kimg, batch=p.batch, lr=p.lr,
            batch_per_res=p.minibatch_per_res, lr_per_res=p.lr_per_res)

    def layout_at(self, cur_nimg: int):
        batch = self.level_at(cur_nimg).batch
        batch_gpu = self.plan.batch_gpu or batch // self.env.world_size
        return step_layout(batch, batch_gpu, self.env.world_size)

    def _apply_level(self, level: schedule.LevelSchedule) -> None:
        for net in (self.G, self.D, self.G_ema):
            if hasattr(net, "lod"):
                net.lod = level.lod
        levels = schedule.lod_levels(level.lod)
        if self.plan.progressive and self.state.lod_levels not in (None, levels):
            self.opt_G.state.clear()  # TF reference: reset Adam when a new level starts
            self.opt_D.state.clear()
        self.state.lod_levels = levels
        for opt, lazy, interval in ((self.opt_G, self.g_lazy, self.plan.pl_interval),
                                    (self.opt_D, self.d_lazy, self.plan.r1_interval)):
            lr, _ = schedule.lazy_adam(level.lr, self.plan.betas, interval if lazy else 0)
            for group in opt.param_groups:
                group["lr"] = lr

    # ----- one step -------------------------------------------------------------------------
    def _phases(self) -> list[tuple[str, int]]:
        step, p = self.state.step, self.plan
        phases = []
        if p.pl_weight > 0 and not self.g_lazy:
            phases.append(("Gboth", 1))
        else:
            phases.append(("Gmain", 1))
            if self.g_lazy and step % p.pl_interval == 0:
                phases.append(("Greg", p.pl_interval))
        if not self.d_lazy:
            phases.append(("Dboth", 1))
        else:
            phases.append(("Dmain", 1))
            if step % p.r1_interval == 0:
                phases.append(("Dreg", p.r1_interval))
        return phases

    def _round_loss(self, phase: str, gain: int, round_idx: int, rounds: int,
                    batch: tuple[torch.Tensor, torch.Tensor | None]) -> torch.Tensor:
        reals, real_c = batch
        s, precision, n = self.loss_settings, self.settings.precision, reals.shape[0]

        def rand(name: str) -> train_phases.StepRandom:
            return train_phases.StepRandom(self.settings.seed, self.state.step, name, self.env,
                                           round_idx, rounds)

        total = torch.zeros([], device=self.env.device)
        stats: dict[str, torch.Tensor] = {}
        if phase in ("Gmain", "Gboth"):
            terms, st = train_phases.generator_main(self.G, self.D, s, rand("Gmain"), n,
                                                    precision, self.augmentation)
            total, stats = total + terms.mean(), {**stats, **st}
        if phase in ("Greg", "Gboth"):
            with eager_passes(self.settings.compile):
                terms, self.pl_mean, st = train_phases.generator_path_length(
                    self.G, s, rand("Greg"), n, self.pl_mean)
            total, stats = total + terms.mean() * gain, {**stats, **st}
        if phase in ("Dmain", "Dboth"):
            terms, st = train_phases.discriminator_main(
                self.G, self.D, s, rand("Dmain"), reals, real_c, precision, self.augmentation)
            total, stats = total + terms.mean(), {**stats, **st}
        if phase in ("Dreg", "Dboth"):
            with eager_passes(self.settings.compile):
                terms, st = train_phases.discriminator_reg(self.G, self.D, s, rand("Dreg"),
                                                           reals, real_c, self.augmentation)
            total, stats = total + terms.mean() * gain, {**stats, **st}
        for key, value in stats.items():
            self.tick_stats.setdefault(key, []).append(value.detach().float())
        return total

    def _run_phase(self, phase: str, gain: int, rounds: list[tuple]) -> None:
        module, opt = (self.G, self.opt_G) if phase.startswith("G") else (self.D, self.opt_D)
        self.G.requires_grad_(module is self.G)
        self.D.requires_grad_(module is self.D)
        for p in self.frozen_d:
            p.requires_grad_(False)
        opt.zero_grad(set_to_none=True)
        scaler = self.scalers.get(phase[0])
        for round_idx, batch in enumerate(rounds):
            loss = self._round_loss(phase, gain, round_idx, len(rounds), batch) / len(rounds)
            (scaler.scale(loss) if scaler else loss).backward()
        distrib.average_gradients(module.parameters(), self.env)
        if scaler:
            scaler.step(opt)  # skips the step when the scaled gradients overflowed
            scaler.update()
        else:
            opt.step()
        module.requires_grad_(False)

    def _load_reals(self, batch, layout, level) -> list[tuple]:
        """Per accumulation round: (reals in [-1, 1], their labels or None)."""
        images, labels = batch if isinstance(batch, (tuple, list)) else (batch, None)
        _, flips = self.stream.items(layout.local_positions(self.state.cur_nimg, self.env.rank))
        reals = prepare_reals(images, flips, self.env.device)
        if self.plan.progressive and level.lod > 0:
            from models.layers import downscale_to_lod

            reals = downscale_to_lod(reals, level.lod)
        if labels is None:
            return [(r, None) for r in reals.split(layout.batch_gpu)]
        labels = labels.to(self.env.device, torch.float32)
        return list(zip(reals.split(layout.batch_gpu), labels.split(layout.batch_gpu),
                        strict=True))

    def step(self, batch) -> None:
        """One optimiser step on the loader's next batch (images, or (images, labels))."""
        level = self.level_at(self.state.cur_nimg)
        layout = self.layout_at(self.state.cur_nimg)
        self._apply_level(level)
        rounds = self._load_reals(batch, layout, level)
        for phase, gain in self._phases():
            self._run_phase(phase, gain, rounds)
        distrib.average_buffers(self.G, self.env)
        # Ramp-up counts the images seen before this step, as the reference does.
        beta = schedule.ema_beta(layout.batch, self.plan.ema_kimg, self.state.cur_nimg,
                                 self.plan.ema_rampup)
        update_ema(self.G_ema, self.G, beta)
        self.state.cur_nimg += layout.batch
        self.state.step += 1
        self.ada.after_step(self.state.step, layout.batch)

    # ----- the loop -------------------------------------------------------------------------
    def data_iterator(self):
        sampler = StepBatchSampler(self.stream, self.state.cur_nimg, self.env.rank,
                                   self.layout_at)
        return iter(make_loader(self.dataset, sampler, self.settings.workers, self.settings.seed))

    def run(self) -> None:
        from models import train_outputs

        total_nimg = int(round(self.settings.total_kimg * 1000))
        outputs = train_outputs.Outputs(self) if self.env.is_main and self.run_dir else None
        if outputs:
            outputs.start()
        batches = self.data_iterator()
        bar = self._progress_bar(total_nimg)
        tick_start = time.perf_counter()
        while self.state.cur_nimg < total_nimg:
            before = self.state.cur_nimg
            self.step(next(batches))
            if bar is not None:
                bar.update((self.state.cur_nimg - before) / 1000)
            done = self.state.cur_nimg >= total_nimg
            tick_nimg = self.settings.tick_kimg * 1000
            if not done and self.state.cur_tick != 0 and \
                    self.state.cur_nimg < self.state.tick_start_nimg + tick_nimg:
                continue
            now = time.perf_counter()
            self._end_tick(now - tick_start, done, outputs)
            tick_start = time.perf_counter()
        if bar is not None:
            bar.close()
        if outputs:
            outputs.finish()

    def _progress_bar(self, total_nimg: int):
        if not self.settings.progress:
            return None
        from tqdm import tqdm

        # Straight to the terminal: the bar would fill log.txt with carriage returns.
        return tqdm(total=total_nimg / 1000, initial=self.state.cur_nimg / 1000, unit="kimg",
                    desc="train", file=sys.__stderr__, leave=False,
                    bar_format="{l_bar}{bar}| {n:.3f}/{total:.3f} kimg [{elapsed}<{remaining}]")

    def _end_tick(self, tick_seconds: float, done: bool, outputs) -> None:
        self.state.elapsed_s += tick_seconds
        stats = self._reduce_tick_stats()
        if self.settings.augment.enabled:
            stats["Progress/augment"] = self.ada.p
        finite = all(math.isfinite(v) for v in stats.values()) and all_finite(self.G, self.D)
        if not finite:
            raise TrainingDiverged(
                f"training diverged at kimg {self.state.cur_nimg / 1000:.3f} (NaN/Inf in "
                f"losses or parameters); last good snapshot: {self.last_snapshot or 'none'}")
        tick = self.state.cur_tick
        snapshot_due = done or (self.settings.snap > 0 and tick % self.settings.snap == 0)
        tick_nimg = self.state.cur_nimg - self.state.tick_start_nimg
        # Counters move on first, so a snapshot holds the state the next step starts from.
        self.state.cur_tick += 1
        self.state.tick_start_nimg = self.state.cur_nimg
        rng_states = gather_rng(self.env) if snapshot_due else None
        augment_state = self.ada.gathered_state() if snapshot_due else None
        if outputs:
            outputs.tick(tick, stats, tick_seconds, tick_nimg)
            if snapshot_due:
                self.last_snapshot = outputs.snapshot(rng_states, augment_state)
        distrib.barrier(self.env)

    def _reduce_tick_stats(self) -> dict[str, float]:
        names = sorted(self.tick_stats)
        if not names:
            return {}
        means = torch.stack([torch.stack(self.tick_stats[k]).mean() for k in names])
        means = distrib.mean_over_ranks(means, self.env)
        self.tick_stats = {}
        return {k: float(v) for k, v in zip(names, means.tolist(), strict=True)}

    # ----- snapshots ------------------------------------------------------------------------
    def training_state(self, rng_states: list[dict], augment_state: dict | None = None) -> dict:
        """`augment_state`: the ADA state with every rank's pending signs
        (AdaController.gathered_state, collective); None: this process's own."""
        return {"loop": self.state.to_dict(), "kimg": self.state.cur_nimg / 1000,
                "pl_mean": self.pl_mean.detach().cpu(),
                "augment": augment_state or self.ada.state_dict(),
                "rng": rng_states, "plan": self.plan.to_dict()}

    def optimizer_states(self) -> dict:
        states = {"G": self.opt_G.state_dict(), "D": self.opt_D.state_dict()}
        for name, scaler in self.scalers.items():
            states[f"scaler_{name}"] = scaler.state_dict()
        return states

    def load_state(self, G: nn.Module, D: nn.Module, G_ema: nn.Module,
                   optimizer_states: dict, training_state: dict) -> None:
        """Continue from a snapshot: networks, optimisers, EMA, w_avg, pl mean, counters, RNG."""
        self.G.load_state_dict(G.state_dict())
        self.D.load_state_dict(D.state_dict())
        self.G_ema.load_state_dict((G_ema or G).state_dict())
        self.opt_G.load_state_dict(optimizer_states["G"])
        self.opt_D.load_state_dict(optimizer_states["D"])
        for name, scaler in self.scalers.items():
            if f"scaler_{name}" in optimizer_states:
                scaler.load_state_dict(optimizer_states[f"scaler_{name}"])
        self.pl_mean = training_state["pl_mean"].to(self.env.device)
        self.state = LoopState.from_dict(training_state["loop"])
        if "augment" in training_state:
            self.ada.load_state_dict(training_state["augment"])
        restore_rank_rng(training_state["rng"], self.env)

    def load_weights(self, G: nn.Module, D: nn.Module | None, G_ema: nn.Module | None) -> dict:
        """Transfer learning: start from another run's (or an imported) networks with fresh
        optimisers, counters and p. Returns {network: (tensors copied, tensors kept)}."""
        from models.train_transfer import copy_matching

        report = {"G": copy_matching(self.G, G, "G"),
                  "G_ema": copy_matching(self.G_ema, G_ema or G, "G_ema")}
        if D is not None:
            report["D"] = copy_matching(self.D, D, "D")
        distrib.broadcast_module(self.G, self.env)
        distrib.broadcast_module(self.D, self.env)
        distrib.broadcast_module(self.G_ema, self.env)
        return report


def frozen_layers(D: nn.Module, count: int) -> list[nn.Parameter]:
    """Freeze-D (Mo et al. 2020): the parameters of D's first `count` layers, counted as
    stylegan2-ada counts them (from the highest resolution: fromrgb, conv0, conv1, skip of
    each block; the 4x4 epilogue is never frozen)."""
    if count <= 0:
        return []
    from models.train_transfer import discriminator_layers

    layers = discriminator_layers(D)
    if count > len(layers):
        raise FfhqToolsError(f"--freezed {count}: the discriminator has {len(layers)} "
                             "freezable layers")
    return [p for _, layer in layers[:count] for p in layer.parameters()]

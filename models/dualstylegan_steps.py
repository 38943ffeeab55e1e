"""One iteration of DualStyleGAN pretraining or fine-tuning (the official scripts' loop body).

Each iteration: D main (adversarial), D reg (R1, every r1_interval), G main (adversarial +
the stage's losses, only `res` and T_s train), G reg (path length on the intrinsic w+, every
pl_interval), then the EMA of `res`. Latents, exemplar picks, jitter and path-length noise
come from `StepRandom` (seeded by seed, step, phase; drawn for the global batch and sliced by
rank), so a resumed run and a run split over ranks draw the same numbers; only the
generators' per-layer noise images use the global torch generator (saved in snapshots).
"""

from __future__ import annotations

import torch

from models import dualstylegan_losses as dl
from models import loss as losses
from models.distributed import average_gradients, mean_over_ranks
from models.dualstylegan_sources import loss_size
from models.dualstylegan_train_options import COLOUR_RESAMPLE_FROM, EMA_BETA
from models.ema import update_ema
from models.train_phases import StepRandom


def mixed_ws(G, z1: torch.Tensor, z2: torch.Tensor, inject: int) -> torch.Tensor:
    """w+ with layers < inject from z1 and the rest from z2 (rosinality's inject_index)."""
    w1, w2 = G.mapping(z1, None), G.mapping(z2, None)
    return torch.cat([w1[:, :inject], w2[:, inject:]], dim=1)


def mixing_ws(G, rand: StepRandom, per_rank: int, mixing: float) -> torch.Tensor:
    """Intrinsic w+ of `mixing_noise`: two latents crossed at a random layer with probability
    `mixing`, else one latent."""
    z1, z2 = rand.normal(per_rank, G.z_dim), rand.normal(per_rank, G.z_dim)
    cross = rand.integer(1, G.num_ws)
    if rand.scalar() < mixing:
        return mixed_ws(G, z1, z2, cross)
    return G.mapping(z1, None)


class StepContext:
    """The pieces one iteration uses; built by `models.dualstylegan_train`."""

    def __init__(self, *, net, G_ema, D, g_opt, d_opt, vgg, options, env, per_rank: int,
                 encoder=None, identity=None, style=None, reals_fn=None):
        self.net, self.G_ema, self.D = net, G_ema, D
        self.g_opt, self.d_opt = g_opt, d_opt
        self.vgg, self.options, self.env, self.per_rank = vgg, options, env, per_rank
        self.encoder, self.identity, self.style = encoder, identity, style
        self.reals_fn = reals_fn
        self.pl_mean = torch.zeros((), device=env.device)
        self.trainable = [*net.res.parameters(), *net.style.parameters()]

    @property
    def base(self):
        return self.net.generator

    def rand(self, step: int, phase: str) -> StepRandom:
        return StepRandom(self.options.seed, step, phase, self.env)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.vgg(loss_size(images, self.options.loss_resolution))


def _optimise(loss: torch.Tensor, params, optimizer, env) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    average_gradients(params, env)
    optimizer.step()


def discriminator_phase(ctx: StepContext, local: int, reals: torch.Tensor,
                        fakes: torch.Tensor, weight: float, stats: dict) -> None:
    D, opts = ctx.D, ctx.options
    D.requires_grad_(True)
    real_logits, fake_logits = D(reals), D(fakes.detach())
    d_loss = losses.discriminator_logistic(real_logits, fake_logits).mean() * weight
    _optimise(d_loss, D.parameters(), ctx.d_opt, ctx.env)
    stats.update({"Loss/D/loss": d_loss, "Loss/scores/real": real_logits.mean(),
                  "Loss/scores/fake": fake_logits.mean()})
    if local % opts.r1_interval == 0:
        reals = reals.detach().requires_grad_(True)
        r1 = losses.r1_penalty(reals, D(reals)).mean()
        _optimise(r1 * (opts.r1_gamma / 2 * opts.r1_interval), D.parameters(), ctx.d_opt,
                  ctx.env)
        stats["Loss/r1_penalty"] = r1
    D.requires_grad_(False)


def path_length_phase(ctx: StepContext, step: int, exstyle_fn, stats: dict) -> None:
    opts, G = ctx.options, ctx.base
    rand = ctx.rand(step, "Greg")
    count = max(1, ctx.per_rank // opts.pl_batch_shrink)
    with torch.no_grad():
        ws = mixing_ws(G, rand, count, opts.mixing)
        exstyle = exstyle_fn(rand, count)
    ws = ws.detach().requires_grad_(True)
    images = ctx.net.synthesize(ws, exstyle, noise_mode=opts.noise_mode)
    noise = rand.normal(count, *images.shape[1:])
    lengths = losses.path_lengths(images, ws, noise)
    batch_mean = mean_over_ranks(lengths.detach().mean(), ctx.env)
    penalty, ctx.pl_mean = losses.path_length_penalty(lengths, ctx.pl_mean, opts.pl_decay,
                                                      batch_mean)
    weighted = penalty.mean() * (opts.pl_weight * opts.pl_interval) + images[0, 0, 0, 0] * 0
    _optimise(weighted, ctx.trainable, ctx.g_opt, ctx.env)
    stats.update({"Loss/pl_penalty": penalty.mean(), "Loss/pl_mean": ctx.pl_mean})


def finish_step(ctx: StepContext) -> None:
    update_ema(ctx.G_ema.res, ctx.net.res, EMA_BETA)


# ------------------------------------------------------------------------------------------
# Pretraining
# ------------------------------------------------------------------------------------------
def pretrain_step(ctx: StepContext, step: int, local: int, inject: int) -> dict:
    """The extrinsic path learns G's own style mixing at injection index `inject`."""
    opts, G, net, stats = ctx.options, ctx.base, ctx.net, {}
    if local == 0:  # each stage starts its path-length mean afresh, as the official loop
        ctx.pl_mean = torch.zeros_like(ctx.pl_mean)
    rand = ctx.rand(step, "Gmain")
    z1, z2 = rand.normal(ctx.per_rank, G.z_dim), rand.normal(ctx.per_rank, G.z_dim)
    intrinsic, noise = G.mapping(z1, None).detach(), opts.noise_mode
    with torch.no_grad():
        target = G.synthesis(mixed_ws(G, z1, z2, inject), noise_mode=noise)
        if local % ctx.options.code_every == 0:
            exstyle = ctx.encoder.encode(G.synthesis(G.mapping(z2, None), noise_mode=noise))
        else:
            exstyle = G.mapping(z2, None)[:, 0]
        fakes = net.synthesize(intrinsic, exstyle, noise_mode=noise)
    discriminator_phase(ctx, local, ctx.reals_fn(step), fakes, opts.adv_weight, stats)
    fakes = net.synthesize(intrinsic, exstyle, noise_mode=noise)
    with torch.no_grad():
        target_feats = ctx.features(target)
    reconstruction = dl.feature_l1(ctx.features(fakes), target_feats,
                                   dl.PRETRAIN_FEATURE_WEIGHTS)
    adversarial = losses.generator_logistic_ns(ctx.D(fakes)).mean() * opts.adv_weight
    _optimise(adversarial + reconstruction, ctx.trainable, ctx.g_opt, ctx.env)
    stats.update({"Loss/G/loss": adversarial, "Loss/G/reconstruction": reconstruction})
    if local % opts.pl_interval == 0:
        path_length_phase(ctx, step, lambda r, n: G.mapping(r.normal(n, G.z_dim), None)[:, 0],
                          stats)
    finish_step(ctx)
    return stats


# ------------------------------------------------------------------------------------------
# Fine-tuning
# ------------------------------------------------------------------------------------------
def jittered_exstyle(ctx: StepContext, rand: StepRandom, indices: torch.Tensor):
    codes = ctx.style.exstyles[indices.cpu()].to(ctx.env.device)
    return codes + ctx.options.jitter * rand.normal(len(indices), *codes.shape[1:])


def paired_intrinsic(ctx: StepContext, rand: StepRandom, indices: torch.Tensor):
    """The exemplars' intrinsic z+ with the colour layers (from 8 on) resampled, as w+."""
    z_plus = ctx.style.instyles[indices.cpu()].to(ctx.env.device).clone()
    layers = z_plus.shape[1] - COLOUR_RESAMPLE_FROM
    if layers > 0:
        z_plus[:, COLOUR_RESAMPLE_FROM:] = rand.normal(len(indices), layers, z_plus.shape[2])
    return ctx.net.map_z(z_plus)


def finetune_codes(ctx: StepContext, rand: StepRandom, paired: bool):
    """(intrinsic w+, jittered extrinsic W+, exemplar indices) of one phase."""
    indices = rand.indices(ctx.per_rank, len(ctx.style))
    exstyle = jittered_exstyle(ctx, rand, indices)
    with torch.no_grad():
        if paired:
            ws = paired_intrinsic(ctx, rand, indices)
        else:
            ws = mixing_ws(ctx.base, rand, ctx.per_rank, ctx.options.mixing)
    return ws, exstyle, indices


def finetune_step(ctx: StepContext, step: int) -> dict:
    opts, net, stats = ctx.options, ctx.net, {}
    paired = step % opts.paired_every != 0
    device = ctx.env.device
    ws, exstyle, indices = finetune_codes(ctx, ctx.rand(step, "Dmain"), paired)
    reals = ctx.style.reals(indices, device) if paired else ctx.reals_fn(step)
    with torch.no_grad():
        fakes = net.synthesize(ws, exstyle, noise_mode=opts.noise_mode)
    discriminator_phase(ctx, step, reals, fakes, opts.adv_weight, stats)

    ws, exstyle, indices = finetune_codes(ctx, ctx.rand(step, "Gmain"), paired)
    exemplars = ctx.style.reals(indices, device)
    fakes = net.synthesize(ws, exstyle, noise_mode=opts.noise_mode)
    with torch.no_grad():
        real_feats = ctx.features(exemplars)
        content = net.synthesize(ws, None, use_res=False, noise_mode=opts.noise_mode)
    fake_feats = ctx.features(fakes)
    style = dl.contextual_loss(fake_feats[dl.CONTEXTUAL_FEATURE],
                               real_feats[dl.CONTEXTUAL_FEATURE]) * opts.cx_weight
    style = style + dl.style_loss(fake_feats, real_feats) * opts.style_weight
    total = style + dl.res_l2(net.res.parameters()) * opts.l2_weight
    stats["Loss/G/style"] = style
    if ctx.identity is not None and opts.id_weight > 0:
        size = opts.loss_resolution
        identity = dl.identity_loss(ctx.identity.embed(loss_size(fakes, size)),
                                    ctx.identity.embed(loss_size(content, size)))
        total = total + identity * opts.id_weight
        stats["Loss/G/identity"] = identity
    if paired:
        perceptual = dl.feature_l1(fake_feats, real_feats, dl.PERCEPTUAL_FEATURE_WEIGHTS)
        total = total + perceptual * opts.perc_weight
        stats["Loss/G/perceptual"] = perceptual
    adversarial = losses.generator_logistic_ns(ctx.D(fakes)).mean() * opts.adv_weight
    _optimise(adversarial + total, ctx.trainable, ctx.g_opt, ctx.env)
    stats["Loss/G/loss"] = adversarial
    if step % opts.pl_interval == 0:
        path_length_phase(ctx, step, lambda r, n: jittered_exstyle(
            ctx, r, r.indices(n, len(ctx.style))), stats)
    finish_step(ctx)
    return stats

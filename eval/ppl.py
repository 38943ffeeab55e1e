"""Perceptual path length (StyleGAN paper, section 4.1): `ppl_{z,w}{full,end}`, `ppl2_wend`.

For each sample: two latents, an interpolation point t (uniform in [0, 1) for "full", 0 for
"end"), images at t and t + eps (slerp of normalised z in Z, lerp of every layer's w in W),
the same synthesis noise for both ends, optional face crop, box-downsampling, scaling to
[0, 255], LPIPS distance / eps^2. Samples below the 1st ("lower") and above the 99th
("higher") percentile are dropped and the rest averaged.

Box-downsampling policy: "tf" (StyleGAN TF code: factor = cropped height // 256) or "ada"
(stylegan2-ada-pytorch: factor = generator resolution // 256, i.e. 128 px at 1024 with crop).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from eval import sampling
from ffhq_tools.errors import FfhqToolsError

EPSILON = 1e-4
POLICIES = ("tf", "ada")
NOISE_MODES = ("pair", "const", "none")  # pair: random per pair, shared by both ends
VGG_SIZE = 256


def normalize(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between the normalised a and b at t ([N] or [N, 1]); unit norm."""
    a, b = normalize(a), normalize(b)
    t = t.reshape(-1, 1)
    cos = (a * b).sum(dim=-1, keepdim=True)
    angle = t * torch.acos(cos.clamp(-1.0, 1.0))
    ortho = normalize(b - cos * a)
    return normalize(a * torch.cos(angle) + ortho * torch.sin(angle))


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """a + (b - a) t, with t ([N]) broadcast over every trailing dimension of a."""
    return a + (b - a) * t.reshape(-1, *([1] * (a.ndim - 1)))


def face_crop(images: torch.Tensor) -> torch.Tensor:
    """Rows 3c..7c and columns 2c..6c with c = H // 8 (the reference's face region)."""
    if images.shape[2] != images.shape[3]:
        raise FfhqToolsError(f"face crop needs square images, got {tuple(images.shape[2:])}")
    c = images.shape[2] // 8
    return images[:, :, 3 * c:7 * c, 2 * c:6 * c]


def downsample_factor(height: int, g_resolution: int, policy: str) -> int:
    if policy not in POLICIES:
        raise FfhqToolsError(f"downsample policy {policy!r}: expected one of {POLICIES}")
    size = height if policy == "tf" else g_resolution
    return max(size // VGG_SIZE, 1) if size > VGG_SIZE else 1


def box_downsample(images: torch.Tensor, factor: int) -> torch.Tensor:
    if factor == 1:
        return images
    n, c, h, w = images.shape
    if h % factor or w % factor:
        raise FfhqToolsError(f"cannot box-downsample {h}x{w} images by {factor}")
    return images.reshape(n, c, h // factor, factor, w // factor, factor).mean(dim=(3, 5))


def filter_outliers(distances: np.ndarray, lower: float = 1.0,
                    upper: float = 99.0) -> np.ndarray:
    """Keep lo <= d <= hi, lo = `lower` percentile (method "lower"), hi = `upper` ("higher")."""
    distances = np.asarray(distances, dtype=np.float64)
    lo = np.percentile(distances, lower, method="lower")
    hi = np.percentile(distances, upper, method="higher")
    return distances[(distances >= lo) & (distances <= hi)]


def _latent_dtype(G) -> torch.dtype:
    for tensor in G.parameters():
        return tensor.dtype
    for tensor in G.buffers():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def endpoint_latents(G, z: torch.Tensor, t: torch.Tensor, space: str, epsilon: float):
    """ws at t and t + eps for pairs (z[0::2], z[1::2]); interpolation done in float64."""
    dtype = _latent_dtype(G)
    t = t.to(torch.float64)
    if space == "z":
        z0, z1 = z[0::2].to(torch.float64), z[1::2].to(torch.float64)
        e01 = torch.cat([slerp(z0, z1, t), slerp(z0, z1, t + epsilon)]).to(dtype)
        return G.mapping(e01, None, truncation_psi=1.0).chunk(2)
    if space == "w":
        ws = G.mapping(z.to(dtype), None, truncation_psi=1.0).to(torch.float64)
        w0, w1 = ws[0::2], ws[1::2]
        return lerp(w0, w1, t).to(dtype), lerp(w0, w1, t + epsilon).to(dtype)
    raise FfhqToolsError(f"PPL space {space!r}: expected 'z' or 'w'")


def _synthesize(G, ws: torch.Tensor, noise: str, noise_seed: int, device) -> torch.Tensor:
    if noise == "pair":
        fork = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork):
            torch.manual_seed(noise_seed)
            return G.synthesis(ws, noise_mode="random")
    return G.synthesis(ws, noise_mode=noise)


def to_distance_input(images: torch.Tensor, crop: bool, g_resolution: int,
                      policy: str) -> torch.Tensor:
    """Generator output -> cropped, box-downsampled, [0, 255]-scaled float images."""
    if crop:
        images = face_crop(images)
    images = box_downsample(images, downsample_factor(images.shape[2], g_resolution, policy))
    return (images + 1) * (255 / 2)  # dtype kept: the distance casts to its own


@torch.no_grad()
def pair_distances(G, distance, z: torch.Tensor, t: torch.Tensor, *, space: str, crop: bool,
                   policy: str, noise: str, noise_seed: int, epsilon: float = EPSILON,
                   device="cpu") -> torch.Tensor:
    """d(G(t), G(t + eps)) / eps^2 for the pairs (z[0::2], z[1::2]) at t."""
    device = torch.device(device)
    w_a, w_b = endpoint_latents(G, z.to(device), t.to(device), space, epsilon)
    images = [to_distance_input(_synthesize(G, w, noise, noise_seed, device), crop,
                                G.img_resolution, policy) for w in (w_a, w_b)]
    return distance(*images).double() / epsilon ** 2


def require_unconditional(G, what: str) -> None:
    if int(getattr(G, "c_dim", 0) or 0):
        raise FfhqToolsError(f"{what} is defined for unconditional generators; this one has "
                             f"c_dim={G.c_dim}")


def _check_options(space: str, sampling_mode: str, policy: str, noise: str) -> None:
    if sampling_mode not in ("full", "end"):
        raise FfhqToolsError(f"PPL sampling {sampling_mode!r}: expected 'full' or 'end'")
    if space not in ("z", "w"):
        raise FfhqToolsError(f"PPL space {space!r}: expected 'z' or 'w'")
    if noise not in NOISE_MODES:
        raise FfhqToolsError(f"PPL noise {noise!r}: expected one of {NOISE_MODES}")
    downsample_factor(1, 1, policy)


def path_length_samples(G, distance, num_samples: int, *, space: str, sampling_mode: str,
                        crop: bool, policy: str = "tf", noise: str = "pair",
                        batch_size: int = 8, seed: int = 0, epsilon: float = EPSILON,
                        device="cpu", progress: bool = False,
                        checkpoint: Path | None = None) -> np.ndarray:
    """Every sample's scaled distance, gathered over ranks in one-process order.

    With `checkpoint`, this rank's distances so far are saved there every ~2048 samples and
    a rerun skips the batches it holds; the file goes once every rank is done.
    """
    from tqdm import tqdm

    from eval.passes import RankResults

    _check_options(space, sampling_mode, policy, noise)
    require_unconditional(G, "perceptual path length")
    results = RankResults(checkpoint, ("distances",), batch_size)
    with tqdm(total=num_samples, desc=f"ppl_{space}{sampling_mode}", unit="pair",
              file=sys.stderr, disable=not progress or results.rank != 0, leave=False) as bar:
        for index, count in results.batches(num_samples, bar):
            rng = torch.Generator().manual_seed(sampling.batch_seed(seed, index))
            z = torch.randn(2 * count, G.z_dim, generator=rng)
            t = torch.rand(count, generator=rng, dtype=torch.float64)
            t = t * (1.0 if sampling_mode == "full" else 0.0)
            results.add(distances=pair_distances(
                G, distance, z, t, space=space, crop=crop, policy=policy, noise=noise,
                noise_seed=sampling.batch_seed(seed, index) + 1, epsilon=epsilon,
                device=device).cpu().numpy())
    return results.gathered()["distances"]


def perceptual_path_length(G, distance, num_samples: int, *, space: str, sampling_mode: str,
                           crop: bool, policy: str = "tf", noise: str = "pair",
                           batch_size: int = 8, seed: int = 0, device="cpu",
                           progress: bool = False, checkpoint: Path | None = None) -> dict:
    """{"ppl": mean of the filtered distances, "num_kept", "num_samples"}."""
    samples = path_length_samples(G, distance, num_samples, space=space,
                                  sampling_mode=sampling_mode, crop=crop, policy=policy,
                                  noise=noise, batch_size=batch_size, seed=seed, device=device,
                                  progress=progress, checkpoint=checkpoint)
    if not np.isfinite(samples).all():
        raise FfhqToolsError("perceptual path length: non-finite distances (NaN/inf in the "
                             "generator output or the distance network)")
    kept = filter_outliers(samples)
    return {"ppl": float(kept.mean()), "num_kept": int(kept.size),
            "num_samples": int(samples.size)}


# ---- registered metrics --------------------------------------------------------------------

STYLEGAN_NUM_SAMPLES = 100_000   # StyleGAN (v1) paper protocol
STYLEGAN2_NUM_SAMPLES = 50_000   # StyleGAN2 / stylegan2-ada protocol
# name -> (space, sampling, crop, samples); "_ada" variants follow stylegan2-ada-pytorch
# (downsample by G resolution // 256, the generator's constant noise).
PPL_METRICS = {
    "ppl_zfull": ("z", "full", True, STYLEGAN_NUM_SAMPLES),
    "ppl_wfull": ("w", "full", True, STYLEGAN_NUM_SAMPLES),
    "ppl_zend": ("z", "end", True, STYLEGAN_NUM_SAMPLES),
    "ppl_wend": ("w", "end", True, STYLEGAN_NUM_SAMPLES),
    "ppl2_wend": ("w", "end", False, STYLEGAN2_NUM_SAMPLES),
}


def _ppl_metric(ctx, space: str, sampling_mode: str, crop: bool) -> dict:
    from eval.features import lpips
    from eval.passes import generator_partial

    num = ctx.count("num_samples", ctx.num_gen)
    source = lpips.preferred_source(ctx.weights_overrides)
    distance = lpips.load_distance(ctx.resolve_weights, source, ctx.device)
    ctx.use("distance", source)
    options = {"space": space, "sampling_mode": sampling_mode, "crop": crop,
               "policy": ctx.protocol["downsample"], "noise": ctx.protocol["noise"]}
    fields = {"partial": "ppl/v1", "num": num, "epsilon": EPSILON, **options,
              "weights": dict(ctx.weights_used)}
    result = perceptual_path_length(
        ctx.generator, distance, num, **options, batch_size=ctx.batch_size, seed=ctx.seed,
        device=ctx.device, progress=ctx.progress, checkpoint=generator_partial(ctx, fields))
    ctx.use("num_kept", result["num_kept"])
    return {"ppl": result["ppl"]}


def _register(name: str, space: str, sampling_mode: str, crop: bool, num: int,
              policy: str, noise: str) -> None:
    from eval.registry import register_metric

    protocol = {"num_samples": num, "epsilon": EPSILON, "space": space,
                "sampling": sampling_mode, "crop": crop, "downsample": policy, "noise": noise,
                "truncation_psi": 1.0, "percentiles": [1, 99]}
    where = "full paths" if sampling_mode == "full" else "path endpoints"
    register_metric(
        name, protocol=protocol, needs=("generator",),
        weights=("vgg16", "lpips-vgg-lin", "vgg16-ts"),
        weight_options=(("vgg16-ts",), ("vgg16", "lpips-vgg-lin")),
        description=f"Perceptual path length in {space.upper()}, {where}, "
                    f"{'face crop' if crop else 'full image'}, {num:,} samples, "
                    f"{policy} downsampling")(
        lambda ctx: _ppl_metric(ctx, space, sampling_mode, crop))


for _name, (_space, _sampling, _crop, _num) in PPL_METRICS.items():
    _register(_name, _space, _sampling, _crop, _num, "tf", "pair")
    _register(f"{_name}_ada", _space, _sampling, _crop, STYLEGAN2_NUM_SAMPLES, "ada", "const")

"""Linear separability (StyleGAN paper, section 4.2): metric `ls`.

Per attribute: classify every generated image, keep the half the classifier is most sure of
(sorted by -max p, stable), fit a linear SVM latent -> classifier label on the kept set and
predict the same set; H(Y | X) in bits from the 2x2 table of (X = SVM class, Y = classifier
class), clipped at 0. Score = 2 ** sum over attributes of H, for z and for w (w = the last
layer's dlatent). Lower is better; a perfectly separable attribute contributes 2^0 = 1.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from eval import sampling
from ffhq_tools.errors import FfhqToolsError
from ffhq_tools.weights import CELEBAHQ_ATTRIBUTES

NUM_SAMPLES = 200_000
NUM_KEEP = 100_000
# sklearn.svm.LinearSVC() as the reference code called it (its 2019 defaults, explicit here).
SVM_OPTIONS = {"C": 1.0, "loss": "squared_hinge", "dual": True, "tol": 1e-4, "max_iter": 1000}


def entropy_bits(p: np.ndarray) -> float:
    p = np.asarray(p, dtype=np.float64).ravel()
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def conditional_entropy(table) -> float:
    """H(Y | X) in bits of a joint table with X along axis 0 and Y along axis 1; >= 0."""
    p = np.asarray(table, dtype=np.float64)
    total = p.sum()
    if total <= 0:
        raise ValueError("conditional entropy of an empty table")
    p = p / total
    return max(0.0, entropy_bits(p) - entropy_bits(p.sum(axis=1)))


def joint_table(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2x2 counts: rows = predicted (SVM) class, columns = target (classifier) class."""
    table = np.zeros((2, 2), dtype=np.int64)
    np.add.at(table, (np.asarray(predicted, int), np.asarray(target, int)), 1)
    return table


def most_confident(probabilities: np.ndarray, num_keep: int) -> np.ndarray:
    """Indices of the `num_keep` samples with the largest max-probability (stable order)."""
    confidence = np.asarray(probabilities).max(axis=1)
    return np.argsort(-confidence, kind="stable")[:num_keep]


def svm_predictions(latents: np.ndarray, labels: np.ndarray, svm_options: dict) -> np.ndarray:
    """Fit LinearSVC on (latents, labels) and predict the same latents.

    A single-class label set needs no classifier: the prediction is that class (H = 0).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    if np.unique(labels).size < 2:
        return labels.copy()
    svm = LinearSVC(**svm_options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the reference capped iterations
        svm.fit(latents, labels)
    return svm.predict(latents)


def attribute_entropy(latents: np.ndarray, probabilities: np.ndarray, num_keep: int,
                      svm_options: dict = SVM_OPTIONS) -> float:
    keep = most_confident(probabilities, num_keep)
    labels = np.argmax(probabilities[keep], axis=1)
    predicted = svm_predictions(np.asarray(latents)[keep], labels, svm_options)
    return conditional_entropy(joint_table(predicted, labels))


def separability_from_samples(latents: dict[str, np.ndarray],
                              probabilities: dict[int, np.ndarray], num_keep: int,
                              svm_options: dict = SVM_OPTIONS) -> dict:
    """Scores and per-attribute entropies from collected latents ({"z", "w"}) and class
    probabilities ({attribute index: [N, 2]})."""
    per_attribute = {}
    for index, probs in sorted(probabilities.items()):
        per_attribute[index] = {space: attribute_entropy(values, probs, num_keep, svm_options)
                                for space, values in latents.items()}
    scores = {space: float(2.0 ** sum(h[space] for h in per_attribute.values()))
              for space in latents}
    return {"scores": scores, "entropies": per_attribute}


@torch.no_grad()
def collect_samples(G, classifiers: dict, num: int, batch_size: int, seed: int, device,
                    progress: bool = False, checkpoint: Path | None = None):
    """Generate `num` images; latents z, w (last layer) and every classifier's probabilities,
    gathered over ranks in one-process order. With `checkpoint`, this rank's samples are saved
    every ~2048 images and a rerun skips the batches it holds."""
    from tqdm import tqdm

    from eval.features.attributes import class_probabilities, prepare_images
    from eval.passes import RankResults

    device = torch.device(device)
    results = RankResults(checkpoint, ("z", "w", *(f"p{i}" for i in classifiers)), batch_size)
    fork = [device] if device.type == "cuda" else []
    with tqdm(total=num, desc="ls samples", unit="img", file=sys.stderr,
              disable=not progress or results.rank != 0, leave=False) as bar:
        for index, count in results.batches(num, bar):
            rng = torch.Generator().manual_seed(sampling.batch_seed(seed, index))
            z = torch.randn(count, G.z_dim, generator=rng).to(device)
            ws = G.mapping(z, None, truncation_psi=1.0)
            with torch.random.fork_rng(devices=fork):
                torch.manual_seed(sampling.batch_seed(seed, index) + 1)
                images = G.synthesis(ws, noise_mode="random").float()
            probabilities = {f"p{i}": class_probabilities(
                net(prepare_images(images, net.config.resolution))).double().cpu().numpy()
                for i, net in classifiers.items()}
            results.add(z=z.cpu().numpy(), w=ws[:, -1].float().cpu().numpy(), **probabilities)
    arrays = results.gathered()
    return {"z": arrays["z"], "w": arrays["w"]}, {i: arrays[f"p{i}"] for i in classifiers}


def linear_separability(G, classifiers: dict, num_samples: int = NUM_SAMPLES,
                        num_keep: int | None = None, batch_size: int = 16, seed: int = 0,
                        device="cpu", progress: bool = False,
                        svm_options: dict = SVM_OPTIONS, checkpoint: Path | None = None) -> dict:
    """The separability of `G` in Z and W with the given {attribute index: classifier}.

    Returns {"scores": {"z", "w"}, "entropies": {index: {"z", "w"}}, counts}.
    """
    if not classifiers:
        raise FfhqToolsError("linear separability needs at least one attribute classifier")
    from eval.ppl import require_unconditional

    require_unconditional(G, "linear separability")
    num_keep = num_samples // 2 if num_keep is None else num_keep
    if not 2 <= num_keep <= num_samples:
        raise FfhqToolsError(f"num_keep must be in [2, num_samples]; got {num_keep} of "
                             f"{num_samples}")
    group = max(net.config.mbstd_group_size for net in classifiers.values())
    if group > 1 and (batch_size % group or num_samples % group):
        raise FfhqToolsError(f"linear separability: batch size ({batch_size}) and sample count "
                             f"({num_samples}) must be multiples of the classifiers' "
                             f"minibatch-stddev group size {group}")
    for net in classifiers.values():
        net.to(device).eval()
    latents, probabilities = collect_samples(G, classifiers, num_samples, batch_size, seed,
                                             device, progress, checkpoint)
    result = separability_from_samples(latents, probabilities, num_keep, svm_options)
    return {**result, "num_samples": num_samples, "num_keep": num_keep}


# ---- registered metric ---------------------------------------------------------------------

def _ls(ctx) -> dict:
    from eval.features.attributes import load_attribute_classifiers
    from eval.passes import generator_partial

    num = ctx.count("num_samples", ctx.num_gen)
    if num % 4:
        raise FfhqToolsError(f"ls: --num-gen {num} must be a multiple of 4 (the classifiers' "
                             "minibatch-stddev groups)")
    num_keep = num * ctx.protocol["num_keep"] // ctx.protocol["num_samples"]
    ctx.use("num_keep", num_keep)
    indices = range(len(CELEBAHQ_ATTRIBUTES))
    classifiers = load_attribute_classifiers(ctx.resolve_weights, indices, ctx.device)
    batch = max(4, ctx.batch_size - ctx.batch_size % 4)  # whole minibatch-stddev groups
    ctx.use("batch_size", batch)
    fields = {"partial": "ls/v1", "num": num, "weights": dict(ctx.weights_used)}
    result = linear_separability(ctx.generator, classifiers, num, num_keep, batch, ctx.seed,
                                 ctx.device, ctx.progress,
                                 checkpoint=generator_partial(ctx, fields))
    ctx.notes["entropy_bits"] = {CELEBAHQ_ATTRIBUTES[i]: h
                                 for i, h in result["entropies"].items()}
    return {"ls_z": result["scores"]["z"], "ls_w": result["scores"]["w"]}


def _register() -> None:
    from eval.features.attributes import registry_name
    from eval.registry import register_metric

    register_metric(
        "ls", protocol={"num_samples": NUM_SAMPLES, "num_keep": NUM_KEEP,
                        "attributes": len(CELEBAHQ_ATTRIBUTES), "svm": "LinearSVC",
                        "svm_options": SVM_OPTIONS, "w_layer": "last",
                        "truncation_psi": 1.0, "noise_mode": "random"},
        needs=("generator",),
        weights=tuple(registry_name(i) for i in range(len(CELEBAHQ_ATTRIBUTES))),
        description="Linear separability in Z and W over the 40 CelebA-HQ attributes "
                    "(200,000 samples, most confident 100,000 kept)")(_ls)


_register()

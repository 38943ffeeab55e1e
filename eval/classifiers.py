"""Training our own CelebA-HQ attribute classifiers (for linear separability) from an HDF5 file.

Input: a ProGAN-layout HDF5 file with image levels `data{R}x{R}` (uint8 N, C, R, R) and an
`attributes` dataset (N, 40) in CelebA-HQ order (`ffhq_tools.weights.CELEBAHQ_ATTRIBUTES`;
values > 0 mean "present", so both 0/1 and -1/+1 annotations work). When the dataset carries
an attribute-name list (HDF5 attribute `names`) it must match that order.

One `AttributeClassifier` per attribute, trained with the logistic loss on 2 * logit (so
softmax([logit, -logit])[0] is the probability that the attribute is present), Adam
(lr 1e-3, betas (0, 0.99)), random x-flips. The last `holdout` share of images is never
trained on and gives the held-out accuracy (with the majority-class baseline next to it).
Each finished classifier is written atomically; re-running skips finished attributes.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from eval.features.attributes import (
    AttributeClassifier,
    ClassifierConfig,
    load_own_classifier,
    save_classifier,
)
from ffhq_tools.errors import FfhqToolsError
from ffhq_tools.weights import CELEBAHQ_ATTRIBUTES

IN_MEMORY_BYTES = 2 << 30


class TrainingDataError(FfhqToolsError):
    """An HDF5 file that cannot be used to train attribute classifiers."""


@dataclass(frozen=True)
class TrainOptions:
    resolution: int = 256
    steps: int = 20_000
    batch_size: int = 32
    lr: float = 1e-3
    holdout: float = 0.1
    fmap_base: int = 8192
    fmap_max: int = 512
    seed: int = 0
    device: str = "cpu"


def classifier_filename(index: int) -> str:
    return f"celebahq-classifier-{index:02d}-{CELEBAHQ_ATTRIBUTES[index]}.pt"


def parse_attributes(spec: str | None) -> list[int]:
    """'all' / None, or a comma list of names or indices -> attribute indices."""
    if spec is None or spec == "all":
        return list(range(len(CELEBAHQ_ATTRIBUTES)))
    indices = []
    for item in spec.split(","):
        item = item.strip()
        if item.isdigit() and int(item) < len(CELEBAHQ_ATTRIBUTES):
            indices.append(int(item))
        elif item in CELEBAHQ_ATTRIBUTES:
            indices.append(CELEBAHQ_ATTRIBUTES.index(item))
        else:
            import difflib

            close = difflib.get_close_matches(item, CELEBAHQ_ATTRIBUTES, n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise FfhqToolsError(f"--attributes: unknown attribute {item!r}.{hint}")
    return indices


class AttributeData:
    """Images of one resolution and the (N, 40) presence matrix of an HDF5 file."""

    def __init__(self, path: str | Path, resolution: int):
        from ffhq_tools.data.layout import open_dataset

        self.path = Path(path)
        if not self.path.is_file():
            raise TrainingDataError(f"--data {self.path}: no such file")
        self.file = open_dataset(self.path)
        level = f"data{resolution}x{resolution}"
        if level not in self.file:
            levels = sorted(k for k in self.file.keys() if k.startswith("data"))
            raise TrainingDataError(f"{self.path}: no '{level}' dataset (has: "
                                    f"{', '.join(levels) or 'none'}); pick --resolution")
        if "attributes" not in self.file:
            raise TrainingDataError(f"{self.path}: no 'attributes' dataset (N, 40) to learn from")
        self.images = self.file[level]
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise TrainingDataError(f"{self.path}:{level} must be uint8 (N, C, R, R), got "
                                    f"{self.images.dtype} {self.images.shape}")
        if self.images.size <= IN_MEMORY_BYTES:  # small sets: one read, no random access
            self.images = self.images[()]
        attrs = self.file["attributes"]
        self._check(attrs)
        self.present = np.asarray(attrs[()]) > 0

    def _check(self, attrs) -> None:
        if attrs.ndim != 2 or attrs.shape[1] != len(CELEBAHQ_ATTRIBUTES):
            raise TrainingDataError(f"{self.path}:attributes has shape {attrs.shape}, expected "
                                    f"(N, {len(CELEBAHQ_ATTRIBUTES)}) in CelebA-HQ order")
        if attrs.shape[0] != self.images.shape[0]:
            raise TrainingDataError(f"{self.path}: {attrs.shape[0]} attribute rows for "
                                    f"{self.images.shape[0]} images")
        names = attrs.attrs.get("names")
        if names is not None:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
            if [n.lower() for n in names] != list(CELEBAHQ_ATTRIBUTES):
                raise TrainingDataError(f"{self.path}:attributes names are not in CelebA-HQ "
                                        f"order (first: {names[:3]})")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, indices: np.ndarray) -> torch.Tensor:
        order = np.argsort(indices)
        sorted_idx = indices[order]
        unique, inverse = np.unique(sorted_idx, return_inverse=True)
        rows = unique if isinstance(self.images, np.ndarray) else unique.tolist()
        data = self.images[rows][inverse]
        restored = np.empty_like(data)
        restored[order] = data
        return torch.from_numpy(restored).float() / 127.5 - 1

    def close(self) -> None:
        self.file.close()


def split(n: int, holdout: float) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < holdout < 1:
        raise FfhqToolsError(f"--holdout must be between 0 and 1 (got {holdout})")
    n_val = max(1, int(round(n * holdout)))
    if n - n_val < 2:
        raise TrainingDataError(f"only {n} images: too few to train and hold out {holdout:.0%}")
    return np.arange(n - n_val), np.arange(n - n_val, n)


def _train_one(data: AttributeData, index: int, train_idx: np.ndarray, opts: TrainOptions,
               progress: bool) -> AttributeClassifier:
    from tqdm import tqdm

    torch.manual_seed(opts.seed + index)
    rng = np.random.default_rng(opts.seed + index)
    config = ClassifierConfig(resolution=opts.resolution, num_channels=data.images.shape[1],
                              fmap_base=opts.fmap_base, fmap_max=opts.fmap_max)
    net = AttributeClassifier(config).to(opts.device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=opts.lr, betas=(0.0, 0.99), eps=1e-8)
    targets = torch.from_numpy(data.present[:, index].astype(np.float32))
    batch = opts.batch_size - opts.batch_size % 4 or 4  # whole minibatch-stddev groups
    name = CELEBAHQ_ATTRIBUTES[index]
    for _ in tqdm(range(opts.steps), desc=f"train {name}", file=sys.stderr,
                  disable=not progress, leave=False):
        chosen = rng.choice(train_idx, size=batch, replace=len(train_idx) < batch)
        images = data.batch(chosen).to(opts.device)
        flip = torch.from_numpy(rng.random(batch) < 0.5).to(opts.device)
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)
        logits = net(images).flatten()
        loss = F.binary_cross_entropy_with_logits(2 * logits, targets[chosen].to(opts.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return net.eval().requires_grad_(False)


@torch.no_grad()
def heldout_accuracy(net: AttributeClassifier, data: AttributeData, index: int,
                     val_idx: np.ndarray, device="cpu", batch_size: int = 32) -> dict:
    """Accuracy of `net` on held-out images, next to the majority-class baseline."""
    batch_size = batch_size - batch_size % 4 or 4
    predictions = []
    for start in range(0, len(val_idx), batch_size):
        idx = val_idx[start:start + batch_size]
        predictions.append((net(data.batch(idx).to(device)).flatten() > 0).cpu().numpy())
    predicted = np.concatenate(predictions)
    truth = data.present[val_idx, index]
    return {"accuracy": float((predicted == truth).mean()),
            "majority_baseline": float(max(truth.mean(), 1 - truth.mean())),
            "num_heldout": int(len(val_idx)), "positive_rate": float(truth.mean())}


def train_classifiers(data_path: str | Path, out_dir: str | Path, attributes: list[int],
                      opts: TrainOptions = TrainOptions(), progress: bool = True) -> dict:
    """Train (or resume) one classifier per attribute; returns {attribute: held-out report}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = AttributeData(data_path, opts.resolution)
    try:
        train_idx, val_idx = split(len(data), opts.holdout)
        report = {}
        for index in attributes:
            path = out_dir / classifier_filename(index)
            if path.is_file():
                net, payload = load_own_classifier(path)
                report[CELEBAHQ_ATTRIBUTES[index]] = {**payload["metrics"], "resumed": True}
                continue
            net = _train_one(data, index, train_idx, opts, progress)
            metrics = heldout_accuracy(net, data, index, val_idx, opts.device, opts.batch_size)
            metrics.update(steps=opts.steps, num_train=int(len(train_idx)))
            save_classifier(path, net.cpu(), CELEBAHQ_ATTRIBUTES[index], metrics)
            report[CELEBAHQ_ATTRIBUTES[index]] = metrics
    finally:
        data.close()
    from ffhq_tools.atomic import write_json_atomic

    write_json_atomic(out_dir / "report.json", {"data": str(data_path), "options": vars_of(opts),
                                                "attributes": report})
    return report


def vars_of(opts: TrainOptions) -> dict:
    from dataclasses import asdict

    return asdict(opts)


def weights_flags(out_dir: str | Path, attributes: list[int]) -> str:
    """The `--weights` flags that point the `ls` metric at these classifiers."""
    folder = Path(out_dir)
    return " ".join(f"--weights celebahq-classifier-{i:02d}={folder / classifier_filename(i)}"
                    for i in attributes)


def summary_json(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=True)

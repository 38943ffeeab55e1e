"""StyleGAN2's attribution test (section 5): project N images the network generated and N real
images; generated ones project almost exactly (small LPIPS distance), real ones do not.

Writes OUT/generated/<seed>/ and OUT/real/<name>/ (ordinary projection folders, resumable),
OUT/attribution.jsonl (one row per image), OUT/attribution.md (the table) and
OUT/attribution.png (the two histograms). The threshold is --threshold when given, else the
one that best separates the two sets (highest balanced accuracy), and the report says which.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ffhq_tools.atomic import atomic_path, write_json_atomic
from ffhq_tools.errors import FfhqToolsError
from models.project.projector import Projector
from models.project.run import project_targets
from models.project.targets import Target

CLASSES = ("generated", "real")


def generated_targets(G, seeds: list[int]) -> list[Target]:
    from models.generate import generate_images

    def loader(seed: int) -> Callable[[], np.ndarray]:
        return lambda: next(generate_images(G, [seed], noise_mode="const"))[1]

    return [Target(f"seed{s:04d}", f"G seed {s}", loader(s)) for s in seeds]


def real_subset(targets: list[Target], num: int, seed: int) -> list[Target]:
    """A seeded subset of num targets, in their original order."""
    if len(targets) < num:
        raise FfhqToolsError(f"--attribution needs {num} real images, the targets hold only "
                             f"{len(targets)} (lower --num)")
    keep = np.sort(np.random.RandomState(seed).permutation(len(targets))[:num])
    return [targets[i] for i in keep]


def best_threshold(generated: np.ndarray, real: np.ndarray) -> float:
    """The midpoint threshold with the highest balanced accuracy (generated below it)."""
    values = np.unique(np.concatenate([generated, real]))
    candidates = np.concatenate([(values[:-1] + values[1:]) / 2, values[-1:] + 1e-12])
    scores = [(np.mean(generated < t) + np.mean(real >= t)) / 2 for t in candidates]
    return float(candidates[int(np.argmax(scores))])


def class_stats(distances: np.ndarray, threshold: float) -> dict:
    return {"count": int(len(distances)), "mean": float(np.mean(distances)),
            "median": float(np.median(distances)), "std": float(np.std(distances)),
            "min": float(np.min(distances)), "max": float(np.max(distances)),
            "share_below": float(np.mean(distances < threshold))}


def attribution_report(rows: list[dict], threshold: float | None) -> dict:
    by_class = {c: np.array([r["distance"] for r in rows if r["class"] == c]) for c in CLASSES}
    if any(len(v) == 0 for v in by_class.values()):
        raise FfhqToolsError("attribution: both generated and real images must have projected "
                             "(see rejects.jsonl under OUT/real)")
    source = "given" if threshold is not None else "best split"
    if threshold is None:
        threshold = best_threshold(by_class["generated"], by_class["real"])
    return {"threshold": threshold, "threshold_source": source,
            "classes": {c: class_stats(v, threshold) for c, v in by_class.items()}}


def report_table(report: dict) -> str:
    t = report["threshold"]
    lines = [f"| class | n | mean | median | std | min | max | share < {t:.4g} |",
             "|---|---|---|---|---|---|---|---|"]
    for name, s in report["classes"].items():
        lines.append(f"| {name} | {s['count']} | {s['mean']:.4f} | {s['median']:.4f} | "
                     f"{s['std']:.4f} | {s['min']:.4f} | {s['max']:.4f} | "
                     f"{100 * s['share_below']:.1f}% |")
    lines.append(f"\nthreshold {t:.4g} ({report['threshold_source']})")
    return "\n".join(lines) + "\n"


def write_histogram(path: Path, rows: list[dict], threshold: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    values = np.array([r["distance"] for r in rows])
    bins = np.linspace(values.min(), values.max(), 30) if values.max() > values.min() else 10
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name in CLASSES:
        ax.hist([r["distance"] for r in rows if r["class"] == name], bins=bins, alpha=0.6,
                label=name)
    ax.axvline(threshold, color="k", linestyle="--", linewidth=1)
    ax.set_xlabel("distance between image and its projection")
    ax.set_ylabel("images")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def run_attribution(projector: Projector, real_targets: list[Target], out: str | Path, *,
                    num: int, seed: int, options: dict, batch_size: int = 4,
                    checkpoint_every: int = 100, threshold: float | None = None,
                    progress: bool = True) -> dict:
    out = Path(out)
    sets = {"generated": generated_targets(projector.G, list(range(seed, seed + num))),
            "real": real_subset(real_targets, num, seed)}
    rows = []
    for name, targets in sets.items():
        summary = project_targets(projector, targets, out / name, seed=seed, options=options,
                                  batch_size=batch_size, checkpoint_every=checkpoint_every,
                                  progress=progress)
        rows += [{"class": name, "target": r["target"], "source": r["source"],
                  "distance": r["distance"]} for r in summary.done]
    report = attribution_report(rows, threshold)
    lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    with atomic_path(out / "attribution.jsonl") as tmp:
        tmp.write_text(lines)
    write_json_atomic(out / "attribution.json", report)
    with atomic_path(out / "attribution.md") as tmp:
        tmp.write_text(report_table(report))
    write_histogram(out / "attribution.png", rows, report["threshold"])
    return report

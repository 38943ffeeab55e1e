"""The demo's HTML report: every section is always present; a stage that did not complete says
why in its section instead of showing stale or invented output."""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPORT_SECTIONS = ("Summary", "Photos and alignment", "Dataset", "Training", "Samples",
                   "Metrics", "Published baselines", "Provenance")
FACE_SPACE_NOTE = (
    "fd_dlib_face and pr_dlib_face are computed in the 128-d face-descriptor space of dlib's "
    "face-recognition ResNet (shipped with face_recognition_models, so available offline). They "
    "are NOT the papers' FID (Inception) or precision/recall (VGG16) and are not comparable "
    "with published numbers.")


def contact_sheet(paths: list[Path], out: Path, thumb: int = 96, columns: int = 8) -> Path:
    """Thumbnails of images of any size, tiled into one PNG."""
    from PIL import Image

    from ffhq_tools.atomic import atomic_path

    rows = max(1, -(-len(paths) // columns))
    sheet = Image.new("RGB", (columns * thumb, rows * thumb), "white")
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((thumb, thumb))
            sheet.paste(image, ((i % columns) * thumb, (i // columns) * thumb))
    with atomic_path(out, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG")
    return out


def _stage(state, name):
    return next((s for s in state.stages if s.name == name), None)


def _not_done(section, state, *names) -> bool:
    """Explain in `section` when a stage it shows did not complete; True if so."""
    for name in names:
        stage = _stage(state, name)
        if stage is None or stage.status != "done":
            reason = "did not start" if stage is None else f"{stage.status}: {stage.detail}"
            section.text(f"Stage '{name}' {reason}", note=True)
            return True
    return False


def _summary(section, state, seconds: float) -> None:
    import pandas as pd

    frame = pd.DataFrame([vars(s) for s in state.stages]).set_index("name")
    section.text(f"Run folder {state.run_dir}; total {seconds:.0f} s "
                 f"({'quick mode' if state.options.quick else 'full mode'}).")
    section.table(frame, float_format="{:.1f}")


def _photos(section, state) -> None:
    if _not_done(section, state, "photos"):
        return
    section.image(contact_sheet(state.photos, state.run_dir / "report-photos.png"),
                  f"{len(state.photos)} input photos")
    if _not_done(section, state, "align"):
        return
    section.image(contact_sheet(state.aligned, state.run_dir / "report-aligned.png", 64, 12),
                  f"{len(state.aligned)} faces aligned with the FFHQ procedure")
    if state.align_rejects:
        section.text("Rejected inputs:").items(state.align_rejects)


def _dataset(section, state) -> None:
    import h5py
    import pandas as pd

    if _not_done(section, state, "pack"):
        return
    with h5py.File(state.dataset, "r") as f:
        rows = [{"dataset": k, "shape": str(v.shape), "dtype": str(v.dtype)}
                for k, v in f.items() if hasattr(v, "shape")]
    section.text(f"{state.dataset.name} ({state.dataset.stat().st_size / 1024:.0f} KiB)")
    section.table(pd.DataFrame(rows))


def _training(section, state) -> None:
    from ffhq_tools.atomic import read_jsonl
    from leaderboards.plots import load_loss_history, plot_series

    if _not_done(section, state, "train"):
        return
    stats = read_jsonl(state.train_dir / "stats.jsonl")
    losses = load_loss_history(state.train_dir)
    if losses:
        section.image(plot_series(losses, state.run_dir / "report-losses.png",
                                  title="training losses per tick"), "losses against kimg")
    speeds = [r["sec_per_kimg"] for r in stats[1:] if "sec_per_kimg" in r]
    if speeds:
        section.text(f"{len(stats)} ticks; median {np.median(speeds):.0f} s/kimg on "
                     f"{state.options.device}.")
    for name, caption in (("reals.png", "training images"), ("fakes_init.png", "fakes at start")):
        if (state.train_dir / name).exists():
            section.image(state.train_dir / name, caption)
    fakes = sorted(state.train_dir.glob("fakes0*.png"))
    if fakes:
        section.image(fakes[-1], f"fakes at the end ({fakes[-1].name})")


def _samples(section, state) -> None:
    if _not_done(section, state, "generate"):
        return
    for caption, path in state.figures.items():
        section.image(path, caption)


def _metrics(section, state) -> None:
    import pandas as pd

    from leaderboards.board import read_board
    from leaderboards.plots import load_metric_history, plot_metric_history

    section.text(FACE_SPACE_NOTE)
    if _not_done(section, state, "score"):
        return
    if state.board and state.board.exists():
        board = read_board(state.board)
        shown = board[["metric", "result", "value", "num_gen", "num_real", "feature_network",
                       "kimg", "wall_time_s"]]
        section.table(shown, "Leaderboard rows (leaderboard.csv)")
    if state.skipped_metrics:
        skipped = (pd.DataFrame(state.skipped_metrics)
                   .groupby(["weights", "fix"], sort=True)["metric"]
                   .agg(lambda m: ", ".join(sorted(m))).reset_index()
                   .rename(columns={"metric": "metrics skipped"}))
        section.table(skipped, "Skipped: these weights are not on this machine. Fetch them (or "
                      "`ffhq-tools weights import NAME FILE`), then re-score with "
                      "`ffhq-tools score`", float_format="{}")
    if state.failed_metrics:
        section.text("Metrics that failed:", note=True)
        section.table(pd.DataFrame(state.failed_metrics))
    if state.train_dir and list(state.train_dir.glob("metric-*.jsonl")):
        history = load_metric_history(state.train_dir)
        section.image(plot_metric_history(history, state.run_dir / "report-metric-kimg.png",
                                          "face-space metrics at each snapshot"),
                      "metric against kimg during training")


def _baselines(section) -> None:
    from leaderboards.layouts import get_layout
    from leaderboards.tables import format_frame, pivot_published

    layout = get_layout("stylegan2-table1")
    section.text("For scale: the published StyleGAN2 Table 1 (FFHQ 1024 px, 25M images shown, "
                 "Inception/VGG16 features). The demo's tiny 16-32 px model trained for minutes "
                 "on one face is not comparable; `ffhq-tools leaderboard compare` refuses such "
                 "comparisons unless features and modes match.")
    section.table(format_frame(pivot_published(layout), layout), "StyleGAN2 Table 1 (published)")


def _provenance(section, state) -> None:
    import json

    from ffhq_tools.doctor import package_versions

    section.code(json.dumps({"options": {k: str(v) for k, v in vars(state.options).items()},
                             "versions": package_versions(),
                             "snapshot": str(state.snapshot)}, indent=2))
    section.text(f"Full log: {state.run_dir / 'log.txt'}")


def build_report(state, seconds: float) -> Path:
    from leaderboards.report import Section, write_report

    sections = {name: Section(name) for name in REPORT_SECTIONS}
    _summary(sections["Summary"], state, seconds)
    builders = {"Photos and alignment": _photos, "Dataset": _dataset, "Training": _training,
                "Samples": _samples, "Metrics": _metrics, "Provenance": _provenance}
    for name, builder in builders.items():
        try:
            builder(sections[name], state)
        except Exception as exc:  # a broken section must not hide the others
            sections[name].text(f"could not build this section: {type(exc).__name__}: {exc}",
                                note=True)
    _baselines(sections["Published baselines"])
    return write_report(state.run_dir / "report.html", "ffhq-tools demo",
                        list(sections.values()),
                        subtitle="align -> pack -> train -> generate -> score, offline on CPU")

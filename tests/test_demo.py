"""The end-to-end demo: stage policy and report structure (fast), the quick demo (slow)."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from ffhq_tools.demo import DemoOptions, DemoState, _run_stage, run_demo
from ffhq_tools.demo_report import REPORT_SECTIONS, build_report
from ffhq_tools.demo_stages import bundled_photos
from ffhq_tools.errors import FfhqToolsError
from leaderboards.board import read_board


def _anchors(html: str) -> list[str]:
    return re.findall(r'<h2 id="([^"]+)">', html)


def test_a_failed_stage_is_reported_and_its_dependents_do_not_run(tmp_path):
    state = DemoState(tmp_path, DemoOptions(quick=True).resolved())

    def broken(_state):
        raise FfhqToolsError("no photos for you")

    _run_stage(state, "photos", broken)
    _run_stage(state, "align", lambda s: "must not run")
    _run_stage(state, "pack", lambda s: "must not run")
    assert [(s.name, s.status) for s in state.stages] == [
        ("photos", "failed"), ("align", "not run"), ("pack", "not run")]
    assert "no photos for you" in state.stages[0].detail
    assert "photos" in state.stages[1].detail

    html = build_report(state, 1.0).read_text()
    assert _anchors(html) == [s.lower().replace(" ", "-") for s in REPORT_SECTIONS]
    assert "no photos for you" in html and "did not start" in html
    assert "StyleGAN2 Table 1 (published)" in html  # context shown even when nothing ran


def test_quick_photo_set_is_the_astronaut_under_known_changes(tmp_path):
    paths = bundled_photos(tmp_path, seed=0, quick=True)
    assert len(paths) == 12 and len({p.name for p in paths}) == 12
    sizes = {p.name: Image.open(p).size for p in paths}
    assert sizes["astronaut-original.png"] == (512, 512)
    assert sizes["astronaut-crop.png"] == (482, 472)
    assert sizes["astronaut-shift-warm.png"] == (632, 602)
    original = Image.open(tmp_path / "astronaut-original.png")
    mirror = Image.open(tmp_path / "astronaut-mirror.png")
    assert mirror.transpose(Image.FLIP_LEFT_RIGHT).tobytes() == original.tobytes()


def test_resume_refuses_a_folder_that_is_not_a_demo_run(tmp_path):
    from ffhq_tools.runs import write_options

    with pytest.raises(FfhqToolsError, match="not a run directory"):
        run_demo(DemoOptions(resume=tmp_path))
    write_options(tmp_path, {"config": "tiny", "kimg": 5})  # a training run, say
    with pytest.raises(FfhqToolsError, match="not a demo run folder"):
        run_demo(DemoOptions(resume=tmp_path))


@pytest.mark.slow
def test_quick_demo_runs_end_to_end(tmp_path):
    state = run_demo(DemoOptions(outdir=tmp_path, quick=True, progress=False))
    assert [(s.name, s.status) for s in state.stages] == [
        (name, "done") for name in ("photos", "align", "pack", "train", "generate", "score")], \
        state.stages

    html = (state.run_dir / "report.html").read_text()
    assert _anchors(html) == [s.lower().replace(" ", "-") for s in REPORT_SECTIONS]
    assert 'class="note"' not in html  # no section reports a failure
    assert html.count("data:image/png;base64,") >= 8  # photos, aligned, losses, grids, plots
    assert "fd_dlib_face" in html and "NOT the papers&#x27; FID" in html

    board = read_board(state.board)
    assert {"fd_dlib_face", "pr_dlib_face_precision", "pr_dlib_face_recall"} <= set(
        board["result"])
    assert (board["config"] == "tiny").all() and (board["num_gen"] == 24).all()
    skipped = {s["metric"]: s for s in state.skipped_metrics}
    assert "fid50k_full" in skipped  # no Inception weights offline (isolated cache)
    assert skipped["fid50k_full"]["fix"] == "ffhq-tools weights fetch inception-fid"
    assert skipped["fid50k_full"]["weights"] == "inception-fid"
    assert not state.failed_metrics
    assert (state.train_dir / "metric-fd_dlib_face.jsonl").exists()
    assert (state.run_dir / "samples" / "grid.png").exists()
    log = (state.run_dir / "log.txt").read_text()
    assert "[demo] score: done" in log

    # an interrupted demo continues in place: nothing is retrained or scored twice
    (state.run_dir / "report.html").unlink()
    again = run_demo(DemoOptions(resume=state.run_dir, progress=False))
    assert all(s.status == "done" for s in again.stages), again.stages
    assert again.options.num_gen == 24 and again.run_dir == state.run_dir
    assert len(list((state.run_dir / "train").glob("0*"))) == 1
    assert len(read_board(state.board)) == len(board)
    assert (state.run_dir / "report.html").exists()

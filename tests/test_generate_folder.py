"""`generate` output folders from the user's side: provenance in options.json and PNG chunks,
refusal of mixed settings, resume, bounded memory, the grid beside the samples, videos,
projected codes and clean errors."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ffhq_tools.cli import main
from models import generate as gen
from models.checkpoint import load_generator, save_checkpoint
from models.configs import build_networks, get_config
from models.png_files import TEXT_KEY, write_png_strips

REPO = Path(__file__).resolve().parents[1]


def _save_tiny(path: Path, seed: int, c_dim: int = 0) -> Path:
    torch.manual_seed(seed)
    config = get_config("tiny")
    G, D = build_networks(config, 16, c_dim=c_dim)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if "noise_strength" in name:
                p.fill_(0.3)
    save_checkpoint(path, config={"model": config.to_dict(), "resolution": 16}, G=G, D=D)
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpts")
    return {"a": _save_tiny(folder / "a.pt", 0), "b": _save_tiny(folder / "b.pt", 1),
            "cond": _save_tiny(folder / "cond.pt", 2, c_dim=3)}


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["generate", *map(str, argv), "--device", "cpu"])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def png_record(path: Path) -> dict:
    with Image.open(path) as image:
        return json.loads(image.text[TEXT_KEY])


# ------------------------------------------------------------------------------------------
# provenance and refusal
# ------------------------------------------------------------------------------------------
def test_options_and_each_png_record_what_made_them(ckpts, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(capsys, ckpts["a"], "--out", out, "--seeds", "3-5", "--trunc", "0.7",
               "--trunc-cutoff", "4", "--noise-mode", "none")[0] == 0
    sha = hashlib.sha256(ckpts["a"].read_bytes()).hexdigest()
    options = json.loads((out / "options.json").read_text())
    assert options["settings"] == {
        "checkpoint_sha256": sha, "resolution": 16, "img_channels": 3, "truncation_psi": 0.7,
        "truncation_cutoff": 4, "noise_mode": "none", "class_idx": None,
        "projected_w_sha256": [], "source": "seeds"}
    assert options["seeds"] == "3-5" and options["tool_version"] == "0.1.0"
    record = png_record(out / "samples" / "seed0004.png")
    assert record["seed"] == 4 and record["tool_version"] == "0.1.0"
    assert {k: record[k] for k in options["settings"]} == options["settings"]
    assert png_record(out / "grid.png")["cells"] == ["seed0003.png", "seed0004.png",
                                                     "seed0005.png"]
    assert run(capsys, ckpts["a"], "--out", out, "--seeds", "10,0-2", "--trunc", "0.7",
               "--trunc-cutoff", "4", "--noise-mode", "none")[0] == 0
    assert json.loads((out / "options.json").read_text())["seeds"] == "0-5,10"


@pytest.mark.parametrize("change, expected", [
    (["--ckpt", "b"], "checkpoint_sha256"),
    (["--trunc", "0.5"], "truncation_psi 0.7 there, 0.5 now"),
    (["--noise-mode", "random"], "noise_mode 'const' there, 'random' now"),
    (["--trunc-cutoff", "2"], "truncation_cutoff None there, 2 now"),
])
def test_rerun_with_other_settings_is_refused_and_mixes_nothing(ckpts, tmp_path, capsys,
                                                                  change, expected):
    out = tmp_path / "out"
    assert run(capsys, ckpts["a"], "--out", out, "--seeds", "0-1", "--trunc", "0.7")[0] == 0
    before = {p.name: p.read_bytes() for p in (out / "samples").iterdir()}
    settings = {"--trunc": "0.7"}
    ckpt = ckpts["a"]
    if change[0] == "--ckpt":
        ckpt = ckpts[change[1]]
    else:
        settings[change[0]] = change[1]
    flags = [x for kv in settings.items() for x in kv]
    rc, _, err = run(capsys, ckpt, "--out", out, "--seeds", "0-3", *flags)
    assert rc == 2 and expected in err and "never mixed" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in (out / "samples").iterdir()} == before


def test_another_class_is_refused(ckpts, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(capsys, ckpts["cond"], "--out", out, "--seeds", "0-1", "--class", "1")[0] == 0
    assert png_record(out / "samples" / "seed0001.png")["class_idx"] == 1
    rc, _, err = run(capsys, ckpts["cond"], "--out", out, "--seeds", "0-1", "--class", "2")
    assert rc == 2 and "class_idx 1 there, 2 now" in err


def test_without_out_each_run_gets_a_fresh_numbered_folder(ckpts, tmp_path, capsys,
                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(capsys, ckpts["a"], "--seeds", "0")[0] == 0
    assert run(capsys, ckpts["a"], "--seeds", "0", "--trunc", "0.5")[0] == 0
    folders = sorted(p.name for p in (tmp_path / "generated").iterdir()
                     if not p.name.startswith("."))
    assert folders == ["00000-a-seeds", "00001-a-seeds"]
    psis = [json.loads((tmp_path / "generated" / f / "options.json").read_text())
            ["settings"]["truncation_psi"] for f in folders]
    assert psis == [1.0, 0.5]


def test_a_non_empty_folder_without_options_is_refused(ckpts, tmp_path, capsys):
    out = tmp_path / "old"
    out.mkdir()
    (out / "seed0000.png").write_bytes(b"made by an older version")
    rc, _, err = run(capsys, ckpts["a"], "--out", out, "--seeds", "0")
    assert rc == 2 and "no options.json" in err and "seed0000.png" in err
    assert sorted(p.name for p in out.iterdir()) == ["seed0000.png"]


# ------------------------------------------------------------------------------------------
# resume
# ------------------------------------------------------------------------------------------
def test_resume_keeps_intact_images_and_renders_damaged_ones_again(ckpts, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(capsys, ckpts["a"], "--out", out, "--seeds", "0-3")[0] == 0
    samples = out / "samples"
    good = (samples / "seed0001.png").read_bytes()
    (samples / "seed0001.png").write_bytes(good[: len(good) // 2])  # torn
    mtime = (samples / "seed0002.png").stat().st_mtime_ns
    rc, printed, err = run(capsys, ckpts["a"], "--out", out, "--seeds", "0-4")
    assert rc == 0 and "(2 new, 3 kept)" in printed
    assert "seed0001.png was damaged" in err
    assert (samples / "seed0001.png").read_bytes() == good
    assert (samples / "seed0002.png").stat().st_mtime_ns == mtime


def test_a_sample_with_foreign_settings_is_refused_not_kept(ckpts, tmp_path, capsys):
    out, other = tmp_path / "out", tmp_path / "other"
    assert run(capsys, ckpts["a"], "--out", out, "--seeds", "0-1")[0] == 0
    assert run(capsys, ckpts["b"], "--out", other, "--seeds", "2")[0] == 0
    (out / "samples" / "seed0002.png").write_bytes(
        (other / "samples" / "seed0002.png").read_bytes())
    rc, _, err = run(capsys, ckpts["a"], "--out", out, "--seeds", "0-2")
    assert rc == 2 and "seed0002.png: made with other settings" in err


# ------------------------------------------------------------------------------------------
# streaming: bounded memory, bounded grid
# ------------------------------------------------------------------------------------------
def _traced_peak(argv: list[str]) -> int:
    tracemalloc.start()
    try:
        assert main(argv) == 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_number_of_seeds(ckpts, tmp_path, one_thread):
    """Python-side allocations (numpy images, seed lists, grids) are traced: ten times the
    seeds must not raise the peak. Holding the images, or one grid of all seeds, would add
    about 0.7 MB here."""
    common = ["generate", str(ckpts["a"]), "--batch", "25", "--device", "cpu"]
    assert main(common + ["--out", str(tmp_path / "warm"), "--seeds", "0-9"]) == 0
    small = _traced_peak(common + ["--out", str(tmp_path / "small"), "--seeds", "0-49"])
    large = _traced_peak(common + ["--out", str(tmp_path / "large"), "--seeds", "0-499"])
    assert len(list((tmp_path / "large").rglob("seed*.png"))) == 500
    assert large - small < 150_000, (small, large)


def test_the_grid_holds_at_most_64_samples_and_sits_beside_them(ckpts, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(capsys, ckpts["a"], "--out", out, "--seeds", "100-169", "--batch", "32",
               "--grid-cols", "10")[0] == 0
    assert len(list((out / "samples").iterdir())) == 70
    assert not list((out / "samples").glob("grid*"))
    G = load_generator(ckpts["a"])
    images = [img for _, img in gen.generate_images(G, range(100, 164))]
    expected = np.zeros((7 * 16, 10 * 16, 3), np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, 10)
        expected[r * 16: (r + 1) * 16, c * 16: (c + 1) * 16] = img
    np.testing.assert_array_equal(np.asarray(Image.open(out / "grid.png")), expected)


def test_no_grid_and_quiet(ckpts, tmp_path, capsys):
    out = tmp_path / "out"
    rc, printed, err = run(capsys, ckpts["a"], "--out", out, "--seeds", "0-2", "--no-grid",
                           "-q")
    assert rc == 0 and printed == "" and err == ""
    assert sorted(p.name for p in out.iterdir()) == ["options.json", "samples"]


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_strip_written_png_decodes_to_the_same_pixels(tmp_path, channels):
    rng = np.random.RandomState(channels)
    image = rng.randint(0, 256, (37, 23, channels)).astype(np.uint8)
    strips = [image[:10], image[10:11], image[11:]]
    path = write_png_strips(tmp_path / "g.png", 23, 37, channels, strips, {"k": [1, 2]})
    with Image.open(path) as decoded:
        decoded.load()
        pixels = np.asarray(decoded)
        assert json.loads(decoded.text[TEXT_KEY]) == {"k": [1, 2]}
    np.testing.assert_array_equal(pixels.reshape(image.shape), image)


HUGE_RUN = """
import sys
from ffhq_tools.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _wait_for_samples(folder: Path, count: int, proc, deadline: float) -> None:
    while time.monotonic() < deadline and proc.poll() is None:
        if folder.is_dir() and sum(1 for _ in folder.glob("seed*.png")) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} samples in {folder} before the deadline")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_a_hundred_million_seeds_stream_with_flat_memory_and_resume(ckpts, tmp_path):
    """`--seeds 0-100000000` starts writing at once, its resident memory stays flat while
    it writes, Ctrl-C stops it cleanly, and a rerun keeps what was written."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    argv = ["generate", str(ckpts["a"]), "--out", str(out), "--seeds", "0-100000000",
            "--batch", "16", "--device", "cpu"]
    proc = subprocess.Popen([sys.executable, "-c", HUGE_RUN, *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        _wait_for_samples(out / "samples", 50, proc, deadline)
        early = _rss_mb(proc.pid)
        _wait_for_samples(out / "samples", 400, proc, deadline)
        late = _rss_mb(proc.pid)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err.decode()[-500:]
    assert late - early < 25, (early, late)
    written = sum(1 for _ in (out / "samples").glob("seed*.png"))
    assert not list((out / "samples").glob(".*part"))
    result = subprocess.run([sys.executable, "-c", HUGE_RUN, "generate", str(ckpts["a"]),
                             "--out", str(out), "--seeds", f"0-{written}", "-q", "--no-grid",
                             "--device", "cpu"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert sum(1 for _ in (out / "samples").glob("seed*.png")) == written + 1

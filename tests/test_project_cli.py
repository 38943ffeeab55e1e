"""`ffhq-tools project` end to end (tiny network, random VGG16 through --weights), its targets
(folders, align.jsonl, .h5 levels, unreadable files) and the attribution test."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from project_helpers import FeatureDistance, save_tiny_checkpoint, tiny_generator

from ffhq_tools.cli import main
from models.project import ProjectionProtocol, Projector
from models.project.outputs import load_projected_w
from models.project.targets import collect_targets, load_target, prepare_pixels

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    G, D = tiny_generator()
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", G, D)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    from vgg_helpers import write_random_vgg16

    return write_random_vgg16(tmp_path_factory.mktemp("vgg") / "vgg16-random.pth")


def crops(astronaut) -> list[np.ndarray]:
    return [astronaut[:300, 100:420], astronaut[40:240, 180:380]]


def photo_folder(folder, astronaut):
    folder.mkdir()
    for i, crop in enumerate(crops(astronaut)):
        Image.fromarray(crop).save(folder / f"face{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    return folder


def test_prepare_pixels_is_a_centre_crop_and_lanczos_resize(astronaut):
    photo = astronaut[:300, 100:420]  # 300 x 320: crop 10 columns off each side
    expected = Image.fromarray(np.ascontiguousarray(photo[:, 10:310])).resize(
        (16, 16), Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(prepare_pixels(photo, 16), np.asarray(expected))


@pytest.mark.slow  # ~30 s on the shared 2-core machine: VGG16 LPIPS, video, three runs
def test_project_verb_writes_every_output_and_resumes(tmp_path, tiny_ckpt, vgg_file, astronaut,
                                                      capsys):
    folder = photo_folder(tmp_path / "photos", astronaut)
    out = tmp_path / "out"
    args = ["project", str(folder), "--network", str(tiny_ckpt), "--out", str(out),
            "--distance", "lpips-vgg", "--weights", f"vgg16={vgg_file}", "--steps", "4",
            "--batch", "2", "--video", "-q", "--device", "cpu"]
    assert main(args) == 0
    assert "2 projected (0 already done), 1 rejected" in capsys.readouterr().out
    for i, name in enumerate(("face0", "face1")):
        target = out / name
        for file in ("projected_w.npz", "noise.npz", "proj.png", "target.png", "strip.png",
                     "curve.jsonl", "curve.png", "result.json", "proj.mp4"):
            assert (target / file).is_file(), file
        assert not (target / "state.pt").exists()
        assert load_projected_w(target / "projected_w.npz").shape == (1, 8 - 2, 32)
        curve = [json.loads(line) for line in (target / "curve.jsonl").read_text().splitlines()]
        assert [row["step"] for row in curve] == [0, 1, 2, 3]
        np.testing.assert_array_equal(np.asarray(Image.open(target / "target.png")),
                                      prepare_pixels(crops(astronaut)[i], 16))
        assert np.asarray(Image.open(target / "strip.png")).shape == (16, 48, 3)
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(r["target"], r["reason"]) for r in rejects] == [("broken", "undecodable")]
    options = json.loads((out / "options.json").read_text())
    assert options["weights"]["vgg16"] and options["distance"] == "lpips-vgg"

    assert main(args) == 0
    assert "0 projected" not in capsys.readouterr().out  # the rows of the done targets
    assert main(args[:-6] + ["--steps", "5", "-q"]) == 2
    assert "options.json" in capsys.readouterr().err


def test_clear_errors_for_missing_weights_and_progan(tmp_path, tiny_ckpt, vgg_file, astronaut,
                                                     capsys):
    from models.configs import build_networks, get_config

    folder = photo_folder(tmp_path / "photos", astronaut)
    assert main(["project", str(folder), "--network", str(tiny_ckpt), "--out",
                 str(tmp_path / "a"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "vgg16.pt does not exist" in err and "ffhq-tools weights import vgg16-ts" in err
    G, D = build_networks(get_config("tiny-progan"), 16)
    progan = save_tiny_checkpoint(tmp_path / "progan.pt", G, D, config="tiny-progan")
    assert main(["project", str(folder), "--network", str(progan), "--out", str(tmp_path / "b"),
                 "--distance", "lpips-vgg", "--weights", f"vgg16={vgg_file}", "-q"]) == 2
    err = capsys.readouterr().err
    assert "progan.pt (config tiny-progan)" in err and "ProGAN" in err
    assert main(["project", str(tmp_path / "nothing.png"), "--network", str(tiny_ckpt),
                 "--out", str(tmp_path / "c"), "--distance", "lpips-vgg", "--weights",
                 f"vgg16={vgg_file}", "-q"]) == 2
    assert "nothing.png: no such file" in capsys.readouterr().err


def test_targets_from_align_jsonl_and_h5_levels(tmp_path, astronaut):
    from ffhq_tools.data.writer import pack

    folder = tmp_path / "aligned"
    folder.mkdir()
    faces = [np.ascontiguousarray(astronaut[i * 64:i * 64 + 64, :64]) for i in range(3)]
    records = []
    for i, face in enumerate(faces):
        Image.fromarray(face).save(folder / f"{i:05d}.png")
        records.append(json.dumps({"source": "x.jpg", "output": f"{i:05d}.png"}))
    (folder / "align.jsonl").write_text("\n".join(records) + "\n")
    targets = collect_targets([str(folder / "align.jsonl")], 16)
    assert [t.name for t in targets] == ["00000", "00001", "00002"]
    np.testing.assert_array_equal(load_target(targets[1], 16)[0], prepare_pixels(faces[1], 16))
    (tmp_path / "evil.jsonl").write_text(json.dumps({"output": "../../etc/passwd"}) + "\n")
    with pytest.raises(Exception, match="outside"):
        collect_targets([str(tmp_path / "evil.jsonl")], 16)

    h5 = tmp_path / "faces.h5"
    src = tmp_path / "src"
    src.mkdir()
    for i, face in enumerate(faces):
        Image.fromarray(face).save(src / f"{i:05d}.png")
    pack(src, h5, progress=False)
    by_level = collect_targets([f"{h5}:32"], 16)
    assert [t.name for t in by_level] == ["faces-00000", "faces-00001", "faces-00002"]
    level32 = faces[2].reshape(32, 2, 32, 2, 3).astype(np.float64).mean(axis=(1, 3))
    np.testing.assert_array_equal(load_target(by_level[2], 16)[0],
                                  prepare_pixels(np.round(level32).astype(np.uint8), 16))
    assert collect_targets([str(h5)], 16, limit=2)[1].source.endswith("[1]@16")


def test_attribution_separates_generated_from_real_images(tmp_path, astronaut):
    from models.project.attribution import run_attribution
    from models.project.targets import Target

    G = tiny_generator()[0]
    rng = np.random.RandomState(0)
    real = []
    for i in range(3):
        top, left = rng.randint(0, 400, size=2)
        crop = np.ascontiguousarray(astronaut[top:top + 96, left:left + 96])
        real.append(Target(f"crop{i}", "astronaut", lambda crop=crop: crop))
    projector = Projector(G, FeatureDistance(), ProjectionProtocol(steps=60, w_avg_samples=500))
    report = run_attribution(projector, real, tmp_path, num=3, seed=0, options={}, batch_size=3,
                             progress=False)
    rows = [json.loads(line) for line in (tmp_path / "attribution.jsonl").read_text().splitlines()]
    generated = [r["distance"] for r in rows if r["class"] == "generated"]
    photos = [r["distance"] for r in rows if r["class"] == "real"]
    assert len(generated) == len(photos) == 3
    assert max(generated) < min(photos)
    assert report["classes"]["generated"]["share_below"] == 1.0
    assert report["classes"]["real"]["share_below"] == 0.0
    assert report["threshold_source"] == "best split"
    assert (tmp_path / "attribution.png").is_file() and (tmp_path / "attribution.md").is_file()


def test_align_first_then_project_the_aligned_faces(tmp_path, astronaut):
    from skimage import data

    from models.project.aligned import align_targets

    Image.fromarray(astronaut).save(tmp_path / "astronaut.png")
    Image.fromarray(data.coffee()).save(tmp_path / "coffee.png")
    specs, rejects = align_targets([str(tmp_path / "astronaut.png"), str(tmp_path / "coffee.png")],
                                   tmp_path / "out", 16, progress=False)
    assert [(r["target"], r["reason"]) for r in rejects] == [("coffee.png", "no face")]
    targets = collect_targets(specs, 16)
    assert [t.name for t in targets] == ["astronaut_00"]
    face = load_target(targets[0], 16)[0]
    assert face.shape == (16, 16, 3)
    record = json.loads((tmp_path / "out" / "aligned" / "astronaut" / "align.jsonl").read_text())
    assert record["pixel_size"] == [16, 16]


def test_run_writes_outputs_rejects_unreadable_targets_and_skips_finished_ones(tmp_path,
                                                                               astronaut):
    from models.project.run import project_targets

    folder = photo_folder(tmp_path / "photos", astronaut)
    G = tiny_generator()[0]
    projector = Projector(G, FeatureDistance(), ProjectionProtocol(steps=5, w_avg_samples=200))
    targets = collect_targets([str(folder)], 16)
    assert [t.name for t in targets] == ["broken", "face0", "face1"]
    first = project_targets(projector, targets, tmp_path / "out", seed=1, options={"a": 1},
                            batch_size=2, progress=False)
    assert [r["target"] for r in first.done] == ["face0", "face1"] and first.skipped == 0
    assert [r["reason"] for r in first.rejects] == ["undecodable"]
    w = load_projected_w(tmp_path / "out" / "face1" / "projected_w.npz", G)
    result = json.loads((tmp_path / "out" / "face1" / "result.json").read_text())
    assert result["steps"] == 5 and result["source"].endswith("face1.png")
    again = project_targets(projector, targets, tmp_path / "out", seed=1, options={"a": 1},
                            batch_size=2, progress=False)
    assert again.skipped == 2 and not again.rejects
    np.testing.assert_array_equal(load_projected_w(tmp_path / "out" / "face1" /
                                                   "projected_w.npz"), w)
    with pytest.raises(Exception, match="seed"):
        project_targets(projector, targets, tmp_path / "out", seed=2, options={"a": 1},
                        progress=False)


@pytest.mark.parametrize("kind", ["gif", "mp4"])
def test_videos_hold_every_frame(tmp_path, kind):
    from models.project.outputs import video_encoder, write_video

    if kind == "mp4" and video_encoder() != "mp4":
        pytest.skip("imageio-ffmpeg is not installed (the video extra)")
    frames = [np.full((16, 32, 3), 8 * i, dtype=np.uint8) for i in range(12)]
    path = write_video(tmp_path / "proj", frames, kind)
    assert path.name == f"proj.{kind}" and not list(tmp_path.glob(".*"))
    if kind == "gif":
        with Image.open(path) as gif:
            assert gif.n_frames == 12
        return
    import imageio.v2 as imageio

    reader = imageio.get_reader(path)
    decoded = [frame for frame in reader]
    reader.close()
    assert len(decoded) == 12 and decoded[0].shape == (16, 32, 3)
    assert abs(float(decoded[11].mean()) - 88) < 3


def test_project_output_round_trips_through_generate(tmp_path, tiny_ckpt, vgg_file, astronaut,
                                                    capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(crops(astronaut)[0]).save(folder / "face0.png")
    assert main(["project", str(folder), "--network", str(tiny_ckpt), "--out",
                 str(tmp_path / "proj"), "--distance", "lpips-vgg", "--weights",
                 f"vgg16={vgg_file}", "--steps", "2", "--no-noise-opt", "-q",
                 "--device", "cpu"]) == 0
    projected = tmp_path / "proj" / "face0"
    assert main(["generate", str(tiny_ckpt), "--out", str(tmp_path / "gen"), "--projected-w",
                 str(projected / "projected_w.npz"), "--device", "cpu", "-q"]) == 0
    capsys.readouterr()
    rendered = np.asarray(Image.open(tmp_path / "gen" / "samples" / "proj00.png"))
    np.testing.assert_array_equal(rendered, np.asarray(Image.open(projected / "proj.png")))


@pytest.mark.parametrize("flags, threads", [(["--threads", "1"], 1), ([], 3)])
def test_project_threads_default_to_the_affinity_and_are_shown(tmp_path, tiny_ckpt, vgg_file,
                                                               astronaut, capsys, monkeypatch,
                                                               flags, threads):
    seen = []
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr("models.project.run.project_targets",
                        lambda *a, **k: seen.append(torch.get_num_threads()) or
                        type("Summary", (), {"done": [], "skipped": 0, "rejects": []})())
    folder = photo_folder(tmp_path / "photos", astronaut)
    assert main(["project", str(folder), "--network", str(tiny_ckpt), "--out",
                 str(tmp_path / "out"), "--distance", "lpips-vgg", "--weights",
                 f"vgg16={vgg_file}", "--steps", "1", "-q", "--device", "cpu", *flags]) == 0
    assert f"project: device cpu, {threads} CPU thread(s)" in capsys.readouterr().err
    assert seen == [threads] and torch.get_num_threads() == 1


def test_project_refuses_zero_threads(tmp_path, tiny_ckpt, capsys):
    assert main(["project", str(tmp_path), "--network", str(tiny_ckpt), "--out",
                 str(tmp_path / "out"), "--threads", "0"]) == 2
    assert "--threads 0: must be at least 1" in capsys.readouterr().err

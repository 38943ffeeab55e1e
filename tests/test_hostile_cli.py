"""Hostile and broken inputs (issue 20): each case is a row of a table, reproduced through the
CLI, which must answer with exit 2 and one line naming the file, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_standins import (
    one_thread,  # noqa: F401 - autouse fixture
    write_shapes_h5,
)

from ffhq_tools.cli import main

REPO = Path(__file__).resolve().parents[1]


def assert_clean_error(code: int, err: str, name: str) -> None:
    """Exit 2, one line on stderr that names `name`, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and name in lines[0], err


# ---------------------------------------------------------------- train --resume RUN_DIR


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """A finished run folder started with non-default kimg, batch, tick, snap, seed, grid."""
    root = tmp_path_factory.mktemp("runs")
    data = write_shapes_h5(root / "shapes.h5", count=16, resolution=16)
    started = ["--kimg", "0.016", "--batch", "8", "--tick", "0.008", "--snap", "1",
               "--seed", "3", "--grid", "4", "--mirror"]
    assert main(["train", "--config", "tiny", "--data", str(data), *started,
                 "--channel-max", "16", "--workers", "0", "--device", "cpu", "--no-progress",
                 "--outdir", str(root / "out")]) == 0
    return data, next((root / "out").glob("00000-*"))


FROZEN = {"kimg": 0.016, "batch": 8, "tick_kimg": 0.008, "snap": 1, "seed": 3,
          "grid_size": 4, "mirror": True, "precision": "fp32"}


def _resumed(short_run, capsys, *flags):
    data, run = short_run
    assert main(["train", "--data", str(data), "--resume", str(run), *flags, "--dry-run"]) == 0
    out, err = capsys.readouterr()
    return json.loads(out)["options"], err


def test_resume_keeps_the_frozen_options(short_run, capsys):
    options, err = _resumed(short_run, capsys)
    assert {k: options[k] for k in FROZEN} == FROZEN
    assert options["config"] == "tiny" and "overrides" not in err


@pytest.mark.parametrize("flags, field, value", [
    (["--kimg", "0.032"], "kimg", 0.032),
    (["--batch", "4"], "batch", 4),
    (["--tick", "0.004"], "tick_kimg", 0.004),
    (["--snap", "50"], "snap", 50),  # the old default, given explicitly, still overrides
    (["--seed", "0"], "seed", 0),
])
def test_resume_flag_given_again_overrides_and_is_reported(short_run, capsys, flags, field,
                                                           value):
    options, err = _resumed(short_run, capsys, *flags)
    assert options[field] == value
    assert {k: options[k] for k in FROZEN if k != field} == {k: v for k, v in FROZEN.items()
                                                           if k != field}
    assert f"{field} {value!r} overrides the run's {FROZEN[field]!r}" in err


def test_resume_override_is_logged_in_the_run(short_run, capsys, tmp_path):
    import shutil

    data, run = short_run
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    assert main(["train", "--data", str(data), "--resume", str(copy), "--kimg", "0.024",
                 "--workers", "0", "--device", "cpu", "--no-progress"]) == 0
    log = (copy / "log.txt").read_text()
    assert "kimg 0.024 overrides the run's 0.016" in log
    assert sorted(p.name for p in copy.glob("network-snapshot-*.pt"))[-1] == \
        "network-snapshot-000000.024.pt"
    assert "overrides" in capsys.readouterr().err


def test_resume_of_a_folder_with_broken_options_json(short_run, capsys, tmp_path):
    import shutil

    data, run = short_run
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    (copy / "options.json").chmod(0o644)
    (copy / "options.json").write_bytes(b"\xff\xfe{")
    code = main(["train", "--data", str(data), "--resume", str(copy), "--dry-run"])
    assert_clean_error(code, capsys.readouterr().err, "options.json")


# ---------------------------------------------------------------- crawl: trickling servers


def _trickling_manifest(server, photos, path: Path) -> Path:
    from ffhq_tools.crawl.loopback import manifest_for

    path.write_text(json.dumps(manifest_for(server, photos)))
    return path


def test_trickling_server_is_stopped_by_the_per_file_deadline(tmp_path):
    """One byte every 50 ms never trips a 1 s read timeout; the 1 s file deadline ends it."""
    import time

    from ffhq_tools.crawl.downloader import DownloadOptions, download_files
    from ffhq_tools.crawl.http import HttpSettings
    from ffhq_tools.crawl.loopback import LoopbackServer, make_photos, manifest_for
    from ffhq_tools.crawl.manifest import manifest_specs

    photos = make_photos(2, seed=5)
    assert min(len(p.data) for p in photos) * 0.05 > 30  # a full trickle would take > 30 s
    options = DownloadOptions(workers=2, attempts=3, backoff_base=0.01, progress=False,
                              http=HttpSettings(read_timeout=1.0, file_timeout=1.0))
    with LoopbackServer(photos, fault_rate=1.0, faults=("trickle",),
                        trickle_seconds=0.05) as server:
        specs = manifest_specs(manifest_for(server, photos), "in_the_wild")
        start = time.monotonic()
        report = download_files(specs, tmp_path / "out", options)
        seconds = time.monotonic() - start
    assert seconds < 6, seconds
    assert report.count("failed") == 2
    assert all("per-file deadline of 1 s" in r.reason for r in report.failed)
    rows = [json.loads(line) for line in (tmp_path / "out/failures.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(row["attempts"] == 1 for row in rows)
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == \
        [tmp_path / "out/failures.jsonl"]


def test_ctrl_c_ends_a_crawl_held_by_trickling_downloads_within_seconds(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from ffhq_tools.crawl.loopback import LoopbackServer, make_photos

    photos = make_photos(4, seed=6)
    with LoopbackServer(photos, fault_rate=1.0, faults=("trickle",),
                        trickle_seconds=0.5) as server:
        manifest = _trickling_manifest(server, photos, tmp_path / "m.json")
        proc = subprocess.Popen(
            [sys.executable, "-m", "ffhq_tools", "crawl", "manifest", str(manifest), "--out",
             str(tmp_path / "out"), "--workers", "2", "--no-progress"], cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while server.trickling < 2 and time.monotonic() < deadline:
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.05)
            assert server.trickling == 2
            assert list((tmp_path / "out").rglob("*.part"))  # downloads are in flight
            proc.send_signal(signal.SIGINT)
            sent = time.monotonic()
            _, err = proc.communicate(timeout=30)
            seconds = time.monotonic() - sent
        finally:
            proc.kill()
    assert seconds < 5, seconds
    assert proc.returncode == 130, err
    assert "interrupted; rerun the same command" in err and "Traceback" not in err, err
    left = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert left == [], left


# ---------------------------------------------------------------- crawl: broken manifests


def _deep(kind: str) -> bytes:
    depth = 100_000
    return (b"[" * depth + b"]" * depth) if kind == "array" else \
        (b'{"a":' * depth + b"1" + b"}" * depth)


def _entry(file_path: str) -> dict:
    return {"category": "training", "metadata": {"license": "x"},
            "in_the_wild": {"file_url": "http://127.0.0.1:9/x.png", "file_path": file_path}}


BROKEN_MANIFESTS = {
    "non_utf8": b'{"0": {"category": "\xff\xfe"}}',
    "deep_array": _deep("array"),
    "deep_object": _deep("object"),
    "long_file_name": json.dumps({"0": _entry("a/" + "n" * 296 + ".png")}).encode(),
    "long_folder_name": json.dumps({"0": _entry("d" * 300 + "/x.png")}).encode(),
    "file_name_without_room_for_the_temp": json.dumps({"0": _entry("n" * 250 + ".png")}).encode(),
}


@pytest.mark.parametrize("case", sorted(BROKEN_MANIFESTS))
def test_crawl_refuses_a_broken_manifest_in_one_line(case, tmp_path, capsys):
    path = tmp_path / f"{case}.json"
    path.write_bytes(BROKEN_MANIFESTS[case])
    code = main(["crawl", "manifest", str(path), "--out", str(tmp_path / "out"),
                 "--no-progress"])
    assert_clean_error(code, capsys.readouterr().err, str(path))
    assert not (tmp_path / "out").exists()


def _crawl_paths(tmp_path, file_paths: list[str]):
    """Crawl one loopback photo per file_path; returns (exit code, failures by index)."""
    from ffhq_tools.crawl.loopback import LoopbackServer, make_photos, manifest_for

    photos = make_photos(len(file_paths), seed=8)
    with LoopbackServer(photos) as server:
        manifest = manifest_for(server, photos)
        for index, file_path in enumerate(file_paths):
            manifest[str(index)]["in_the_wild"]["file_path"] = file_path
        path = tmp_path / "m.json"
        path.write_text(json.dumps(manifest))
        code = main(["crawl", "manifest", str(path), "--out", str(tmp_path / "out"),
                     "--no-progress", "--attempts", "2", "--backoff", "0.01"])
    failures_file = tmp_path / "out/failures.jsonl"
    rows = [json.loads(line) for line in failures_file.read_text().splitlines()] \
        if failures_file.exists() else []
    return code, {row["index"]: row["reason"] for row in rows}


@pytest.mark.parametrize("file_paths, failing", [
    (["sub", "sub/x.png", "other.png"], "1"),
    (["sub/x.png", "sub", "other.png"], "1"),
    (["a/b/c.png", "a/b", "a/d.png"], "1"),
])
def test_crawl_fails_only_the_entry_whose_path_conflicts(tmp_path, capsys, file_paths, failing):
    code, failures = _crawl_paths(tmp_path, file_paths)
    assert code == 1 and list(failures) == [failing], failures
    assert file_paths[int(failing)] in failures[failing]
    for index, file_path in enumerate(file_paths):
        assert (tmp_path / "out" / file_path).is_file() == (str(index) != failing)
    assert "Traceback" not in capsys.readouterr().err


def test_crawl_fails_only_the_entry_whose_file_is_a_folder_on_disk(tmp_path, capsys):
    (tmp_path / "out/taken.png").mkdir(parents=True)
    code, failures = _crawl_paths(tmp_path, ["taken.png", "free.png"])
    assert code == 1 and list(failures) == ["0"], failures
    assert (tmp_path / "out/free.png").is_file()
    assert "Traceback" not in capsys.readouterr().err


def test_crawl_outputs_get_the_normal_permissions(tmp_path, capsys):
    import os
    import stat

    from ffhq_tools.atomic import write_json_atomic

    old = os.umask(0o022)
    try:
        code, failures = _crawl_paths(tmp_path, ["p/a.png", "b.png"])
        write_json_atomic(tmp_path / "out/state.json", {"x": 1})
    finally:
        os.umask(old)
    assert code == 0, failures
    for name in ("p/a.png", "b.png", "state.json"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o644, name


# ---------------------------------------------------------------- import-checkpoint


class _ArrayState:
    """Pickles as numpy does (placeholder + __setstate__), with any declared shape and data."""

    def __init__(self, shape, data=b"\0" * 8, placeholder=(0,)):
        self.shape, self.data, self.placeholder = shape, data, placeholder

    def __reduce__(self):
        import numpy as np

        reconstruct = np.ndarray.__reduce__(np.zeros(1, np.float32))[0]
        return (reconstruct, (np.ndarray, self.placeholder, b"b"),
                (1, self.shape, np.dtype("float32"), False, self.data))


TIB36 = (3_000_000, 3_000_000)  # float32: 36 TB


@pytest.fixture(scope="module")
def tiny_networks():
    import torch

    from models.configs import build_networks, get_config

    torch.manual_seed(0)
    config = get_config("stylegan2-F").replace(channel_max=16)
    G, D = build_networks(config, 8)
    G_ema, _ = build_networks(config, 8)
    return G, D, G_ema


def _tf_pickle(nets, path, edit):
    import pickle

    import legacy_fixtures as fx

    G, D, G_ema = nets
    with fx.fake_modules() as ns:
        mapping, synthesis = fx.tf_sg2_generator_vars(G_ema)
        disc = fx.tf_sg2_discriminator_vars(D)
        edit(mapping, synthesis, disc)

        def generator(name):
            comps = {"mapping": fx.tf_network(ns, "G_mapping", mapping),
                     "synthesis": fx.tf_network(ns, "G_synthesis", synthesis)}
            return fx.tf_network(ns, name, {"dlatent_avg": fx.np32(G_ema.mapping.w_avg)},
                                 comps)
        nets = (generator("G"), fx.tf_network(ns, "D", disc), generator("Gs"))
        path.write_bytes(pickle.dumps(nets, protocol=4))


def _ada_pickle(nets, path, edit):
    import pickle

    import legacy_fixtures as fx

    G, D, G_ema = nets
    with fx.fake_modules() as ns:
        data = {"G": fx.persistent_tree(ns, G, "Generator"),
                "D": fx.persistent_tree(ns, D, "Discriminator"),
                "G_ema": fx.persistent_tree(ns, G_ema, "Generator")}
        edit({k: v._meta for k, v in data.items()})
        path.write_bytes(pickle.dumps(data, protocol=4))


def _child(meta, *names):
    for name in names:
        meta = meta["state"]["_modules"][name]._meta
    return meta


def _huge_torch_storage(nets, path, edit):
    """A rosinality-style .pt whose one storage declares 10^13 floats and holds 16 bytes."""
    import collections
    import io
    import pickle
    import zipfile

    import torch

    class Storage:
        pass

    class Tensor:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2,
                    (Storage(), 0, (4,), (1,), False, collections.OrderedDict()))

    class Writer(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", torch.FloatStorage, "0", "cpu", 10 ** 13)
            return None

    buffer = io.BytesIO()
    torch.save({"g_ema": {"style.1.weight": torch.zeros(4)}}, buffer)
    payload = io.BytesIO()
    Writer(payload, protocol=2).dump({"g_ema": {"style.1.weight": Tensor()}})
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, \
            zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = payload.getvalue() if info.filename.endswith("/data.pkl") \
                else src.read(info)
            dst.writestr(info, data)


def _set(table, key, value):
    table[key] = value


MALFORMED_CHECKPOINTS = {
    # TF StyleGAN2 (G, D, Gs) pickles
    "tf_missing_mapping_weight": (_tf_pickle, lambda m, s, d: m.pop("Dense0/weight")),
    "tf_string_variable": (_tf_pickle, lambda m, s, d: _set(m, "Dense0/weight", "abc")),
    "tf_1d_variable": (_tf_pickle, lambda m, s, d: _set(m, "Dense0/weight",
                                                        __import__("numpy").zeros(3))),
    "tf_missing_discriminator_output": (_tf_pickle, lambda m, s, d: d.pop("Output/weight")),
    "tf_36tib_array_state": (_tf_pickle, lambda m, s, d: _set(m, "Dense0/weight",
                                                              _ArrayState(TIB36))),
    "tf_36tib_array_placeholder": (_tf_pickle, lambda m, s, d: _set(
        m, "Dense0/weight", _ArrayState(TIB36, placeholder=TIB36))),
    "tf_array_with_text_data": (_tf_pickle, lambda m, s, d: _set(
        m, "Dense0/weight", _ArrayState((2,), data="abcdefgh"))),
    # stylegan2-ada-pytorch pickles
    "ada_state_without_modules": (_ada_pickle, lambda o: o["G_ema"]["state"].pop("_modules")),
    "ada_parameters_a_list": (_ada_pickle, lambda o: _set(
        _child(o["G_ema"], "mapping")["state"], "_parameters", [1, 2])),
    "ada_modules_a_string": (_ada_pickle, lambda o: _set(o["G_ema"]["state"], "_modules",
                                                         "abc")),
    "ada_state_a_list": (_ada_pickle, lambda o: _set(o["G_ema"], "state", [1, 2])),
    "ada_mbstd_group_text": (_ada_pickle, lambda o: _set(
        _child(o["D"], "b4", "mbstd")["state"], "group_size", "abc")),
    "ada_mbstd_group_list": (_ada_pickle, lambda o: _set(
        _child(o["D"], "b4", "mbstd")["state"], "group_size", [4])),
    "ada_weight_wrong_shape": (_ada_pickle, lambda o: _set(
        _child(o["G_ema"], "mapping", "fc0")["state"]["_parameters"], "weight",
        __import__("torch").zeros(3))),
    # torch zip files
    "torch_storage_declaring_40tb": (_huge_torch_storage, None),
}


# Refused by the size checks before anything is allocated (not by a later step).
REFUSED_UNALLOCATED = {
    "tf_36tib_array_placeholder": "array placeholder declares 9000000000000 bytes",
    "torch_storage_declaring_40tb": "declares 10000000000000 elements, more than the file's",
}


@pytest.mark.parametrize("case", sorted(MALFORMED_CHECKPOINTS))
def test_import_checkpoint_refuses_a_malformed_file_in_one_line(case, tiny_networks, tmp_path,
                                                                capsys):
    import resource

    write, edit = MALFORMED_CHECKPOINTS[case]
    src, dst = tmp_path / f"{case}.pkl", tmp_path / "out" / "ours.pt"
    write(tiny_networks, src, edit)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code = main(["import-checkpoint", str(src), str(dst)])
    err = capsys.readouterr().err
    assert_clean_error(code, err, str(src))
    assert REFUSED_UNALLOCATED.get(case, "") in err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB
    assert not dst.parent.exists() or list(dst.parent.iterdir()) == []


# ---------------------------------------------------------------- align: kill -9 with workers


def _children(pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is `pid`, from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_kill_9_of_align_with_workers_leaves_no_worker_running(tmp_path, astronaut):
    import os
    import signal
    import subprocess
    import sys
    import time

    from PIL import Image

    from ffhq_tools.align.landmarks import make_detector, select_faces

    landmarks = select_faces(make_detector("dlib").detect(astronaut), min_score=0.5)[0].landmarks
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        Image.fromarray(astronaut).save(src / f"p{i:02d}.png")
    given = tmp_path / "landmarks.json"
    given.write_text(json.dumps({f"p{i:02d}.png": landmarks.tolist() for i in range(40)}))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ffhq_tools", "align", str(src), str(out), "--workers", "2",
         "--landmarks", "given", "--landmarks-file", str(given), "-q"], cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(out.glob("*.png")):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        workers = {pid for pid in _children(proc.pid)
                   if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()}
        assert len(workers) == 2, workers
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        time.sleep(2.0)
        survivors = {pid for pid in workers if _alive(pid)}
    finally:
        for pid in workers if "workers" in locals() else ():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert survivors == set()
    written = len(list(out.glob("*.png")))
    time.sleep(1.0)
    assert len(list(out.glob("*.png"))) == written  # nothing goes on writing


WATCHDOG_ONLY = """
import os, sys, time
from ffhq_tools import parent_death
parent_death._request_parent_death_signal = lambda: None  # as on a system without prctl
parent = os.getpid()
child = os.fork()
if child == 0:
    parent_death.die_with_parent(parent)
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
time.sleep(60)
"""


def test_parent_watchdog_ends_an_orphan_without_prctl(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", WATCHDOG_ONLY], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    try:
        assert _alive(child)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)

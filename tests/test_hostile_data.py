"""The bad-input corpus of the data side (issue 20): hostile manifests, HDF5 files and zips, and
broken files that must end in a one-line error naming the file, never a traceback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ffhq_tools.align import AlignConfig, AlignOptions, align_folder
from ffhq_tools.align.pipeline import _Worker
from ffhq_tools.align.sources import AlignItem
from ffhq_tools.errors import FfhqToolsError

SMALL = AlignOptions(output_size=64, transform_size=256)


def face_landmarks() -> np.ndarray:
    """68 points with eyes and mouth where a 256 px portrait has them (all FFHQ's frame uses)."""
    lm = np.tile([128.0, 140.0], (68, 1))
    lm[36:42] = [100.0, 110.0] + np.random.RandomState(0).uniform(-3, 3, (6, 2))
    lm[42:48] = [156.0, 110.0] + np.random.RandomState(1).uniform(-3, 3, (6, 2))
    lm[48], lm[54] = [110.0, 170.0], [146.0, 170.0]
    return lm


def manifest_with_keys(tmp_path: Path, keys: list[str]) -> Path:
    photos = tmp_path / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    pixels = np.random.RandomState(2).randint(0, 256, (256, 256, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photos / "p.png")
    entry = {"in_the_wild": {"file_path": "photos/p.png",
                             "face_landmarks": face_landmarks().tolist()}}
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({key: entry for key in keys}))
    return manifest


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# ---- 1. align never writes outside OUT ----------------------------------------------------------

HOSTILE_KEYS = ["../../x", "../x", "a/../../x", "{tmp}/evil", "C:evil", "c:/evil", "sub//x",
                "./x", "x/.", "a\\..\\x", "nul\x00byte", "new\nline", "x" * 201,
                "a/" + "y" * 201]


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=range(len(HOSTILE_KEYS)))
def test_manifest_keys_never_leave_out(tmp_path, key):
    manifest = manifest_with_keys(tmp_path / "in", [key.replace("{tmp}", str(tmp_path))])
    out = tmp_path / "in" / "a" / "b" / "out"
    before = files_under(tmp_path)
    with pytest.raises(FfhqToolsError, match=r"manifest.json entry .*(refused|characters)"):
        align_folder(manifest, out, AlignConfig(options=SMALL), progress=False)
    written = files_under(tmp_path) - before
    assert all(p.is_relative_to(out) for p in written), written


def test_safe_manifest_keys_keep_their_names(tmp_path):
    manifest = manifest_with_keys(tmp_path, ["42", "sub/photo", "..dots", "1234567890"])
    out = tmp_path / "out"
    summary = align_folder(manifest, out, AlignConfig(options=SMALL), progress=False)
    assert summary.faces == 4
    names = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert names == {"00000/00042.png", "sub/photo_00.png", "..dots_00.png",
                     "1234567890_00.png"}


def test_two_keys_with_one_output_name_are_refused(tmp_path):
    manifest = manifest_with_keys(tmp_path, ["42", "042"])
    with pytest.raises(FfhqToolsError, match="same output name '00000/00042'"):
        align_folder(manifest, tmp_path / "out", AlignConfig(options=SMALL), progress=False)


def test_writer_refuses_a_path_outside_out_even_past_discovery(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "sub").symlink_to(outside)  # a planted symlink inside OUT
    worker = _Worker(AlignConfig(options=SMALL), out, None, "cpu")
    pixels = np.zeros((64, 64, 3), np.uint8)
    for key in ("sub/photo", "../escaped"):
        item = AlignItem(key, tmp_path / "p.png", "p.png", (face_landmarks(),))
        with pytest.raises(FfhqToolsError, match="outside the output folder"):
            worker.write(item, 0, 1, None, pixels, np.zeros((4, 2)), (256, 256), "given", {})
    assert not any(outside.iterdir()) and not (tmp_path / "escaped_00.png").exists()


# ---- 2. an HDF5 file reads nothing but itself (and its own shards) ---------------------------

SECRET = bytes(range(7, 103))  # 96 bytes = 2 images of 3 x 4 x 4


def small_pack(folder: Path, count: int = 2, name: str = "d.h5") -> Path:
    from ffhq_tools.data import PackOptions, pack

    src = folder / "src"
    src.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(3)
    for i in range(count):
        Image.fromarray(rng.randint(0, 256, (8, 8, 3), dtype=np.uint8)).save(src / f"i{i}.png")
    pack(src, folder / name, PackOptions(min_res=4), progress=False)
    return folder / name


def hostile_h5(tmp_path: Path, attack: str) -> Path:
    """A complete pack whose data4x4 level is replaced by `attack` aimed at a secret file."""
    import h5py

    secret = tmp_path / "secret.bin"
    secret.write_bytes(SECRET)
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other["data4x4"] = np.frombuffer(SECRET, np.uint8).reshape(2, 3, 4, 4)
    path = small_pack(tmp_path / "set")
    with h5py.File(path, "a") as f:
        del f["data4x4"]
        if attack == "external storage":
            f.create_dataset("data4x4", shape=(2, 3, 4, 4), dtype=np.uint8,
                             external=[(str(secret), 0, len(SECRET))])
        elif attack == "external link":
            f["data4x4"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "data4x4")
        elif attack == "soft link":
            f["hidden"] = np.frombuffer(SECRET, np.uint8).reshape(2, 3, 4, 4)
            f["data4x4"] = h5py.SoftLink("/hidden")
        elif attack == "soft link loop":
            f["data4x4"] = h5py.SoftLink("/data4x4")
        elif attack in ("virtual absolute", "virtual relative escape"):
            name = str(tmp_path / "other.h5") if attack == "virtual absolute" else "../other.h5"
            layout = h5py.VirtualLayout((2, 3, 4, 4), np.uint8)
            layout[:] = h5py.VirtualSource(name, "data4x4", shape=(2, 3, 4, 4))
            f.create_virtual_dataset("data4x4", layout)
    return path


def read_everything(path: Path, out: Path) -> list[bytes]:
    """What info, export, train and fid read from `path` (bytes of every image they see)."""
    from eval.sampling import iterate_real, real_count
    from ffhq_tools.data import H5Dataset, dataset_info, export
    from models.train_data import open_training_set

    seen = []
    readers = [
        lambda: dataset_info(path),
        lambda: export(path, out / "png", 4, progress=False),
        lambda: seen.extend(np.asarray(H5Dataset(path, 4)[i]).tobytes() for i in range(2)),
        lambda: seen.extend(np.asarray(open_training_set(path, 4)[i]).tobytes()
                            for i in range(2)),
        lambda: real_count(path, 4),
        lambda: seen.extend(b.numpy().tobytes() for b in iterate_real(path, 2, 2, 4)),
    ]
    errors = []
    for reader in readers:
        try:
            reader()
        except FfhqToolsError as exc:
            errors.append(str(exc))
    seen += [np.asarray(Image.open(p)).transpose(2, 0, 1).tobytes()
             for p in sorted((out / "png").rglob("*.png"))]
    return errors, seen


HDF5_ATTACKS = ["external storage", "external link", "soft link", "soft link loop",
                "virtual absolute", "virtual relative escape"]


@pytest.mark.parametrize("attack", HDF5_ATTACKS)
def test_hdf5_files_cannot_read_other_files(tmp_path, attack):
    path = hostile_h5(tmp_path, attack)
    errors, seen = read_everything(path, tmp_path / "out")
    assert len(errors) == 6, errors
    assert all(str(path) in e and "/data4x4" in e for e in errors), errors
    assert not any(SECRET[:48] in image or SECRET[48:] in image for image in seen)


def test_cli_names_the_hostile_file_in_one_line(tmp_path, capsys):
    from ffhq_tools.cli import main

    path = hostile_h5(tmp_path, "external storage")
    for argv in (["info", str(path)], ["info", str(path), "--verify"],
                 ["export", str(path), "--out", str(tmp_path / "x"), "-q"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and "external file" in err, err


def merged_set(tmp_path: Path) -> tuple[Path, list[Path]]:
    from ffhq_tools.data import merge_shards

    shards = [small_pack(tmp_path / "set" / "shards", 2, f"s{i}.h5") for i in range(2)]
    return merge_shards(shards, tmp_path / "set" / "merged.h5")["path"], shards


def test_our_own_merged_files_still_read(tmp_path):
    from ffhq_tools.data import H5Dataset, verify

    merged, _ = merged_set(tmp_path)
    assert verify(merged) == []
    assert len(H5Dataset(merged, 8)) == 4


def test_a_merged_file_with_a_missing_shard_is_refused_by_name(tmp_path):
    merged, shards = merged_set(tmp_path)
    shards[1].unlink()
    errors, seen = read_everything(Path(merged), tmp_path / "out")
    assert len(errors) == 6 and all("s1.h5 is missing" in e for e in errors), errors
    assert not any(image == bytes(len(image)) for image in seen)  # no black images


def test_merge_refuses_shards_outside_the_merged_files_folder(tmp_path):
    from ffhq_tools.data import merge_shards
    from ffhq_tools.data.layout import DatasetError

    shard = small_pack(tmp_path / "elsewhere", 2, "s0.h5")
    with pytest.raises(DatasetError, match="s0.h5 is outside"):
        merge_shards([shard], tmp_path / "set" / "merged.h5")
    merged, _ = merged_set(tmp_path / "ok")
    with pytest.raises(DatasetError, match="a merged file, not a shard"):
        merge_shards([merged], tmp_path / "ok" / "set" / "twice.h5")


# ---- 3. one writer per output; unfinished files are not read ----------------------------------

def photo_folder(folder: Path, count: int, size: int = 8) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(4)
    for i in range(count):
        Image.fromarray(rng.randint(0, 256, (size, size, 3), dtype=np.uint8)).save(
            folder / f"i{i:02d}.png")
    return folder


def test_a_second_pack_into_the_same_output_fails_at_once(tmp_path):
    from ffhq_tools.data import PackOptions, pack
    from ffhq_tools.data.layout import DatasetError
    from ffhq_tools.data.writer import output_lock, partial_path

    src = photo_folder(tmp_path / "src", 20)
    out = tmp_path / "d.h5"
    seen = []

    def second_run(done: int) -> None:
        if done == 5:  # the first run is half-way: its partial file is on disk
            with pytest.raises(DatasetError, match=r"d.h5: another pack is writing it"):
                pack(src, out, PackOptions(min_res=4), progress=False)
            seen.append(partial_path(out).stat().st_size)

    info = pack(src, out, PackOptions(min_res=4), progress=False, on_image=second_run)
    assert seen and info["complete"] and info["count"] == 20
    with output_lock(out), pytest.raises(DatasetError, match="another pack is writing it"):
        pack(src, out, PackOptions(min_res=4), progress=False)


def test_the_lock_holds_across_processes(tmp_path):
    import subprocess
    import sys

    from ffhq_tools.data import pack
    from ffhq_tools.data.layout import DatasetError

    src = photo_folder(tmp_path / "src", 2)
    out = tmp_path / "d.h5"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from ffhq_tools.data.writer import output_lock\n"
         "with output_lock(Path(sys.argv[1])):\n print('held', flush=True); time.sleep(60)",
         str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DatasetError, match="another pack is writing it"):
            pack(src, out, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert pack(src, out, progress=False)["count"] == 2  # the lock died with its holder


def unfinished_pack(tmp_path: Path) -> Path:
    """What a lost race used to leave at OUT: a partial file with complete unset."""
    from ffhq_tools.data import pack
    from ffhq_tools.data.writer import partial_path

    src = photo_folder(tmp_path / "src", 20)
    out = tmp_path / "d.h5"

    def stop(done: int) -> None:
        if done == 16:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pack(src, out, progress=False, on_image=stop)
    partial_path(out).rename(out)
    return out


def test_readers_refuse_an_unfinished_pack(tmp_path, capsys):
    from ffhq_tools.cli import main

    out = unfinished_pack(tmp_path)
    errors, _ = read_everything(out, tmp_path / "x")
    assert len(errors) == 6 and all("d.h5: an unfinished pack" in e for e in errors), errors
    assert main(["info", str(out)]) == 2
    assert "complete flag is not set" in capsys.readouterr().err
    assert main(["info", str(out), "--verify"]) == 1
    assert "FAILED: unfinished pack" in capsys.readouterr().out


# ---- 4. zips and labels that name images wrongly ------------------------------------------------

def png_bytes(seed: int, size: int = 8) -> bytes:
    import io

    buffer = io.BytesIO()
    pixels = np.random.RandomState(seed).randint(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def sg2_zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    import warnings
    import zipfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we want
        with zipfile.ZipFile(path, "w") as z:
            for name, data in members:
                z.writestr(name, data)
    return path


def labels_json(pairs) -> bytes:
    return json.dumps({"labels": pairs}).encode()


IMAGES = [("00000/img00000000.png", png_bytes(0)), ("00000/img00000001.png", png_bytes(1))]
BAD_ZIPS = {
    "duplicate member": (IMAGES + [("00000/img00000001.png", png_bytes(2))],
                         r"member '00000/img00000001.png' appears 2 times"),
    "duplicate dataset.json": (IMAGES + [("dataset.json", labels_json(None))] * 2,
                               r"member 'dataset.json' appears 2 times"),
    "null label": (IMAGES + [("dataset.json", labels_json([[IMAGES[0][0], 1],
                                                           [IMAGES[1][0], None]]))],
                   r"00000/img00000001.png.*not finite"),
    "NaN label": (IMAGES + [("dataset.json", b'{"labels": [["00000/img00000000.png", [1, NaN]],'
                                             b' ["00000/img00000001.png", [1, 2]]]}')],
                  r"00000/img00000000.png.*not finite"),
    "Inf label": (IMAGES + [("dataset.json", b'{"labels": [["00000/img00000000.png", 1],'
                                             b' ["00000/img00000001.png", -Infinity]]}')],
                  r"00000/img00000001.png.*not finite"),
    "float32 overflow label": (IMAGES + [("dataset.json", labels_json(
        [[IMAGES[0][0], 1e39], [IMAGES[1][0], 1]]))], r"00000/img00000000.png.*not finite"),
    "label for a missing image": (IMAGES + [("dataset.json", labels_json(
        [[IMAGES[0][0], 1], [IMAGES[1][0], 2], ["00000/img00000002.png", 3]]))],
        r"labels name '00000/img00000002.png', which is not an image"),
    "duplicate label": (IMAGES + [("dataset.json", labels_json(
        [[IMAGES[0][0], 1], [IMAGES[1][0], 2], [IMAGES[1][0], 3]]))],
        r"'00000/img00000001.png' is labelled twice"),
    "ragged labels": (IMAGES + [("dataset.json", labels_json(
        [[IMAGES[0][0], [1, 2]], [IMAGES[1][0], [[3]]]]))], r"img00000001.png.*list of numbers"),
    "dataset.json not JSON": (IMAGES + [("dataset.json", b"{labels: oops")],
                              r"dataset.json is not valid JSON"),
    "dataset.json not an object": (IMAGES + [("dataset.json", b"[1, 2]")],
                                   r"set.zip:dataset.json: must be an object"),
    "labels not pairs": (IMAGES + [("dataset.json", labels_json([1, 2]))],
                         r"dataset.json: labels must be \[\[name, label\], \.\.\.\]"),
}


@pytest.mark.parametrize("case", list(BAD_ZIPS))
def test_bad_stylegan2_zips_are_refused_by_name(tmp_path, capsys, case):
    from ffhq_tools.cli import main

    members, message = BAD_ZIPS[case]
    archive = sg2_zip(tmp_path / "set.zip", members)
    assert main(["pack", str(archive), str(tmp_path / "d.h5"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "set.zip" in err, err
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "d.h5").exists()


BAD_TABLES = {
    "nan in csv": ("labels.csv", "name,a\ni00.png,nan\ni01.png,1\n", r"i00.png.*not finite"),
    "inf in csv": ("labels.csv", "name,a\ni00.png,1\ni01.png,-inf\n", r"i01.png.*not finite"),
    "null in json": ("labels.json", '{"i00.png": [1], "i01.png": [null]}',
                     r"i01.png.*not finite"),
    "missing image": ("labels.json", '{"i00.png": [1], "i01.png": [2], "gone.png": [3]}',
                      r"labels name 'gone.png', which is not an image"),
    "duplicate csv row": ("labels.csv", "name,a\ni00.png,1\ni01.png,2\ni00.png,3\n",
                          r"'i00.png' is labelled twice"),
    "ragged json": ("labels.json", '{"i00.png": [1], "i01.png": [[1, 2], [3]]}',
                    r"i01.png.*list of numbers"),
    "json not an object": ("labels.json", '[1, 2]', r"expected an object"),
}


@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_bad_label_tables_are_refused_by_name(tmp_path, capsys, case):
    from ffhq_tools.cli import main

    name, text, message = BAD_TABLES[case]
    src = photo_folder(tmp_path / "src", 2)
    (tmp_path / name).write_text(text)
    argv = ["pack", str(src), str(tmp_path / "d.h5"), "--labels", str(tmp_path / name), "-q"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and name in err and __import__("re").search(message, err), err


def test_good_labels_still_pack_and_a_shard_may_skip_labelled_images(tmp_path):
    from ffhq_tools.data import pack

    src = photo_folder(tmp_path / "src", 4)
    (tmp_path / "labels.csv").write_text("name,a\n" + "".join(f"i{i:02d},{i}\n" for i in range(4)))
    info = pack(src, tmp_path / "d.h5", labels_file=tmp_path / "labels.csv", shard=(1, 2),
                progress=False)
    assert info["count"] == 2 and info["labels"] == [1]
    import h5py

    with h5py.File(tmp_path / "d.h5") as f:
        np.testing.assert_array_equal(f["labels"][()], [[2], [3]])


# ---- 5. what a header declares never sets the memory or the time -------------------------------

BILLION = 10**9


def declaring_h5(tmp_path: Path, how: str) -> Path:
    """A tiny file whose every level declares 10^9 images, storing two (or a shard of two)."""
    import h5py

    path = tmp_path / "huge.h5"
    rows = np.random.RandomState(5).randint(0, 256, (2, 3, 8, 8), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        for r in (8, 4):
            name = f"data{r}x{r}"
            if how == "chunked":
                f.create_dataset(name, shape=(BILLION, 3, r, r), dtype=np.uint8,
                                 chunks=(1, 3, r, r), maxshape=(None, 3, r, r))
                f[name][:2] = rows[:, :, :r, :r]
            elif how == "contiguous":
                f.create_dataset(name, shape=(BILLION, 3, r, r), dtype=np.uint8)
            elif how == "big chunks":
                f.create_dataset(name, shape=(BILLION, 3, r, r), dtype=np.uint8,
                                 chunks=(2**22, 3, r, r), compression="gzip")
            elif how == "labels":
                f[name] = rows[:, :, :r, :r]
            elif how == "virtual":
                with h5py.File(tmp_path / "shard.h5", "w") as shard:
                    shard[name] = rows[:, :, :r, :r]
                layout = h5py.VirtualLayout((BILLION, 3, r, r), np.uint8)
                layout[:2] = h5py.VirtualSource("shard.h5", name, shape=(2, 3, r, r))
                f.create_virtual_dataset(name, layout)
        if how == "labels":
            del f["data8x8"], f["data4x4"]
            for r in (8, 4):
                f.create_dataset(f"data{r}x{r}", shape=(BILLION, 3, r, r), dtype=np.uint8,
                                 chunks=(1, 3, r, r), maxshape=(None, 3, r, r))
                f[f"data{r}x{r}"][:2] = rows[:, :, :r, :r]
            f.create_dataset("labels", shape=(BILLION, 4), dtype=np.float32)
    return path


@pytest.mark.parametrize("how", ["chunked", "contiguous", "big chunks", "virtual"])
def test_declared_shapes_must_be_stored(tmp_path, how):
    import time

    path = declaring_h5(tmp_path, how)
    assert path.stat().st_size < 2**20
    start = time.perf_counter()
    errors, seen = read_everything(path, tmp_path / "out")
    assert time.perf_counter() - start < 20
    assert len(errors) == 6 and all(str(path) in e for e in errors), errors
    assert all(re.search(r"declares|exceed", e) for e in errors), errors
    assert not seen


def test_declared_labels_must_be_stored(tmp_path):
    from ffhq_tools.data import dataset_info
    from ffhq_tools.data.layout import DatasetError

    path = declaring_h5(tmp_path, "labels")
    with pytest.raises(DatasetError, match=r"huge.h5: dataset /data4x4 declares shape"):
        dataset_info(path)  # the levels are checked first; the labels alone:
    import h5py

    with h5py.File(path, "a") as f:
        for r in (8, 4):
            del f[f"data{r}x{r}"]
            f[f"data{r}x{r}"] = np.zeros((2, 3, r, r), np.uint8)
    with pytest.raises(DatasetError, match=r"huge.h5: dataset /labels declares shape "
                                           r"\(1000000000, 4\) \(16000000000 bytes\)"):
        dataset_info(path)


def patched_zip(path: Path, members: list[tuple[str, bytes]], patch: dict, method=None,
                second: bool = False) -> Path:
    """A zip whose first (or second) member's headers get `patch`: {field: value}, fields of
    both the local and the central header (flags, method, crc, size = uncompressed size)."""
    import struct
    import zipfile

    with zipfile.ZipFile(path, "w", method or zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(name, data)
        target = z.infolist()[1 if second else 0].header_offset
    raw = bytearray(path.read_bytes())
    local = {"flags": (6, "<H"), "method": (8, "<H"), "crc": (14, "<I"), "size": (22, "<I")}
    central = {"flags": (8, "<H"), "method": (10, "<H"), "crc": (16, "<I"), "size": (24, "<I")}
    cd = raw.index(b"PK\x01\x02")
    if second:
        cd = raw.index(b"PK\x01\x02", cd + 4)
    for field, value in patch.items():
        for base, table in ((target, local), (cd, central)):
            offset, fmt = table[field]
            struct.pack_into(fmt, raw, base + offset, value)
    path.write_bytes(bytes(raw))
    return path


def bomb_zip(path: Path, member_bytes: int) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr(IMAGES[0][0], IMAGES[0][1])
        with z.open("00000/img00000001.png", "w", force_zip64=True) as member:
            block = bytes(2**20)
            for _ in range(member_bytes // 2**20):
                member.write(block)
    return path


@pytest.mark.parametrize("case", ["1 GiB member", "ratio 1000:1", "lying size"])
def test_zip_bombs_are_refused_before_reading(tmp_path, capsys, case):
    import resource

    from ffhq_tools.cli import main

    if case == "1 GiB member":  # what the central directory declares is checked first
        archive = patched_zip(tmp_path / "set.zip", IMAGES[:1] + [
            ("00000/img00000001.png", bytes(2**22))], {"size": 2**30}, second=True)
        message = r"00000/img00000001.png: 1073741824 bytes uncompressed, over"
    elif case == "ratio 1000:1":
        archive = bomb_zip(tmp_path / "set.zip", 64 * 2**20)
        message = r"00000/img00000001.png: compressed \d+:1"
    else:  # the headers say 100 bytes; the data inflates to 8 MiB
        archive = patched_zip(tmp_path / "set.zip", [("00000/img00000000.png", bytes(2**23))]
                              + IMAGES[1:], {"size": 100})
        message = r"00000/img00000000.png: unreadable member \(Bad CRC-32"
    assert archive.stat().st_size < 2**21
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(["pack", str(archive), str(tmp_path / "d.h5"), "-q"]) == 2
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err) and "set.zip" in err, err
    assert grown_mib < 100


# ---- 6. broken files: every verb exits 2 with one line naming the file -------------------------

def _levels(f, counts=(2, 2), dtype=np.uint8, hwc=False) -> None:
    rng = np.random.RandomState(6)
    for r, n in zip((8, 4), counts, strict=True):
        shape = (n, r, r, 3) if hwc else (n, 3, r, r)
        f[f"data{r}x{r}"] = (rng.rand(*shape) * 255).astype(dtype)


def _metadata(f, texts) -> None:
    import h5py

    f.create_dataset("metadata", data=texts, dtype=h5py.string_dtype())


BROKEN_H5 = {
    "not hdf5": (None, "not a readable HDF5 file"),
    "truncated": (None, "not a readable HDF5 file"),
    "no levels": (lambda f: f.create_dataset("images", data=np.zeros((2, 3, 8, 8), np.uint8)),
                  r"no data\{R\}x\{R\} datasets"),
    "float data": (lambda f: _levels(f, dtype=np.float32), "must be uint8"),
    "int16 data": (lambda f: _levels(f, dtype=np.int16), "must be uint8"),
    "HWC data": (lambda f: _levels(f, hwc=True), "must be uint8"),
    "level count mismatch": (lambda f: _levels(f, counts=(2, 3)), "data4x4 holds 3 images"),
    "empty level": (lambda f: _levels(f, counts=(0, 0)), "data8x8 is empty"),
    "level is a group": (lambda f: (_levels(f), f.create_group("data16x16")),
                         "data16x16 must be uint8"),
    "hard link loop": (lambda f: (_levels(f), f.create_group("data16x16"),
                                  f["data16x16"].__setitem__("again", f["data16x16"])),
                       "data16x16 must be uint8"),
    "labels shorter": (lambda f: (_levels(f), f.__setitem__("labels", np.zeros((1, 2)))),
                       "labels has shape"),
    "labels 1-D": (lambda f: (_levels(f), f.__setitem__("labels", np.zeros(2))),
                   "labels has shape"),
    "NaN labels": (lambda f: (_levels(f), f.__setitem__("labels", np.array([[0], [np.nan]]))),
                   r"labels\[1\] is not finite"),
    "text labels": (lambda f: (_levels(f), f.__setitem__("labels", np.array([b"a", b"b"])[:,
                                                                                          None])),
                    "labels must be numeric"),
    "bad metadata JSON": (lambda f: (_levels(f), _metadata(f, ["{}", "{oops"])),
                          r"metadata\[1\] is not JSON", ("info", "info --verify")),
    "metadata not objects": (lambda f: (_levels(f), _metadata(f, ["{}", "[1]"])),
                             r"metadata\[1\] is not a JSON object", ("info", "info --verify")),
    "metadata shorter": (lambda f: (_levels(f), _metadata(f, ["{}"])), "metadata has shape"),
    "count attribute lies": (lambda f: (_levels(f), f.attrs.__setitem__("count", 10**9)),
                             "attribute count = 1000000000"),
    "soft link loop": (lambda f: (_levels(f), f.__setitem__("x", __import__("h5py").SoftLink(
        "/x"))), "/x is a soft link"),
}


def broken_h5(tmp_path: Path, case: str) -> Path:
    import h5py

    path = tmp_path / f"{case.replace(' ', '-')}.h5"
    build = BROKEN_H5[case][0]
    if case == "not hdf5":
        path.write_text("name,label\n")
    elif case == "truncated":
        good = small_pack(tmp_path / "good")
        path.write_bytes(good.read_bytes()[:3000])
    else:
        with h5py.File(path, "w") as f:
            build(f)
    return path


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory) -> Path:
    from eval.features.inception import FIDInception
    from eval.sampling import torch

    path = tmp_path_factory.mktemp("inception") / "pt_inception.pth"
    torch.save(FIDInception().state_dict(), path)
    return path


def verbs_over(path: Path, tmp_path: Path, inception: Path) -> dict[str, list[str]]:
    images = photo_folder(tmp_path / "photos", 2, 32)
    return {
        "info": ["info", str(path)],
        "info --verify": ["info", str(path), "--verify"],
        "export": ["export", str(path), "--out", str(tmp_path / "exported"), "-q"],
        "export zip": ["export", str(path), "--format", "stylegan2-ada-zip", "--out",
                       str(tmp_path / "e.zip"), "-q"],
        "train": ["train", "--config", "tiny", "--data", str(path), "--dry-run",
                  "--outdir", str(tmp_path / "runs")],
        "fid": ["fid", str(path), str(images), "--weights", f"inception-fid={inception}",
                "--no-progress", "--stats-cache", str(tmp_path / "stats"), "--device", "cpu"],
    }


def assert_one_line_exit_2(argv: list[str], capsys, *needles: str) -> None:
    from ffhq_tools.cli import main

    assert main(argv) == 2, argv
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    for needle in needles:
        assert re.search(needle, captured.err), (argv, captured.err)


@pytest.mark.parametrize("case", list(BROKEN_H5))
def test_broken_hdf5_files_give_one_line_errors(tmp_path, capsys, inception_weights, case):
    """Every verb that reads the broken part (metadata is read by info only)."""
    path = broken_h5(tmp_path, case)
    _, message, *readers = BROKEN_H5[case]
    for verb, argv in verbs_over(path, tmp_path, inception_weights).items():
        if not readers or verb in readers[0]:
            assert_one_line_exit_2(argv, capsys, re.escape(str(path)), message)


def test_a_missing_level_is_named(tmp_path, capsys):
    from ffhq_tools.data import PackOptions, pack

    path = tmp_path / "d.h5"
    pack(photo_folder(tmp_path / "src", 2), path, PackOptions(min_res=8), progress=False)
    for argv in (["export", str(path), "--res", "4", "--out", str(tmp_path / "x"), "-q"],
                 ["train", "--config", "tiny", "--data", str(path), "--res", "4", "--dry-run",
                  "--outdir", str(tmp_path / "runs")]):
        assert_one_line_exit_2(argv, capsys, re.escape(str(path)), "4")


def _zip_case(tmp_path: Path, case: str) -> Path:
    import zipfile

    path = tmp_path / "set.zip"
    if case == "bad CRC":
        return patched_zip(path, IMAGES, {"crc": 0x12345678}, zipfile.ZIP_STORED)
    if case == "encrypted member":
        return patched_zip(path, IMAGES, {"flags": 0x1})
    if case == "unknown compression method":
        return patched_zip(path, IMAGES, {"method": 99})
    sg2_zip(path, IMAGES)
    if case == "not a zip":
        path.write_bytes(b"PK\x03\x04 but nothing else")
    elif case == "truncated zip":
        path.write_bytes(path.read_bytes()[:-30])
    elif case == "corrupt deflate data":
        patched = patched_zip(path, [("00000/img00000000.png", bytes(5000))] + IMAGES[1:], {})
        raw = bytearray(patched.read_bytes())
        raw[40:60] = b"\xff" * 20
        path.write_bytes(bytes(raw))
    return path


BROKEN_ZIPS = {
    "bad CRC": r"img00000000.png: unreadable member \(Bad CRC-32",
    "encrypted member": r"img00000000.png: the member is encrypted",
    "unknown compression method": r"img00000000.png: unknown compression method 99",
    "not a zip": r"set.zip: not a zip file",
    "truncated zip": r"set.zip: not a zip file",
    "corrupt deflate data": r"img00000000.png: unreadable member",
}


@pytest.mark.parametrize("case", list(BROKEN_ZIPS))
def test_broken_zips_give_one_line_errors(tmp_path, capsys, case):
    archive = _zip_case(tmp_path, case)
    assert_one_line_exit_2(["pack", str(archive), str(tmp_path / "d.h5"), "-q"], capsys,
                           re.escape(str(archive)), BROKEN_ZIPS[case])
    assert not (tmp_path / "d.h5").exists()


# ---- a full disk: "disk full: PATH", and the last complete state is kept -----------------------

LIMITED = """import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit, writes fail with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from ffhq_tools.cli import main
sys.exit(main(sys.argv[2:]))
"""


def run_with_file_limit(limit: int, argv: list[str]):
    """The CLI in a child whose files may not grow past `limit` bytes (as on a full disk)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.run([sys.executable, "-c", LIMITED, str(limit), *argv], env=env,
                          capture_output=True, text=True, timeout=120)


def test_pack_on_a_full_disk_stops_cleanly_and_resumes(tmp_path):
    import h5py

    from ffhq_tools.data import pack, verify
    from ffhq_tools.data.writer import partial_path

    src = photo_folder(tmp_path / "src", 64, 32)
    out = tmp_path / "d.h5"
    result = run_with_file_limit(280_000, ["pack", str(src), str(out), "-q"])
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"disk full: {partial_path(out)}" in result.stderr
    assert not out.exists()
    with h5py.File(partial_path(out)) as f:  # the last flush, readable
        written = int(f.attrs["written"])
    assert 0 < written < 64 and written % 16 == 0
    pack(src, out, progress=False)  # room again: the rerun continues
    pack(src, tmp_path / "clean.h5", progress=False)
    assert verify(out) == []
    with h5py.File(out) as a, h5py.File(tmp_path / "clean.h5") as b:
        for name in ("data32x32", "data4x4", "metadata"):
            assert (a[name][()] == b[name][()]).all()


def test_export_on_a_full_disk_names_the_output(tmp_path):
    path = small_pack(tmp_path, 8)
    out = tmp_path / "e.zip"
    result = run_with_file_limit(2_000, ["export", str(path), "--format", "stylegan2-ada-zip",
                                         "--out", str(out), "-q"])
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert "disk full: " in result.stderr and "e.zip" in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".e.zip*"))


def test_a_damaged_sidecar_line_starts_the_pack_over(tmp_path, capsys):
    import h5py

    from ffhq_tools.data import pack
    from ffhq_tools.data.writer import sidecar_path

    src = photo_folder(tmp_path / "src", 40)
    out = tmp_path / "d.h5"

    def stop(done: int) -> None:
        if done == 36:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pack(src, out, progress=False, on_image=stop)
    lines = sidecar_path(out).read_text().splitlines()
    lines[3] = lines[3][:20]  # torn in the middle of the file, not only at its end
    sidecar_path(out).write_text("\n".join(lines) + "\n")
    pack(src, out, progress=False)
    assert "starting over" in capsys.readouterr().err
    pack(src, tmp_path / "clean.h5", progress=False)
    with h5py.File(out) as a, h5py.File(tmp_path / "clean.h5") as b:
        assert (a["metadata"][()] == b["metadata"][()]).all()
        assert (a["data8x8"][()] == b["data8x8"][()]).all()


BAD_ALIGN_RECORDS = {
    "torn middle line": '{"output": "i00.png"}\n{"outp\n{"output": "i01.png"}\n',
    "no output": '{"output": "i00.png"}\n{"source": "x.jpg"}\n',
    "output not a string": '{"output": 7}\n',
    "not an object": '[1, 2]\n',
}


@pytest.mark.parametrize("case", list(BAD_ALIGN_RECORDS))
def test_bad_align_records_give_one_line_errors(tmp_path, capsys, case):
    src = photo_folder(tmp_path / "aligned", 2)
    (src / "align.jsonl").write_text(BAD_ALIGN_RECORDS[case])
    assert_one_line_exit_2(["pack", str(src), str(tmp_path / "d.h5"), "-q"], capsys,
                           re.escape(str(src / "align.jsonl")))

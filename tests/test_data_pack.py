"""HDF5 packing: exact box-average levels, checksums, labels/attributes, resume after a kill,
shard merge through virtual datasets, export/import round trip, the H5Dataset reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from ffhq_tools.data import H5Dataset, PackOptions, export, merge_shards, pack, verify
from ffhq_tools.data.layout import DatasetError, pyramid
from ffhq_tools.weights import CELEBAHQ_ATTRIBUTES


def image_folder(folder: Path, count: int, size: int = 32, seed: int = 0) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    images = []
    for i in range(count):
        pixels = rng.randint(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:03d}.png")
        images.append(pixels)
    return images


def test_pyramid_levels_are_rounded_box_averages_of_the_full_image():
    image = np.random.RandomState(1).randint(0, 256, (3, 16, 16)).astype(np.uint8)
    levels = pyramid(image, [16, 8, 4, 2])
    for r, level in levels.items():
        k = 16 // r
        blocks = image.astype(np.float64).reshape(3, r, k, r, k).mean(axis=(2, 4))
        np.testing.assert_array_equal(level, np.round(blocks).astype(np.uint8))
    for r in (8, 4, 2):  # against the stored level above: within the one rounding step
        above = levels[2 * r].astype(np.float64).reshape(3, r, 2, r, 2).mean(axis=(2, 4))
        assert np.abs(levels[r].astype(int) - np.round(above)).max() <= 1


def test_pack_layout_checksums_and_metadata(tmp_path):
    images = image_folder(tmp_path / "src", 5)
    info = pack(tmp_path / "src", tmp_path / "d.h5", PackOptions(min_res=4, compression="gzip-4"),
                progress=False)
    assert info["count"] == 5 and info["levels"] == [32, 16, 8, 4] and info["complete"]
    with h5py.File(tmp_path / "d.h5") as f:
        assert f["data32x32"].shape == (5, 3, 32, 32) and f["data32x32"].dtype == np.uint8
        assert f["data32x32"].chunks == (1, 3, 32, 32) and f["data32x32"].maxshape[0] is None
        assert f["data32x32"].compression == "gzip"
        np.testing.assert_array_equal(f["data32x32"][2], images[2].transpose(2, 0, 1))
        meta = json.loads(f["metadata"].asstr()[0])
        assert meta["name"] == "img000.png" and len(meta["pixel_md5"]) == 32
    assert verify(tmp_path / "d.h5") == []
    with h5py.File(tmp_path / "d.h5", "a") as f:  # tamper with one pixel
        f["data8x8"][1, 0, 0, 0] ^= 1
    problems = verify(tmp_path / "d.h5")
    assert any("data8x8: SHA-256 mismatch" in p for p in problems)
    assert any("data8x8[1]: not the box average" in p for p in problems)


def test_labels_and_attributes(tmp_path):
    image_folder(tmp_path / "src", 3)
    (tmp_path / "labels.csv").write_text("name,a,b\n" + "".join(
        f"img{i:03d}.png,{i},{i / 2}\n" for i in range(3)))
    attributes = {f"img{i:03d}": [1 if (i + j) % 2 else -1 for j in range(40)] for i in range(3)}
    (tmp_path / "attributes.json").write_text(json.dumps(attributes))
    pack(tmp_path / "src", tmp_path / "d.h5", labels_file=tmp_path / "labels.csv",
         attributes_file=tmp_path / "attributes.json", progress=False)
    with h5py.File(tmp_path / "d.h5") as f:
        np.testing.assert_array_equal(f["labels"][()], [[0, 0], [1, 0.5], [2, 1]])
        assert f["attributes"].dtype == np.int8 and f["attributes"].shape == (3, 40)
        assert f["attributes"][1, 0] == 1 and len(CELEBAHQ_ATTRIBUTES) == 40
    (tmp_path / "short.csv").write_text("name,a\nimg000.png,1\n")
    with pytest.raises(DatasetError, match="no entry for image 'img001.png'"):
        pack(tmp_path / "src", tmp_path / "e.h5", labels_file=tmp_path / "short.csv",
             progress=False)


def test_mixed_sizes_fail_naming_the_file(tmp_path):
    image_folder(tmp_path / "src", 2)
    Image.new("RGB", (16, 16)).save(tmp_path / "src" / "img999.png")
    with pytest.raises(DatasetError, match="img999.png: 16x16x3, expected 32x32x3"):
        pack(tmp_path / "src", tmp_path / "d.h5", progress=False)
    assert not (tmp_path / "d.h5").exists()


KILL_SCRIPT = """
import os, signal, sys
from ffhq_tools.data import pack
def die(count):
    if count == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
pack(sys.argv[1], sys.argv[2], progress=False, on_image=die)
"""


def test_kill_and_resume_equals_uninterrupted_pack(tmp_path):
    image_folder(tmp_path / "src", 40)
    env = os.environ | {"PYTHONPATH": os.getcwd()}
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "src"),
                             str(tmp_path / "k.h5"), "37"], env=env)
    assert killed.returncode != 0 and not (tmp_path / "k.h5").exists()
    partial = tmp_path / ".k.h5.partial"
    assert partial.exists()
    with h5py.File(partial) as f:
        assert f.attrs["written"] == 32  # flushed every 16 images
    pack(tmp_path / "src", tmp_path / "k.h5", progress=False)
    pack(tmp_path / "src", tmp_path / "c.h5", progress=False)
    with h5py.File(tmp_path / "k.h5") as k, h5py.File(tmp_path / "c.h5") as c:
        for name in ("data32x32", "data4x4"):
            np.testing.assert_array_equal(k[name][()], c[name][()])
            assert k.attrs[f"sha256_{name}"] == c.attrs[f"sha256_{name}"]
    assert not partial.exists()


def test_shards_merge_into_virtual_datasets(tmp_path):
    images = image_folder(tmp_path / "src", 7)
    shards = []
    for index in range(3):
        shards.append(tmp_path / "set" / "shards" / f"s{index}.h5")
        pack(tmp_path / "src", shards[-1], shard=(index, 3), progress=False)
    info = merge_shards(shards, tmp_path / "set" / "merged.h5")
    assert info["count"] == 7 and info["virtual"]
    (tmp_path / "set").rename(tmp_path / "moved")  # links are relative: the set can move
    merged = tmp_path / "moved" / "merged.h5"
    assert verify(merged) == []
    with h5py.File(merged) as f:
        np.testing.assert_array_equal(f["data32x32"][()], np.stack(images).transpose(0, 3, 1, 2))
        names = [json.loads(m)["name"] for m in f["metadata"].asstr()[()]]
    assert names == [f"img{i:03d}.png" for i in range(7)]
    assert H5Dataset(merged, 16)[6].shape == (3, 16, 16)
    with pytest.raises(DatasetError, match="no such file"):
        merge_shards([tmp_path / "set" / "shards" / "s0.h5"], tmp_path / "m2.h5")


def test_export_import_round_trip_is_lossless(tmp_path):
    image_folder(tmp_path / "src", 4)
    (tmp_path / "labels.json").write_text(json.dumps({f"img{i:03d}.png": [i] for i in range(4)}))
    pack(tmp_path / "src", tmp_path / "d.h5", labels_file=tmp_path / "labels.json", progress=False)
    assert export(tmp_path / "d.h5", tmp_path / "d.zip", 16, "stylegan2-ada-zip",
                  progress=False) == 4
    with zipfile.ZipFile(tmp_path / "d.zip") as z:
        manifest = json.loads(z.read("dataset.json"))
        assert manifest["labels"][3] == ["00000/img00000003.png", 3]
        assert "00000/img00000000.png" in z.namelist()
    export(tmp_path / "d.h5", tmp_path / "png", None, "png", progress=False)  # full size
    for source, levels in ((tmp_path / "d.zip", (16,)), (tmp_path / "png", (32, 16, 8, 4))):
        out = tmp_path / f"{source.name}.h5"
        pack(source, out, progress=False)
        with h5py.File(tmp_path / "d.h5") as a, h5py.File(out) as b:
            for r in levels:  # the exported level, and every level below a full-size export
                np.testing.assert_array_equal(a[f"data{r}x{r}"][()], b[f"data{r}x{r}"][()])
            np.testing.assert_array_equal(a["labels"][()], b["labels"][()])


def test_h5dataset_reader(tmp_path):
    import torch

    images = image_folder(tmp_path / "src", 6)
    labels = {f"img{i:03d}.png": [i, -i] for i in range(6)}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    pack(tmp_path / "src", tmp_path / "d.h5", labels_file=tmp_path / "labels.json", progress=False)
    dataset = H5Dataset(tmp_path / "d.h5", 32, xflip=True, labels=True)
    assert len(dataset) == 12
    image, label = dataset[2]
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, 32, 32)
    np.testing.assert_array_equal(image.numpy(), images[2].transpose(2, 0, 1))
    np.testing.assert_array_equal(dataset[8][0].numpy(), images[2].transpose(2, 0, 1)[:, :, ::-1])
    assert label.tolist() == [2.0, -2.0]
    small = H5Dataset(tmp_path / "d.h5", 8, max_size=3)
    assert len(small) == 3 and tuple(small[0].shape) == (3, 8, 8)
    loader = torch.utils.data.DataLoader(H5Dataset(tmp_path / "d.h5", 16), batch_size=3,
                                         num_workers=2, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    batches = list(loader)
    assert sum(len(b) for b in batches) == 6 and batches[0].dtype == torch.uint8
    with pytest.raises(DatasetError, match="no level 64x64"):
        H5Dataset(tmp_path / "d.h5", 64)


def test_cli_pack_info_export(tmp_path, capsys):
    from ffhq_tools.cli import main

    image_folder(tmp_path / "src", 3)
    assert main(["pack", str(tmp_path / "src"), str(tmp_path / "d.h5"), "-q",
                 "--compression", "none"]) == 0
    assert main(["info", str(tmp_path / "d.h5"), "--verify"]) == 0
    assert "verify: OK" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "d.h5"), "--res", "8", "--out",
                 str(tmp_path / "x"), "-q"]) == 0
    assert main(["pack", str(tmp_path / "src"), str(tmp_path / "e.h5"), "--compression",
                 "zip"]) == 2
    assert "--compression zip" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "nothing.h5")]) == 2

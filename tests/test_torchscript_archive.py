"""The TorchScript archive reader: tensors equal torch.jit.load's (run here only, on files
this test makes), and truncated, corrupt or crafted archives are clear errors naming the
file, with nothing in them ever executed."""

from __future__ import annotations

import collections
import io
import pickle
import sys
import types
import zipfile

import pytest
import torch
from torch import nn

from ffhq_tools.torchscript_archive import TorchScriptArchiveError, read_torchscript


class _Leaf(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))
        self.register_buffer("mean", torch.randn(4))
        self.register_buffer("steps", torch.arange(5))

    def forward(self, x):
        return torch.conv2d(x, self.weight) + self.mean.view(1, -1, 1, 1)


class _Tree(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential()
        self.layers.add_module("conv", _Leaf())
        self.layers.add_module("conv_1", _Leaf())
        self.scale = nn.Parameter(torch.randn(8, 2)[::2, 1:])  # a strided view of a storage
        self.register_buffer("halves", torch.randn(3).half())

    def forward(self, x):
        return self.layers.conv(x) * self.scale.sum()


@pytest.fixture
def scripted(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "tree.pt"
    torch.jit.script(_Tree()).save(str(path))
    return path


def test_tensors_equal_the_jit_loaded_state_dict(scripted):
    tree = read_torchscript(scripted)
    tensors = tree.tensors()
    reference = torch.jit.load(str(scripted)).state_dict()
    assert list(tensors) == ["scale", "halves", "layers.conv.weight", "layers.conv.mean",
                             "layers.conv.steps", "layers.conv_1.weight", "layers.conv_1.mean",
                             "layers.conv_1.steps"]
    assert set(tensors) == set(reference)
    for name, tensor in tensors.items():
        assert tensor.dtype == reference[name].dtype
        assert torch.equal(tensor, reference[name]), name
    assert tree.class_names()["layers"].startswith("__torch__.torch.nn.modules.container.")
    assert tree.class_names()["layers"].endswith(".Sequential")  # maybe name-mangled
    assert tree.child("layers").child("conv").qualified_name.endswith("_Leaf")
    assert tree.attributes["training"] is True


def test_truncated_and_corrupt_archives_name_the_file(scripted, tmp_path):
    data = scripted.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(TorchScriptArchiveError, match="truncated.pt"):
        read_torchscript(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a zip" * 100)
    with pytest.raises(TorchScriptArchiveError, match="garbage.pt: not a readable"):
        read_torchscript(garbage)
    with pytest.raises(TorchScriptArchiveError, match="missing.pt: no such file"):
        read_torchscript(tmp_path / "missing.pt")
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(TorchScriptArchiveError, match="plain.zip: no single <name>/data.pkl"):
        read_torchscript(plain)


def _rewrite(source, target, replace: dict[str, bytes], drop: tuple[str, ...] = ()):
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            data = replace.get(info.filename, zin.read(info))
            zout.writestr(info.filename, data, compress_type=zipfile.ZIP_STORED)
    return target


def test_storage_entry_shorter_than_declared(scripted, tmp_path):
    with zipfile.ZipFile(scripted) as zf:
        entry = next(n for n in zf.namelist() if "/data/" in n and zf.getinfo(n).file_size > 8)
        short = zf.read(entry)[:-4]
    bad = _rewrite(scripted, tmp_path / "short.pt", {entry: short})
    with pytest.raises(TorchScriptArchiveError, match=r"short.pt: storage entry .* holds"):
        read_torchscript(bad)
    missing = _rewrite(scripted, tmp_path / "nostorage.pt", {}, drop=(entry,))
    with pytest.raises(TorchScriptArchiveError, match="nostorage.pt: storage entry .* missing"):
        read_torchscript(missing)


# ---- crafted data.pkl files -----------------------------------------------------------------

class _Storage:
    def __init__(self, key: str, numel: int, storage_type=torch.FloatStorage):
        self.pid = ("storage", storage_type, key, "cpu", numel)


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())


class _Reduce:
    def __init__(self, func, args):
        self.func, self.args = func, args


class _CraftingPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, _Storage) else None

    def reducer_override(self, obj):
        if isinstance(obj, _Tensor):
            return torch._utils._rebuild_tensor_v2, obj.args
        if isinstance(obj, _Reduce):
            return obj.func, obj.args
        return NotImplemented


@pytest.fixture
def torch_module_class(monkeypatch):
    """A class pickled as `__torch__.Net`, like TorchScript's module classes."""
    fake = types.ModuleType("__torch__")

    class Net:
        pass

    Net.__module__, Net.__qualname__ = "__torch__", "Net"
    fake.Net = Net
    monkeypatch.setitem(sys.modules, "__torch__", fake)
    return Net


def _module(cls, state: dict):
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


def _archive(path, root, storages: dict[str, bytes]):
    buffer = io.BytesIO()
    _CraftingPickler(buffer, protocol=2).dump(root)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("net/data.pkl", buffer.getvalue())
        zf.writestr("net/version", "3\n")
        for key, data in storages.items():
            zf.writestr(f"net/data/{key}", data)
    return path


def test_crafted_archive_reads_when_consistent(tmp_path, torch_module_class):
    values = torch.arange(6, dtype=torch.float32)
    storage = _Storage("0", 6)
    root = _module(torch_module_class, {"w": _Tensor(storage, 1, (2, 2), (2, 1)),
                                        "n": 3})
    tree = read_torchscript(_archive(tmp_path / "ok.pt", root, {"0": values.numpy().tobytes()}))
    assert torch.equal(tree.tensors()["w"], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert tree.attributes["n"] == 3 and tree.qualified_name == "__torch__.Net"


def test_tensor_reaching_past_its_storage_is_refused(tmp_path, torch_module_class):
    storage = _Storage("0", 4)
    root = _module(torch_module_class, {"w": _Tensor(storage, 2, (2, 2), (2, 1))})
    path = _archive(tmp_path / "overrun.pt", root, {"0": bytes(16)})
    with pytest.raises(TorchScriptArchiveError, match="overrun.pt: tensor .* reaches element 5"):
        read_torchscript(path)


def test_huge_declared_storage_is_refused_before_reading(tmp_path, torch_module_class):
    root = _module(torch_module_class, {"w": _Tensor(_Storage("0", 1 << 40), 0, (4,), (1,))})
    path = _archive(tmp_path / "huge.pt", root, {"0": bytes(16)})
    with pytest.raises(TorchScriptArchiveError, match=r"huge.pt: storage entry .* holds 16 bytes"):
        read_torchscript(path)


def test_globals_outside_the_allow_list_are_refused(tmp_path, torch_module_class):
    marker = tmp_path / "ran"
    import os

    root = _module(torch_module_class, {"x": _Reduce(os.system, (f"touch {marker}",))})
    path = _archive(tmp_path / "system.pt", root, {})
    with pytest.raises(TorchScriptArchiveError, match=r"system.pt: refusing global (posix|os)"):
        read_torchscript(path)
    evaluated = _module(torch_module_class, {"x": _Reduce(eval, ("1 + 1",))})
    with pytest.raises(TorchScriptArchiveError, match=r"refusing global (__builtin__|builtins)"):
        read_torchscript(_archive(tmp_path / "eval.pt", evaluated, {}))
    assert not marker.exists()


def test_a_root_that_is_not_a_module_is_refused(tmp_path):
    path = _archive(tmp_path / "list.pt", [1, 2, 3], {})
    with pytest.raises(TorchScriptArchiveError, match="list.pt: .* does not hold a TorchScript"):
        read_torchscript(path)


def test_module_trees_that_loop_or_nest_too_deep_are_refused(tmp_path, torch_module_class):
    looping = _module(torch_module_class, {})
    looping.__dict__["child"] = _module(torch_module_class, {"parent": looping})
    with pytest.raises(TorchScriptArchiveError, match="loop.pt: module attribute 'parent'"):
        read_torchscript(_archive(tmp_path / "loop.pt", looping, {}))
    deep = _module(torch_module_class, {})
    for _ in range(200):
        deep = _module(torch_module_class, {"inner": deep})
    with pytest.raises(TorchScriptArchiveError, match="deep.pt: modules nested deeper"):
        read_torchscript(_archive(tmp_path / "deep.pt", deep, {}))

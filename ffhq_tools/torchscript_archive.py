"""Reading TorchScript archives (`torch.jit.save` zip files) as data, never as code.

A TorchScript `.pt` is a zip holding `<name>/data.pkl` (a pickle of the module tree: one
`__torch__.<qualified name>` object per module, whose state is a dict of attributes, with
tensors built by `torch._utils._rebuild_tensor_v2` from persistent ids that name storages
`<name>/data/<key>`), `constants.pkl`, `code/` (the TorchScript source) and `version`.

`read_torchscript(path)` unpickles `data.pkl` with a restricted unpickler: every
`__torch__.*` class becomes an inert `ScriptObject` that only stores its attributes (no
`__setstate__`, no method of the file ever runs), storages are read from their zip entries
by us (dtype and element count from the persistent id, checked against the entry's length;
every tensor view checked against its storage), and any other global is refused. `code/`
is never read and `torch.jit.load` is never called: turning the tree into a network is the
job of architecture-exact modules that take its tensors by name and shape.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path

import torch

from ffhq_tools.errors import WeightsError

MAX_PICKLE_BYTES = 64 << 20
MAX_DEPTH = 64  # module nesting; real networks use fewer than 10 levels
STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64, "IntStorage": torch.int32, "ShortStorage": torch.int16,
    "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


class TorchScriptArchiveError(WeightsError):
    """A TorchScript archive is unreadable, malformed or asks for something not allowed."""


class ScriptObject:
    """Inert stand-in for one TorchScript object: its class name and its attributes."""

    qualified_name = ""

    def __init__(self, attributes: dict | None = None):
        self.attributes = dict(attributes or {})

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise TorchScriptArchiveError(
                f"object {self.qualified_name} has a custom state (its class defines "
                "__getstate__/__setstate__, code that torch.jit.load would run): not accepted")
        self.attributes = {str(k): v for k, v in state.items()}

    def child(self, name: str) -> ScriptObject:
        value = self.attributes.get(name)
        if not isinstance(value, ScriptObject):
            raise TorchScriptArchiveError(f"{self.qualified_name} has no submodule '{name}'")
        return value

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Every tensor in this subtree under its dotted attribute path, in pickle order."""
        out: dict[str, torch.Tensor] = {}
        for name, value in self.attributes.items():
            if isinstance(value, torch.Tensor):
                out[f"{prefix}{name}"] = value
            elif isinstance(value, ScriptObject):
                out.update(value.tensors(f"{prefix}{name}."))
        return out

    def class_names(self, prefix: str = "") -> dict[str, str]:
        """Dotted path -> qualified class name of every object in this subtree ('' = self)."""
        out = {prefix.rstrip("."): self.qualified_name}
        for name, value in self.attributes.items():
            if isinstance(value, ScriptObject):
                out.update(value.class_names(f"{prefix}{name}."))
        return out


_STUB_CLASSES: dict[str, type[ScriptObject]] = {}


def _stub_class(qualified_name: str) -> type[ScriptObject]:
    if qualified_name not in _STUB_CLASSES:
        _STUB_CLASSES[qualified_name] = type("ScriptObject", (ScriptObject,),
                                             {"qualified_name": qualified_name})
    return _STUB_CLASSES[qualified_name]


class _StorageType:
    def __init__(self, name: str):
        self.name, self.dtype = name, STORAGE_DTYPES[name]


def _restore_type_tag(value, type_tag=None):
    return value


def _build_list(*values):
    return list(values[0]) if len(values) == 1 and isinstance(values[0], list) else list(values)


def _allowed_globals() -> dict[tuple[str, str], object]:
    allowed: dict[tuple[str, str], object] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch.jit._pickle", "restore_type_tag"): _restore_type_tag,
    }
    for kind in ("intlist", "floatlist", "boollist", "doublelist"):
        allowed[("torch.jit._pickle", f"build_{kind}")] = _build_list
    for name in STORAGE_DTYPES:
        allowed[("torch", name)] = _StorageType(name)
    return allowed


ALLOWED = _allowed_globals()


class _ArchiveUnpickler(pickle.Unpickler):
    def __init__(self, file, archive: _Archive):
        super().__init__(file)
        self.archive = archive

    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            return _stub_class(f"{module}.{name}")
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self.archive.rebuild_tensor
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        raise TorchScriptArchiveError(f"refusing global {module}.{name}: not a TorchScript "
                                      "module class, tensor or storage type")

    def persistent_load(self, pid):
        return self.archive.storage(pid)


class _Archive:
    """The zip and the storages read from it so far (each entry read at most once)."""

    def __init__(self, zf: zipfile.ZipFile, prefix: str, archive_bytes: int):
        self.zf, self.prefix, self.archive_bytes = zf, prefix, archive_bytes
        self.storages: dict[str, torch.Tensor] = {}

    def storage(self, pid) -> torch.Tensor:
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType)):
            raise TorchScriptArchiveError(f"unexpected persistent id {str(pid)[:80]}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise TorchScriptArchiveError(f"malformed storage reference {str(pid)[:80]}")
        if key in self.storages:
            stored = self.storages[key]
            if stored.dtype != storage_type.dtype or stored.numel() != numel:
                raise TorchScriptArchiveError(f"storage data/{key} is declared twice, "
                                              "with different types or sizes")
            return stored
        self.storages[key] = self._read_storage(key, storage_type.dtype, numel)
        return self.storages[key]

    def _read_storage(self, key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        entry_name = f"{self.prefix}data/{key}"
        try:
            info = self.zf.getinfo(entry_name)
        except KeyError:
            raise TorchScriptArchiveError(f"storage entry {entry_name} is missing") from None
        expected = numel * torch.empty((), dtype=dtype).element_size()
        if info.file_size > self.archive_bytes:
            raise TorchScriptArchiveError(f"storage entry {entry_name} declares "
                                          f"{info.file_size} bytes, more than the whole file")
        if info.file_size != expected:
            raise TorchScriptArchiveError(
                f"storage entry {entry_name} holds {info.file_size} bytes; its declaration "
                f"({numel} x {dtype}) needs {expected}")
        if info.compress_type != zipfile.ZIP_STORED:
            raise TorchScriptArchiveError(f"storage entry {entry_name} is compressed; "
                                          "torch.jit.save stores tensor data uncompressed")
        data = bytearray(self.zf.read(info))
        if len(data) != expected:
            raise TorchScriptArchiveError(f"storage entry {entry_name} is truncated")
        if numel == 0:
            return torch.empty(0, dtype=dtype)
        return torch.frombuffer(data, dtype=dtype)

    def rebuild_tensor(self, storage, offset, size, stride, requires_grad=False,
                       hooks=None, metadata=None):
        if not isinstance(storage, torch.Tensor):
            raise TorchScriptArchiveError("tensor without a storage")
        size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
        if not isinstance(offset, int) or offset < 0 or len(size) != len(stride):
            raise TorchScriptArchiveError(f"malformed tensor declaration {size} {stride}")
        if any(s < 0 for s in size) or any(s < 0 for s in stride):
            raise TorchScriptArchiveError(f"negative size or stride in tensor {size} {stride}")
        if 0 not in size:
            last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
            if last >= storage.numel():
                raise TorchScriptArchiveError(
                    f"tensor {size} at offset {offset} reaches element {last} of a storage "
                    f"of {storage.numel()}")
        return torch.as_strided(storage, size, stride, offset)


def _int_tuple(values, what: str) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or not all(isinstance(v, int) for v in values):
        raise TorchScriptArchiveError(f"tensor {what} is not a tuple of integers")
    return tuple(values)


def _data_pickle_name(zf: zipfile.ZipFile) -> str:
    names = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
    if len(names) != 1:
        raise TorchScriptArchiveError("no single <name>/data.pkl entry: not a TorchScript "
                                      "archive")
    prefix = names[0][: -len("data.pkl")]
    if f"{prefix}version" not in zf.namelist():
        raise TorchScriptArchiveError(f"no {prefix}version entry: not a TorchScript archive")
    return names[0]


def _read_root(zf: zipfile.ZipFile, archive_bytes: int) -> ScriptObject:
    pickle_name = _data_pickle_name(zf)
    info = zf.getinfo(pickle_name)
    if info.file_size > MAX_PICKLE_BYTES:
        raise TorchScriptArchiveError(f"{pickle_name} declares {info.file_size} bytes "
                                      f"(limit {MAX_PICKLE_BYTES})")
    archive = _Archive(zf, pickle_name[: -len("data.pkl")], archive_bytes)
    with zf.open(info) as f:
        root = _ArchiveUnpickler(f, archive).load()
    if not isinstance(root, ScriptObject):
        raise TorchScriptArchiveError(f"{pickle_name} does not hold a TorchScript module")
    _check_tree(root, depth=0, ancestors=set())
    return root


def _check_tree(node: ScriptObject, depth: int, ancestors: set[int]) -> None:
    """Refuse module trees that loop back on themselves or nest absurdly deep."""
    if depth > MAX_DEPTH:
        raise TorchScriptArchiveError(f"modules nested deeper than {MAX_DEPTH} levels")
    ancestors.add(id(node))
    for name, value in node.attributes.items():
        if isinstance(value, ScriptObject):
            if id(value) in ancestors:
                raise TorchScriptArchiveError(f"module attribute '{name}' of "
                                              f"{node.qualified_name} loops back to its parent")
            _check_tree(value, depth + 1, ancestors)
    ancestors.discard(id(node))


_READ_ERRORS = (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, TypeError,
                AttributeError, IndexError, KeyError, RuntimeError, OverflowError,
                MemoryError, NotImplementedError, RecursionError, OSError)


def read_torchscript(path: str | Path) -> ScriptObject:
    """The module tree of the TorchScript archive at `path`, read as data (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise TorchScriptArchiveError(f"{path}: no such file")
    try:
        with zipfile.ZipFile(path) as zf:
            return _read_root(zf, path.stat().st_size)
    except TorchScriptArchiveError as exc:
        raise TorchScriptArchiveError(f"{path}: {exc}") from None
    except _READ_ERRORS as exc:
        raise TorchScriptArchiveError(f"{path}: not a readable TorchScript archive "
                                      f"({type(exc).__name__}: {str(exc)[:200]})") from None

"""Reading official checkpoints without running code carried inside them.

`safe_load_pickle` is a restricted unpickler: each global the pickle asks for is looked up in
an allow-list and mapped to an inert stand-in (a stub that only stores its state) or to a
checked array/tensor rebuilder; anything else (os.system, builtins.eval, exec'd persistence
source ...) is refused before it can run. It reads:
  - NVIDIA TF pickles (StyleGAN v1 / StyleGAN2 `(G, D, Gs)` tuples of dnnlib Network objects,
    the CelebA-HQ classifiers): `TFNetwork` stubs with `.variables` {name: ndarray};
  - ProGAN TF pickles (tkarras/progressive_growing_of_gans `(G, D, Gs)` of `tfutil.Network`):
    `ProGANNetwork` stubs, same fields;
  - stylegan2-ada-pytorch / stylegan3 pickles: `PersistentObject` stubs whose module source is
    kept as inert text (never run); `.tensors()` gives the parameters and buffers under their
    state-dict names;
  - rosinality `.pt` zip files (via torch.load with this unpickler).
Converting those to our networks is `models.legacy_import`.

Sizes are checked before anything is allocated: an array placeholder (numpy's `_reconstruct`)
must declare no data (numpy's own `__setstate__` then checks shape x itemsize against the
bytes it is given), and a torch storage may not declare more bytes than the file holds.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from ffhq_tools.errors import FfhqToolsError


class UnsafePickleError(FfhqToolsError):
    """A pickle asked for a global outside the allow-list (it was not loaded)."""


class TFNetwork:
    """Inert stand-in for dnnlib.tflib.network.Network: keeps name, kwargs and variables."""

    def __setstate__(self, state):
        if not isinstance(state, dict) or "variables" not in state:
            raise UnsafePickleError("TF network pickle without a 'variables' list")
        self.name = state.get("name", "")
        self.static_kwargs = dict(state.get("static_kwargs") or {})
        self.build_func_name = state.get("build_func_name", "")
        self.components = dict(state.get("components") or {})
        self.own_variables = {str(k): _checked_array(v, k) for k, v in state["variables"]}

    @property
    def variables(self) -> dict[str, np.ndarray]:
        """Own variables plus every component's, prefixed 'component/'."""
        out = dict(self.own_variables)
        for name, comp in self.components.items():
            if isinstance(comp, TFNetwork):
                out.update({f"{name}/{k}": v for k, v in comp.variables.items()})
        return out


class ProGANNetwork(TFNetwork):
    """Inert stand-in for ProGAN's tfutil.Network (state version 2: no components)."""


class PersistentObject:
    """Inert stand-in for a torch_utils.persistence object: class name + pickled state only."""

    def __init__(self, class_name: str, state: dict, module_src: str = ""):
        self.class_name = class_name
        self.state = state
        self.module_src = module_src  # kept as text to recognise the network family; never run

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        return _module_tensors(self.state, prefix)

    def child(self, name: str):
        return (self.state.get("_modules") or {}).get(name)


class ModuleState:
    """Inert stand-in for a plain torch.nn module (only its __dict__ is kept)."""

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {}

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        return _module_tensors(self.state, prefix)


class EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict (a dict)."""

    def __setstate__(self, state):
        self.update(state or {})


class Namespace:
    """Stand-in for argparse.Namespace (rosinality's saved `args`)."""

    def __setstate__(self, state):
        self.__dict__.update(state or {})


def _module_tensors(state: dict, prefix: str) -> dict[str, torch.Tensor]:
    out = {}
    for kind in ("_parameters", "_buffers"):
        for name, value in (state.get(kind) or {}).items():
            if isinstance(value, torch.Tensor):
                out[f"{prefix}{name}"] = value.detach()
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, (PersistentObject, ModuleState)):
            out.update(child.tensors(f"{prefix}{name}."))
    return out


def _checked_array(value, name="array"):
    if isinstance(value, np.ndarray) and value.dtype == object:
        raise UnsafePickleError(f"variable {name}: object arrays are not accepted")
    return value


def _reconstruct_persistent(meta):
    if not isinstance(meta, dict) or meta.get("type") != "class" or "state" not in meta:
        raise UnsafePickleError("persistent object without class metadata")
    if not isinstance(meta["state"] or {}, dict):
        raise UnsafePickleError(f"persistent object {meta.get('class_name')!r}: its state is "
                                f"a {type(meta['state']).__name__}, not a dict")
    src = meta.get("module_src")
    return PersistentObject(str(meta.get("class_name", "")), meta["state"] or {},
                            src if isinstance(src, str) else "")


def _np_reconstruct(subtype, shape, dtype):
    """numpy's array placeholder: always empty in numpy's pickles (the data and the real
    shape follow in __setstate__), so a placeholder declaring data is refused unallocated."""
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"array subtype {subtype!r} is not accepted")
    declared = _declared_bytes(shape, _np_dtype(dtype))
    if declared:
        raise UnsafePickleError(f"array placeholder declares {declared} bytes of shape "
                                f"{shape!r} (numpy pickles declare none)")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _declared_bytes(shape, dtype: np.dtype) -> int:
    """shape x itemsize in Python integers (no overflow), for a shape of non-negative ints."""
    dims = (shape,) if isinstance(shape, int) else shape
    if not isinstance(dims, (tuple, list)) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise UnsafePickleError(f"array shape {shape!r} is not a tuple of sizes")
    return math.prod(dims) * dtype.itemsize


def _np_dtype(spec, align=False, copy=False):
    dtype = np.dtype(spec, align, copy)
    if dtype.hasobject:
        raise UnsafePickleError("object dtypes are not accepted")
    return dtype


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError("object scalars are not accepted")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _storage_from_bytes(data: bytes):
    """torch.storage._load_from_bytes, but through the weights-only loader."""
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, *extra):
    return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False,
                                           collections.OrderedDict())


def _rebuild_parameter(data, requires_grad=False, hooks=None, *extra):
    if not isinstance(data, torch.Tensor):
        raise UnsafePickleError("parameter without tensor data")
    return data


def _reconstructor(cls, base, state):
    if cls not in (TFNetwork, ProGANNetwork, ModuleState, EasyDict, Namespace) \
            or base is not object:
        raise UnsafePickleError(f"copyreg._reconstructor for {cls!r} is not accepted")
    return cls.__new__(cls)


def _allowed_globals() -> dict[tuple[str, str], object]:
    allowed = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "object"): object,
        ("copyreg", "_reconstructor"): _reconstructor,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _np_dtype,
        ("dnnlib.tflib.network", "Network"): TFNetwork,
        ("tfutil", "Network"): ProGANNetwork,
        ("dnnlib.util", "EasyDict"): EasyDict,
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
        ("argparse", "Namespace"): Namespace,
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = _np_reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = _np_scalar
    for dtype in ("float16", "float32", "float64", "bfloat16", "int64", "int32", "uint8",
                  "bool"):
        allowed[("torch", dtype)] = getattr(torch, dtype)
    return allowed


ALLOWED = _allowed_globals()
MODULE_PREFIXES = ("torch.nn.modules.",)


class RestrictedUnpickler(pickle.Unpickler):
    # A torch storage may not declare more bytes than this (the size of the file holding it:
    # torch stores storages uncompressed). None: no cap.
    max_storage_bytes: int | None = None

    @property
    def persistent_load(self):
        return pickle.Unpickler.persistent_load.__get__(self)

    @persistent_load.setter
    def persistent_load(self, load):
        """torch.load installs its storage loader here; it is wrapped by the size cap."""
        def capped(pid):
            self._check_storage(pid)
            return load(pid)

        pickle.Unpickler.persistent_load.__set__(self, capped)

    def _check_storage(self, pid) -> None:
        """torch's storage ids are ('storage', type, key, location, numel, ...): at least one
        byte per element must be in the file."""
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            return
        numel = pid[4]
        if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
            raise UnsafePickleError(f"storage {pid[2]!r}: size {numel!r} is not a count")
        if self.max_storage_bytes is not None and numel > self.max_storage_bytes:
            raise UnsafePickleError(f"storage {pid[2]!r} declares {numel} elements, more than "
                                    f"the file's {self.max_storage_bytes} bytes")

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        if module.startswith(MODULE_PREFIXES) and name[:1].isupper():
            return ModuleState
        raise UnsafePickleError(f"refusing to load global {module}.{name}: not in the "
                                "allow-list of checkpoint classes")


def _restricted_pickle_module(max_storage_bytes: int | None):
    """What torch.load's `pickle_module` needs: Unpickler plus the module-level names, with
    storages capped at `max_storage_bytes`."""
    unpickler = type("CappedRestrictedUnpickler", (RestrictedUnpickler,),
                     {"max_storage_bytes": max_storage_bytes})
    return type("RestrictedPickleModule", (), {
        "Unpickler": unpickler, "__name__": "ffhq_tools_restricted_pickle",
        "load": staticmethod(lambda f, **kw: unpickler(f, **kw).load())})


def _remaining_bytes(f: BinaryIO) -> int | None:
    try:
        return os.fstat(f.fileno()).st_size - f.tell()
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    try:
        here = f.tell()
        end = f.seek(0, io.SEEK_END)
        f.seek(here)
        return end - here
    except (AttributeError, OSError):
        return None


def safe_load_pickle(path_or_file: str | Path | BinaryIO):
    """Unpickle with the allow-list; a torch zip file is read through torch.load with it."""
    if isinstance(path_or_file, (str, Path)):
        path = Path(path_or_file)
        if not path.is_file():
            raise FfhqToolsError(f"file not found: {path}")
        try:
            with open(path, "rb") as f:
                return safe_load_pickle(f)
        except UnsafePickleError as exc:
            raise UnsafePickleError(f"{path}: {exc}") from None
        except MemoryError:
            raise FfhqToolsError(f"{path}: not a readable checkpoint pickle (it declares an "
                                 f"object larger than the memory)") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                ImportError, IndexError, KeyError, RuntimeError, RecursionError,
                OverflowError) as exc:
            detail = " ".join(str(exc).split())[:300]
            raise FfhqToolsError(f"{path}: not a readable checkpoint pickle "
                                 f"({type(exc).__name__}: {detail})") from None
    f = path_or_file
    start = f.tell()
    pickle_module = _restricted_pickle_module(_remaining_bytes(f))
    if zipfile.is_zipfile(f):
        f.seek(start)
        return torch.load(f, map_location="cpu", weights_only=False,
                          pickle_module=pickle_module)
    f.seek(start)
    first = RestrictedUnpickler(f).load()
    if isinstance(first, int) and first == TORCH_LEGACY_MAGIC:  # torch.save before zip files
        f.seek(start)
        return torch.load(f, map_location="cpu", weights_only=False,
                          pickle_module=pickle_module)
    return first


TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

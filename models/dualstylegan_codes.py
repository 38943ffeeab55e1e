"""DualStyleGAN's code files and code samplers, read without running code carried in them.

Official files (williamyang1991/DualStyleGAN):
  - `exstyle_code.npy`, `refined_exstyle_code.npy`, `instyle_code.npy`: `np.save` of a dict
    {image file name: float32 array [1, num_ws, 512]} (z+ codes). Such a .npy is a pickle:
    `np.load(..., allow_pickle=True)` would run whatever code it carries. Here the .npy header
    is parsed by numpy's header reader and the pickle by a restricted unpickler that builds
    arrays, dicts, lists and strings only (any other global is refused before it runs);
  - `sampler.pt`: {"color": state dict, "structure": state dict} of the ICP samplers (an MLP
    128 -> 128 -> 128 -> layers * 512 with batch norm), read with the restricted unpickler.
Our formats: codes as `.npz` {"names": str [N], "codes": float32 [N, num_ws, dim],
"space": "z+" | "w+"} (read with allow_pickle=False); samplers as a weights-only torch file.

Every code carries its space (`CodeSpace`): z+ codes (one z per layer, the official files) go
through the base mapping network before use, w+ codes (what projection writes, e.g.
`project`'s projected_w.npz) are used as they are. A file that does not say (a plain .npy, an
.npz written without `space`) takes the space the caller names.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ffhq_tools.atomic import atomic_path
from ffhq_tools.errors import FfhqToolsError
from models.legacy import RestrictedUnpickler, UnsafePickleError, safe_load_pickle

NPY_MAGIC = b"\x93NUMPY"
SAMPLER_FORMAT = "ffhq-tools-dualstylegan-sampler"
SAMPLER_NOISE_DIM = 128
SAMPLER_PARTS = ("structure", "color")  # first layers (ModRes), the rest (colour)


class CodeFileError(FfhqToolsError):
    """A code or sampler file is missing, malformed or refused."""


class CodeSpace(str, Enum):
    """Where a latent code lives: z+ (mapped layer by layer before use) or w+ (used as is)."""

    Z_PLUS = "z+"
    W_PLUS = "w+"


def code_space(value: str, where: str) -> CodeSpace:
    try:
        return CodeSpace(value)
    except ValueError:
        raise CodeFileError(f"{where}: code space {value!r}; expected z+ or w+") from None


@dataclass(frozen=True)
class Code:
    """One named code [1, num_ws, dim] and its space."""

    name: str
    values: np.ndarray
    space: CodeSpace

    def to_dict(self) -> dict:
        return {"name": self.name, "space": self.space.value, "code": self.values.tolist()}


@dataclass
class CodeSet:
    """Named latent codes: names [N], codes float32 [N, num_ws, dim], all in one space."""

    names: list[str]
    codes: np.ndarray
    source: str
    space: CodeSpace = CodeSpace.Z_PLUS

    def index_of(self, name: str) -> int:
        if name not in self.names:
            raise CodeFileError(f"{self.source}: no code named {name!r}")
        return self.names.index(name)

    def code(self, i: int) -> Code:
        return Code(self.names[i], self.codes[i: i + 1], self.space)


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------
def _reconstruct_array(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"array subtype {subtype!r} is not accepted")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _dtype(spec, align=False, copy=False):
    return np.dtype(spec, align, copy)


class CodeDictUnpickler(RestrictedUnpickler):
    """The checkpoint allow-list, plus the one object array np.save wraps a dict in. Its
    items are built by this unpickler too, so they can only be allowed types."""

    def find_class(self, module: str, name: str):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") \
                and name == "_reconstruct":
            return _reconstruct_array
        if (module, name) == ("numpy", "dtype"):
            return _dtype
        return super().find_class(module, name)


def _pickled_npy(f, path: Path):
    """The dict inside an object .npy, or None for a plain numeric .npy."""
    version = np.lib.format.read_magic(f)
    header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
        else np.lib.format.read_array_header_2_0
    shape, _, dtype = header(f)
    if not dtype.hasobject:
        return None  # a plain array: np.load(allow_pickle=False) reads it
    if shape != ():
        raise CodeFileError(f"{path}: an object array of shape {shape}; expected the 0-d array "
                            "np.save makes of a dict")
    try:
        obj = CodeDictUnpickler(f).load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from None
    except Exception as exc:  # a malformed pickle: any unpickling failure
        raise CodeFileError(f"{path}: unreadable pickled code dict ({type(exc).__name__}: "
                            f"{exc})") from None
    if not isinstance(obj, np.ndarray) or obj.shape != ():
        raise CodeFileError(f"{path}: expected a 0-d array holding a dict")
    return obj.item()


def _as_code_set(mapping, path: Path) -> CodeSet:
    if not isinstance(mapping, dict) or not mapping:
        raise CodeFileError(f"{path}: expected a non-empty dict of file name -> code array")
    names, arrays = [], []
    for name, value in mapping.items():
        if not isinstance(name, str) or not isinstance(value, np.ndarray) \
                or value.dtype.kind != "f":
            raise CodeFileError(f"{path}: entry {name!r} is not a float array")
        arrays.append(value.reshape(-1, *value.shape[-2:]) if value.ndim == 3 else value)
        names.append(name)
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or len(arrays[0].shape) != 3 or arrays[0].shape[0] != 1:
        raise CodeFileError(f"{path}: codes must all be [1, num_ws, dim], got "
                            f"{sorted(shapes)[:3]}")
    return CodeSet(names, np.concatenate(arrays).astype(np.float32), str(path),
                   CodeSpace.Z_PLUS)


def _unstated(path: Path, default_space: CodeSpace | None) -> CodeSpace:
    if default_space is None:
        raise CodeFileError(f"{path}: the file does not say whether its codes are z+ or w+; "
                            "name the space (stylize: --wplus for w+ codes)")
    return default_space


def read_codes(path: str | Path, default_space: CodeSpace | None = None) -> CodeSet:
    """Codes from an official pickled-dict .npy (z+), our .npz (its `space`), a projection's
    projected_w.npz (key `w`: w+, named after its folder) or a plain [N, L, D] / [L, D] .npy
    (`default_space`); never runs pickled code."""
    path = Path(path)
    if not path.is_file():
        raise CodeFileError(f"code file not found: {path}")
    with open(path, "rb") as f:
        is_npy = f.read(len(NPY_MAGIC)) == NPY_MAGIC
        f.seek(0)
        if is_npy:
            mapping = _pickled_npy(f, path)
            if mapping is not None:
                return _as_code_set(mapping, path)
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise CodeFileError(f"{path}: not a readable .npy/.npz code file ({exc})") from None
    if isinstance(data, np.ndarray):
        codes = data[None] if data.ndim == 2 else data
        return _checked_plain(codes, [f"{path.stem}[{i}]" for i in range(len(codes))], path,
                              _unstated(path, default_space))
    with data:
        if "codes" not in data and "w" in data:
            w = data["w"]
            names = [path.parent.name] if len(w) == 1 else \
                [f"{path.parent.name}[{i}]" for i in range(len(w))]
            return _checked_plain(w, names, path, CodeSpace.W_PLUS)
        if "codes" not in data:
            raise CodeFileError(f"{path}: an .npz code file needs a 'codes' array (or 'w', "
                                "as projected_w.npz)")
        codes = data["codes"]
        names = [str(n) for n in data["names"]] if "names" in data else \
            [f"{path.stem}[{i}]" for i in range(len(codes))]
        space = code_space(str(data["space"]), str(path)) if "space" in data else \
            _unstated(path, default_space)
    return _checked_plain(codes, names, path, space)


def _checked_plain(codes: np.ndarray, names: list[str], path: Path,
                   space: CodeSpace) -> CodeSet:
    if codes.ndim != 3 or codes.dtype.kind != "f" or len(names) != len(codes):
        raise CodeFileError(f"{path}: codes must be float [N, num_ws, dim] with one name each, "
                            f"got {codes.dtype} {codes.shape}")
    return CodeSet(names, codes.astype(np.float32), str(path), space)


def write_codes(path: str | Path, codes: CodeSet) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, names=np.array(codes.names, dtype=str), codes=codes.codes,
                     space=np.array(codes.space.value))
    return path


def is_code_file(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    return head == NPY_MAGIC or (path.suffix == ".npz" and zipfile.is_zipfile(path))


# ------------------------------------------------------------------------------------------
# Samplers
# ------------------------------------------------------------------------------------------
class CodeSampler(nn.Module):
    """The official ICP sampling network (`_netT`): noise [N, 128] -> codes [N, out_dim]."""

    def __init__(self, out_dim: int, noise_dim: int = SAMPLER_NOISE_DIM, hidden: int = 128):
        super().__init__()
        self.noise_dim = noise_dim
        self.lin1 = nn.Linear(noise_dim, hidden, bias=False)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.lin2 = nn.Linear(hidden, hidden, bias=False)
        self.bn2 = nn.BatchNorm1d(hidden)
        self.lin_out = nn.Linear(hidden, out_dim, bias=False)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.lin1(noise)))
        x = torch.relu(self.bn2(self.lin2(x)))
        return self.lin_out(x)


def samplers_from_states(states: dict, where: str) -> dict[str, CodeSampler]:
    out = {}
    for part in SAMPLER_PARTS:
        state = states.get(part)
        if not isinstance(state, dict) or "lin_out.weight" not in state:
            raise CodeFileError(f"{where}: no {part!r} sampler state")
        sampler = CodeSampler(state["lin_out.weight"].shape[0],
                              state["lin1.weight"].shape[1] if "lin1.weight" in state else 0)
        try:
            sampler.load_state_dict(state)
        except RuntimeError as exc:
            raise CodeFileError(f"{where}: {part} sampler: {str(exc).splitlines()[0]}") from None
        out[part] = sampler.eval()
    return out


def is_official_sampler(obj) -> bool:
    return isinstance(obj, dict) and set(SAMPLER_PARTS) <= set(obj) and all(
        isinstance(obj[p], dict) for p in SAMPLER_PARTS)


def convert_sampler(src: Path, dst: Path, obj=None) -> dict[str, CodeSampler]:
    obj = safe_load_pickle(src) if obj is None else obj
    samplers = samplers_from_states(obj, str(src))
    payload = {"format": SAMPLER_FORMAT, "source": src.name,
               **{p: s.state_dict() for p, s in samplers.items()}}
    with atomic_path(dst) as tmp:
        torch.save(payload, tmp)
    return samplers


def load_samplers(path: str | Path) -> dict[str, CodeSampler]:
    """Our converted sampler file -> {"structure": CodeSampler, "color": CodeSampler}."""
    path = Path(path)
    if not path.is_file():
        raise CodeFileError(f"sampler file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a foreign file
        raise CodeFileError(f"{path}: not a converted sampler file ({type(exc).__name__}); "
                            f"convert sampler.pt first: ffhq-tools import-checkpoint "
                            f"{path.name} OUT.pt") from None
    if not isinstance(payload, dict) or payload.get("format") != SAMPLER_FORMAT:
        raise CodeFileError(f"{path}: not a converted DualStyleGAN sampler file")
    return samplers_from_states(payload, str(path))

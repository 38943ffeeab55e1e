"""Reading saved W codes: stylegan2-ada's `projected_w.npz` (key `w`, float32
[1 or N, num_ws, w_dim]), as `project` writes them, for `generate --projected-w`.

The file is read with `np.load(allow_pickle=False)`: an object array (which would need the
unpickler) is refused, as is any shape that does not fit the generator.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ffhq_tools.errors import FfhqToolsError
from ffhq_tools.hashing import sha256_file

KEY = "w"


class ProjectedWError(FfhqToolsError):
    """A projected-W file is missing, unreadable or does not fit the generator."""


@dataclass(frozen=True)
class ProjectedCodes:
    path: Path
    sha256: str
    w: np.ndarray  # float32 [N, num_ws, w_dim]


def _member_header(path: Path, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the `w` member, read from its header alone, so a file that declares
    more data than it holds (or an object array) is refused before anything is allocated."""
    with open(path, "rb") as f:
        if f.read(6) == b"\x93NUMPY":
            raise ProjectedWError(f"{where}: a bare .npy array; expected an .npz "
                                  f"archive with key '{KEY}' (as project writes "
                                  "projected_w.npz)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = {n[:-4]: n for n in archive.namelist() if n.endswith(".npy")}
            if KEY not in names:
                raise ProjectedWError(f"{where}: no key '{KEY}' (keys: "
                                      f"{', '.join(sorted(names)) or 'none'})")
            info = archive.getinfo(names[KEY])
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(member)
                header_bytes = member.tell()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ProjectedWError(f"{where}: not a readable .npz archive "
                              f"({type(exc).__name__}: {exc})") from None
    if dtype.hasobject:
        raise ProjectedWError(f"{where}: '{KEY}' is an object array, which "
                              "would need unpickling (refused)")
    declared = header_bytes + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if info.file_size < declared:
        raise ProjectedWError(f"{where}: '{KEY}' declares shape {list(shape)} "
                              f"but holds only {info.file_size} bytes")
    return tuple(shape), dtype


def _read_array(path: Path, where: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return archive[KEY]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ProjectedWError(f"{where}: '{KEY}' is unreadable "
                              f"({type(exc).__name__}: {exc})") from None


def load_projected_w(path: str | Path, num_ws: int | None = None, w_dim: int | None = None, *,
                     flag: str = "--projected-w") -> ProjectedCodes:
    """Codes [N, num_ws, w_dim] float32 from one file, read without unpickling and with its
    header checked before any data. A given num_ws / w_dim must match; errors start with
    `flag PATH`."""
    path = Path(path)
    where = f"{flag} {path}" if flag else str(path)
    if not path.is_file():
        raise ProjectedWError(f"{where}: no such file")
    shape, dtype = _member_header(path, where)
    if dtype.kind != "f":
        raise ProjectedWError(f"{where}: '{KEY}' has dtype {dtype}; expected float32")
    fits = len(shape) == 3 and shape[0] >= 1 and all(
        want is None or have == want for have, want in zip(shape[1:], (num_ws, w_dim), strict=True))
    if not fits:
        raise ProjectedWError(f"{where}: '{KEY}' has shape {list(shape)}; this generator needs "
                              f"[1 or N, {num_ws or 'num_ws'}, {w_dim or 'w_dim'}]")
    w = _read_array(path, where)
    if not np.isfinite(w).all():
        raise ProjectedWError(f"{where}: '{KEY}' holds NaN or infinite values")
    return ProjectedCodes(path=path, sha256=sha256_file(path), w=w.astype(np.float32))


def stack_codes(files: list[ProjectedCodes]) -> torch.Tensor:
    """All codes of the files, in order, as one tensor [sum N, num_ws, w_dim]."""
    return torch.from_numpy(np.concatenate([f.w for f in files]))


def check_generator_has_w(G) -> None:
    if getattr(G, "use_styles", True) is False:
        raise ProjectedWError("--projected-w needs a style-based generator with a W space; "
                              "this one has a traditional input (ProGAN / traditional configs)")

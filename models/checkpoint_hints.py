"""What a path given where a checkpoint belongs actually is, and where it goes instead.

A dataset, an image folder or a stylegan2-ada zip handed to `generate`, `metrics --network`,
`project --network` ... is named as what it is, with the flag that takes it; converting it with
`import-checkpoint` is never suggested, since only official network pickles can be imported.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from ffhq_tools.images import list_images

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
HDF5_USER_BLOCKS = (512, 1024, 2048)  # HDF5 superblocks may follow a user block
CHECKPOINT_IS = ("a checkpoint is a .pt written by train (official .pkl networks: "
                 "ffhq-tools import-checkpoint NETWORK.pkl OUT.pt)")
AS_DATA = "use it as --data (train, metrics) or as an input of fid"


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as f:
        if f.read(8) == HDF5_SIGNATURE:
            return True
        for offset in HDF5_USER_BLOCKS:
            f.seek(offset)
            if f.read(8) == HDF5_SIGNATURE:
                return True
    return False


def describe_non_checkpoint(path: Path) -> str | None:
    """A one-line explanation when `path` is plainly not a checkpoint (None: let the loader
    decide)."""
    path = Path(path)
    if path.is_dir():
        return _describe_folder(path)
    if not path.is_file():
        return None
    if _is_hdf5(path):
        return f"{path}: this is an HDF5 dataset, not a checkpoint; {AS_DATA}; {CHECKPOINT_IS}"
    with open(path, "rb") as f:
        start = f.read(8)
    if start.startswith(b"\x89PNG") or start.startswith(b"\xff\xd8\xff"):
        return f"{path}: this is an image, not a checkpoint; {CHECKPOINT_IS}"
    if zipfile.is_zipfile(path):
        return _describe_zip(path)
    return None


def _pack_command(path: Path) -> str:
    return f"ffhq-tools pack {path} {path.with_suffix('').name or 'data'}.h5"


def _describe_folder(path: Path) -> str:
    images = list_images(path)
    if not images:
        return f"{path}: this is a folder, not a checkpoint; {CHECKPOINT_IS}"
    return (f"{path}: this is a folder of {len(images)} images, not a checkpoint; images are "
            f"data: pack them ({_pack_command(path)}) and {AS_DATA}")


def _describe_zip(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if any(name.endswith("data.pkl") for name in names):
        return None  # a torch.save archive: the checkpoint loader decides
    if any(name.endswith(".npy") for name in names):
        return (f"{path}: this is a NumPy .npz archive (projected codes?), not a checkpoint; "
                "pass it with --projected-w FILE and give the checkpoint as CKPT")
    return (f"{path}: this is a zip archive (a stylegan2-ada dataset?), not a checkpoint; "
            f"pack it ({_pack_command(path)}) and {AS_DATA}")


def require_checkpoint_file(path: str | Path, flag: str) -> Path:
    """`path` as a Path when it is a file that may be a checkpoint; else an error that says what
    it is (prefixed with `flag`, e.g. "--network")."""
    from models.checkpoint import CheckpointError

    path = Path(path)
    described = describe_non_checkpoint(path)
    if described:
        raise CheckpointError(f"{flag} {described}")
    if not path.is_file():
        raise CheckpointError(f"{flag} {path}: no such file")
    return path

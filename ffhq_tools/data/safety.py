"""What an HDF5 file may make the reader do: read only its own bytes (and, for a `pack --merge`
file, its shard files beside it), and only as much as it really stores.

`check_file` walks every link of an open file without following any and refuses:
- soft and external links (an external link reads any HDF5 file on the machine; soft links
  can loop), and hard-link loops are not walked twice;
- datasets with external raw storage (`external=[("/etc/passwd", 0, n)]` reads any file);
- filters other than deflate, shuffle, fletcher32 and lzf (others load plugins);
- virtual datasets, unless they are the `pack --merge` layout: consecutive row blocks, each
  the whole of one dataset of the same name in a shard file named by a relative path inside
  the merged file's folder, present, and itself a plain file that passes these checks (a missing
  shard would read as black images);
- declared shapes the file does not store: a contiguous dataset must hold every byte it
  declares, a chunked one every chunk (so a 250 KB file cannot declare 10^9 images), and a
  chunk may not exceed MAX_CHUNK_BYTES.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ffhq_tools.data.layout import DatasetError

ALLOWED_FILTERS = {1: "deflate", 2: "shuffle", 3: "fletcher32", 32000: "lzf"}
MAX_CHUNK_BYTES = 256 * 2**20


def check_file(f, path: str | Path, virtual_allowed: bool = True) -> None:
    """Raise DatasetError naming `path` and the object unless the open file is safe to read."""
    import h5py

    path = Path(path)
    shards_checked: set[Path] = set()
    links: list[tuple[str, object]] = []
    f.visit_links(lambda name: links.append((name, f.get(name, getlink=True))))
    for name, link in links:
        if isinstance(link, h5py.ExternalLink):
            raise DatasetError(f"{path}: /{name} is an external link to {link.filename}:"
                               f"{link.path}; refusing to read other files through a dataset")
        if isinstance(link, h5py.SoftLink):
            raise DatasetError(f"{path}: /{name} is a soft link to {link.path}; packed datasets "
                               "hold no links (refusing link loops and redirections)")
    for name, _ in links:
        item = f.get(name)
        if isinstance(item, h5py.Dataset):
            check_dataset(item, path, virtual_allowed, shards_checked)


def check_dataset(dataset, path: Path, virtual_allowed: bool = True,
                  shards_checked: set[Path] | None = None) -> None:
    """One dataset (see the module docstring); shards in `shards_checked` are not walked
    again (their datasets' shapes still are)."""
    import h5py

    where = f"{path}: dataset {dataset.name}"
    dcpl = dataset.id.get_create_plist()
    if dcpl.get_external_count():
        target = dcpl.get_external(0)[0].decode(errors="replace")
        raise DatasetError(f"{where} keeps its data in an external file ({target}); refusing "
                           "to read other files through a dataset")
    for index in range(dcpl.get_nfilters()):
        code = dcpl.get_filter(index)[0]
        if code not in ALLOWED_FILTERS:
            raise DatasetError(f"{where}: compression filter {code} is not one of "
                               f"{', '.join(ALLOWED_FILTERS.values())}")
    layout = dcpl.get_layout()
    if layout == h5py.h5d.VIRTUAL:
        if not virtual_allowed:
            raise DatasetError(f"{where} is a virtual dataset inside a shard file; only the "
                               "file written by pack --merge may be virtual")
        check_merged_sources(dataset, path, set() if shards_checked is None else shards_checked)
    elif layout == h5py.h5d.CHUNKED:
        _check_chunks(dataset, where)
    elif layout == h5py.h5d.CONTIGUOUS:
        declared = math.prod(dataset.shape) * dataset.id.get_type().get_size()
        stored = dataset.id.get_storage_size()
        if stored < declared:
            raise DatasetError(f"{where} declares shape {dataset.shape} ({declared} bytes) but "
                               f"the file stores {stored} bytes of it")


def _check_chunks(dataset, where: str) -> None:
    chunk_bytes = math.prod(dataset.chunks) * dataset.id.get_type().get_size()
    if chunk_bytes > MAX_CHUNK_BYTES:
        raise DatasetError(f"{where}: chunks of {dataset.chunks} ({chunk_bytes} bytes) exceed "
                           f"{MAX_CHUNK_BYTES} bytes")
    expected = math.prod(math.ceil(n / c) for n, c in zip(dataset.shape, dataset.chunks,
                                                          strict=True))
    stored = dataset.id.get_num_chunks()
    if stored < expected:
        raise DatasetError(f"{where} declares shape {dataset.shape} ({expected} chunks) but the "
                           f"file stores {stored} chunks of it")


def check_merged_sources(dataset, path: Path, shards_checked: set[Path]) -> None:
    """The `pack --merge` layout: row blocks [0, n1), [n1, n2), ... each a whole shard dataset."""
    where = f"{path}: virtual dataset {dataset.name}"
    dcpl = dataset.id.get_create_plist()
    folder = path.resolve().parent
    row = 0
    for index in range(dcpl.get_virtual_count()):
        shard_name = dcpl.get_virtual_filename(index)
        source_name = dcpl.get_virtual_dsetname(index)
        start, stop = dcpl.get_virtual_vspace(index).get_select_bounds()
        rows = stop[0] - start[0] + 1
        full = tuple(s - 1 for s in dataset.shape[1:])
        if start[0] != row or tuple(start[1:]) != (0,) * len(full) or tuple(stop[1:]) != full:
            raise DatasetError(f"{where}: source {index} maps rows {start[0]}..{stop[0]}, not "
                               f"the next block of whole rows from {row} (not a pack --merge "
                               "layout)")
        shard = shard_path(shard_name, folder, where)
        _check_shard_dataset(shard, source_name, (rows,) + dataset.shape[1:], dataset.name,
                             where, shards_checked)
        row += rows
    if row != dataset.shape[0]:
        raise DatasetError(f"{where} declares {dataset.shape[0]} rows but its shards hold {row}")


def shard_path(name: str, folder: Path, where: str) -> Path:
    """A shard named by a merged file: relative, inside the merged file's folder, present."""
    if name == "." or "%" in name or os.path.isabs(name) or "\x00" in name:
        raise DatasetError(f"{where}: source file {name!r} is not a relative shard path (a "
                           "pack --merge file names its shards relative to its folder)")
    shard = (folder / name).resolve()
    if not shard.is_relative_to(folder):
        raise DatasetError(f"{where}: source file {name!r} resolves to {shard}, outside the "
                           f"merged file's folder {folder}")
    if not shard.is_file():
        raise DatasetError(f"{where}: shard file {folder / name} is missing (its images would "
                           "read as black); put the shards back beside the merged file")
    return shard


def _check_shard_dataset(shard: Path, name: str, shape: tuple, own_name: str, where: str,
                         shards_checked: set[Path]) -> None:
    import h5py

    if name.lstrip("/") != own_name.lstrip("/"):
        raise DatasetError(f"{where}: maps {shard}:{name}, not the shard's own {own_name}")
    try:
        with h5py.File(shard, "r") as f:
            if shard not in shards_checked:
                check_file(f, shard, virtual_allowed=False)
                shards_checked.add(shard)
            source = f.get(name)
            if not isinstance(source, h5py.Dataset) or source.shape != shape:
                found = getattr(source, "shape", "nothing")
                raise DatasetError(f"{where}: shard {shard} holds {found} at {name}, expected "
                                   f"a dataset of shape {shape}")
    except OSError as exc:
        raise DatasetError(f"{where}: shard {shard} is not a readable HDF5 file ({exc})") from exc

"""`pack`: images -> one multi-resolution HDF5 file (layout in `ffhq_tools.data.layout`).

Crash-safe and resumable: pixels go to `.<OUT>.partial` beside OUT, flushed every FLUSH_EVERY
images together with the count of finished images; per-image metadata goes to a JSON-lines
sidecar (fsynced appends) and enters the file only at the end, because HDF5's variable-length
heap does not survive a kill. A rerun with the same inputs and options continues from the last
flush (or starts over, saying so, if the partial file is damaged); only a complete file, with
its checksums, is renamed to OUT.
`--shard i/n` packs the i-th contiguous block of images; `merge_shards` joins shard files into
one file of HDF5 virtual datasets (no copy of the pixels).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ffhq_tools import __version__
from ffhq_tools.atomic import DamagedJsonlError, append_jsonl, read_jsonl
from ffhq_tools.data.disk import disk_full_as_error, require_room
from ffhq_tools.data.layout import (
    FORMAT,
    FORMAT_VERSION,
    DatasetError,
    checksummed,
    compression_args,
    dataset_sha256,
    level_name,
    levels_of,
    open_dataset,
    pyramid,
    read_metadata,
    resolutions_for,
)
from ffhq_tools.data.sources import PackItem, discover
from ffhq_tools.data.tables import attribute_rows, check_names, match_table, read_table
from ffhq_tools.hashing import pixel_md5
from ffhq_tools.images import DEFAULT_MAX_PIXELS, ImageRejected

FLUSH_EVERY = 16
CHUNK_OVERHEAD = 1024  # chunk index, object headers and the flushes' metadata, per image
STRING_OVERHEAD = 64  # an HDF5 variable-length string: heap object header and padding
RESERVE_BYTES = 2**16


@dataclass(frozen=True)
class PackOptions:
    min_res: int = 4
    compression: str = "none"
    max_pixels: int = DEFAULT_MAX_PIXELS

    def to_dict(self) -> dict:
        return {"min_res": self.min_res, "compression": self.compression}


def partial_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial")


def sidecar_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial.meta.jsonl")


def lock_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.lock")


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on OUT (flock of `.OUT.lock` beside it) while writing it, so two
    runs never write one partial file; the second one fails at once."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(out), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DatasetError(f"{out}: another pack is writing it (it holds {lock_path(out)}); "
                           "wait for it to finish or choose another OUT") from None
    try:
        yield
    finally:
        os.close(fd)


def shard_block(count: int, shard: tuple[int, int]) -> slice:
    index, total = shard
    return slice(count * index // total, count * (index + 1) // total)


def _first_image(items: list[PackItem], options: PackOptions) -> np.ndarray:
    if not items:
        raise DatasetError("pack: no images found in SRC")
    try:
        return items[0].load(options.max_pixels)
    except ImageRejected as exc:
        raise DatasetError(f"pack: {exc}") from exc


def _create(path: Path, items, first: np.ndarray, options: PackOptions, labels, attributes,
            identity: dict):
    import h5py

    height, width, channels = first.shape
    if height != width:
        raise DatasetError(f"{items[0].name}: {width}x{height} is not square")
    resolutions = resolutions_for(width, options.min_res)
    f = h5py.File(path, "w")
    for r in resolutions:
        f.create_dataset(level_name(r), shape=(len(items), channels, r, r), dtype=np.uint8,
                         maxshape=(None, channels, r, r), chunks=(1, channels, r, r),
                         **compression_args(options.compression))
    if labels is not None:
        f.create_dataset("labels", data=labels.astype(np.float32))
    if attributes is not None:
        f.create_dataset("attributes", data=attributes.astype(np.int8))
    f.attrs.update(format=FORMAT, format_version=FORMAT_VERSION, tool_version=__version__,
                   resolution=width, channels=channels, count=len(items), written=0,
                   identity=json.dumps(identity, sort_keys=True),
                   options=json.dumps(options.to_dict(), sort_keys=True))
    f.flush()
    return f


def _open_partial(path: Path, identity: dict):
    """The unfinished file of an earlier run, if it belongs to the same job (else None)."""
    import h5py

    if not path.exists():
        return None
    try:
        f = h5py.File(path, "a")
    except OSError:
        _start_over(path, "is unreadable")
        return None
    if json.loads(f.attrs.get("identity", "{}")) == identity:
        return f
    written = int(f.attrs.get("written", 0))
    f.close()
    if written == 0:
        print(f"pack: {path} was started on other inputs or options and holds no finished "
              "image; starting over", file=sys.stderr)
        _discard(path)
        return None
    raise DatasetError(f"{path} is an unfinished pack of other inputs or options with {written} "
                       f"finished images; to start over, delete {path} (and "
                       f"{sidecar_path(_out_of(path))}), or rerun with the SRC and options it "
                       "was started with to finish it")


def _out_of(partial: Path) -> Path:
    return partial.with_name(partial.name[1:-len(".partial")])


def _discard(partial: Path) -> None:
    partial.unlink(missing_ok=True)
    sidecar_path(_out_of(partial)).unlink(missing_ok=True)


def _start_over(path: Path, why: str) -> None:
    print(f"pack: {path} {why} (killed mid-write?); starting over", file=sys.stderr)
    _discard(path)


def _write_image(f, index: int, item: PackItem, options: PackOptions, resolutions,
                 shape) -> dict:
    try:
        pixels = item.load(options.max_pixels)
    except ImageRejected as exc:
        raise DatasetError(f"pack: {exc} (remove it from SRC or realign)") from exc
    if pixels.shape != shape:
        raise DatasetError(f"{item.name}: {pixels.shape[1]}x{pixels.shape[0]}x{pixels.shape[2]}"
                           f", expected {shape[1]}x{shape[0]}x{shape[2]} like the first image")
    for r, level in pyramid(np.ascontiguousarray(pixels.transpose(2, 0, 1)), resolutions).items():
        f[level_name(r)][index] = level
    return dict(item.metadata, name=item.name, pixel_md5=pixel_md5(pixels))


def _store_metadata(f, metadata: list[dict]) -> None:
    import h5py

    f.create_dataset("metadata", data=[json.dumps(m, sort_keys=True) for m in metadata],
                     dtype=h5py.string_dtype())


def _finalize(f) -> None:
    for name in checksummed(f):
        f.attrs[f"sha256_{name}"] = dataset_sha256(f[name])
    f.attrs["complete"] = True


def pack(src: str | Path, out: str | Path, options: PackOptions | None = None, *,
         labels_file: Path | None = None, attributes_file: Path | None = None,
         shard: tuple[int, int] = (0, 1), progress: bool = True,
         on_image: Callable[[int], None] | None = None) -> dict:
    """Pack SRC into OUT (.h5). Returns the summary of `ffhq_tools.data.info.dataset_info`."""
    from ffhq_tools.data.info import dataset_info

    options = options or PackOptions()
    compression_args(options.compression)
    out = Path(out)
    items, sg2_labels = discover(src)
    every_name = [item.name for item in items]
    items = items[shard_block(len(items), shard)]
    labels = None
    if labels_file is not None:
        table = read_table(labels_file, "--labels")
        check_names(every_name, table, f"--labels {labels_file}")
        labels = match_table(items, table, f"--labels {labels_file}")
    elif sg2_labels is not None:
        check_names(every_name, sg2_labels, f"{src} dataset.json")
        labels = match_table(items, sg2_labels, f"{src} dataset.json")
    attributes = attribute_rows(items, attributes_file) if attributes_file else None
    identity = {"src": str(Path(src).resolve()), "names": len(items), "shard": list(shard),
                "first": items[0].name if items else None, "options": options.to_dict(),
                "labels": None if labels is None else labels.shape[1],
                "attributes": attributes is not None}
    first = _first_image(items, options)
    with output_lock(out):
        resuming = partial_path(out).exists()
        try:
            _pack_into_partial(out, items, first, options, labels, attributes, identity,
                               progress, on_image)
        except OSError as exc:  # h5py's errors are OSErrors: a partial file damaged by a kill
            if not resuming:
                raise
            _start_over(partial_path(out), f"could not be resumed ({exc})")
            _pack_into_partial(out, items, first, options, labels, attributes, identity,
                               progress, on_image)
        os.replace(partial_path(out), out)
        sidecar_path(out).unlink(missing_ok=True)
    return dataset_info(out)


def _pack_into_partial(out, items, first, options, labels, attributes, identity, progress,
                       on_image) -> None:
    from tqdm import tqdm

    partial, sidecar = partial_path(out), sidecar_path(out)
    with disk_full_as_error(partial):
        f = _open_partial(partial, identity)
        if f is None:
            sidecar.unlink(missing_ok=True)
            table_bytes = sum(t.size * 4 for t in (labels, attributes) if t is not None)
            require_room(partial, table_bytes + RESERVE_BYTES, "a new file")
            f = _create(partial, items, first, options, labels, attributes, identity)
        try:
            metadata, resolutions = _resume_metadata(f, sidecar), levels_of(f)
            start = len(metadata)
            for index in tqdm(range(start, len(items)), desc="pack", unit="img", initial=start,
                              total=len(items), disable=not progress):
                if index % FLUSH_EVERY == 0 or index == start:
                    _require_block_room(f, partial, sidecar, index, len(items))
                metadata.append(_write_image(f, index, items[index], options, resolutions,
                                             first.shape))
                append_jsonl(sidecar, metadata[-1])
                if (index + 1) % FLUSH_EVERY == 0 or index + 1 == len(items):
                    f.flush()
                    f.attrs["written"] = index + 1
                    f.flush()
                if on_image is not None:
                    on_image(index + 1)
            require_room(partial, sidecar.stat().st_size + STRING_OVERHEAD * len(metadata)
                         + RESERVE_BYTES, "the metadata")
            _store_metadata(f, metadata)
            _finalize(f)
        finally:
            f.close()


def _resume_metadata(f, sidecar: Path) -> list[dict]:
    """The metadata of the images finished by an earlier run (the sidecar cut to match)."""
    start = int(f.attrs["written"])
    try:
        metadata = read_jsonl(sidecar)[:start]
    except DamagedJsonlError as exc:  # the caller starts over
        raise OSError(f"{sidecar} has a damaged line ({exc})") from None
    if len(metadata) != start:
        raise OSError(f"{sidecar} holds {len(metadata)} of {start} metadata lines")
    with open(sidecar, "w") as handle:  # drop lines past the last flush
        handle.writelines(json.dumps(m, sort_keys=True) + "\n" for m in metadata)
    return metadata


def _require_block_room(f, partial: Path, sidecar: Path, index: int, total: int) -> None:
    """Room for the next FLUSH_EVERY images and, projected, the metadata written at the end:
    HDF5 must never meet a full disk (see ffhq_tools.data.disk)."""
    per_image = sum(f[level_name(r)].shape[1] * r * r for r in levels_of(f)) + CHUNK_OVERHEAD
    block = min(FLUSH_EVERY - index % FLUSH_EVERY, total - index) * per_image
    per_line = sidecar.stat().st_size / index if index else 1024
    metadata = int((per_line + STRING_OVERHEAD) * total)
    require_room(partial, block + metadata + RESERVE_BYTES,
                 f"the images from {index}")


def _check_shard_place(shard: Path, out: Path) -> None:
    folder = out.resolve().parent
    if shard.is_file() and not shard.resolve().is_relative_to(folder):
        raise DatasetError(f"pack --merge: shard {shard} is outside {folder}, the folder of "
                           f"{out.name}; a merged file reads only shards in its own folder tree")


def _virtual_layout(name: str, shards, counts: list[int], shape: tuple, dtype, out: Path):
    """Rows of every shard's `name`, in order, by paths relative to OUT's folder."""
    import h5py

    layout = h5py.VirtualLayout(shape=(sum(counts),) + shape, dtype=dtype)
    offset = 0
    for path, count in zip(shards, counts, strict=True):
        relative = os.path.relpath(Path(path).resolve(), out.resolve().parent)
        layout[offset:offset + count] = h5py.VirtualSource(relative, name,
                                                           shape=(count,) + shape)
        offset += count
    return layout


def merge_shards(shards: list[str | Path], out: str | Path) -> dict:
    """One file whose datasets are HDF5 virtual datasets over the shard files, in order.

    Shard paths are stored relative to OUT's folder, so keep them together when moving."""
    import h5py

    from ffhq_tools.data.info import dataset_info

    out = Path(out)
    if len(shards) < 1:
        raise DatasetError("pack --merge: give the shard files, then OUT.h5")
    names, shapes, dtypes, counts, metadata, attrs = [], {}, {}, [], [], {}
    for path in shards:  # read what we need, then close: HDF5 reopens them for the VDS
        _check_shard_place(Path(path), out)
        with open_dataset(path) as f:
            if not f.attrs.get("complete"):
                raise DatasetError(f"{path}: not a complete pack (rerun its pack first)")
            if any(f[name].is_virtual for name in f if isinstance(f[name], h5py.Dataset)):
                raise DatasetError(f"{path}: a merged file, not a shard (merge the shards)")
            if not names:
                names = [level_name(r) for r in levels_of(f)] + \
                    [n for n in ("labels", "attributes") if n in f]
                shapes = {n: f[n].shape[1:] for n in names}
                dtypes = {n: f[n].dtype for n in names}
                attrs = {k: f.attrs[k] for k in ("format", "format_version", "resolution",
                                                 "channels", "options")}
            for name in names:
                if name not in f or f[name].shape[1:] != shapes[name]:
                    raise DatasetError(f"{path}: dataset {name} differs from {shards[0]}")
            counts.append(int(f[names[0]].shape[0]))
            metadata += read_metadata(f)
    with output_lock(out), disk_full_as_error(partial_path(out)):
        partial = partial_path(out)
        text_bytes = sum(len(json.dumps(m)) + STRING_OVERHEAD for m in metadata)
        require_room(partial, text_bytes + RESERVE_BYTES, "the merged file")
        with h5py.File(partial, "w") as merged:
            for name in names:
                merged.create_virtual_dataset(name, _virtual_layout(
                    name, shards, counts, shapes[name], dtypes[name], out))
            _store_metadata(merged, metadata)
            merged.attrs.update(attrs)
            merged.attrs.update(tool_version=__version__, count=sum(counts), written=sum(counts),
                                merged_from=json.dumps([str(s) for s in shards]))
            _finalize(merged)
        os.replace(partial, out)
    return dataset_info(out)

"""Streaming feature statistics in float64 and the cache of real-data statistics.

`FeatureStats` keeps the count, the sum and X^T X in float64, so memory does not depend on
the number of images; both covariance normalisations come out of the same numbers
("unbiased": N - 1 as pytorch-fid / TF StyleGAN / torch-fidelity, "biased": N as
stylegan2-ada). Features themselves are kept (float32, `FeatureBuffer`) only when a metric
needs them (KID, IS, precision/recall); `moments=False` keeps only those rows (no sums: class
probabilities and VGG16 features never need a covariance).
Statistics files are `.npz` with `mu` and `sigma` (pytorch-fid's `--save-stats` layout) plus
`num`, `sum`, `gram` and the metadata when we wrote them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from eval import defaults
from ffhq_tools.atomic import atomic_path
from ffhq_tools.errors import FfhqToolsError


class StatsError(FfhqToolsError):
    """A statistics file or feature batch that cannot be used."""


class FeatureBuffer:
    """Captured feature rows kept as float32 in preallocated blocks (~32 MiB each).

    Appending copies a batch into the current block, never what is already stored. `array()`
    assembles one (N, dim) array and releases each block as soon as it is copied, so the peak
    is the features plus one block; afterwards the buffer holds just that array (no copy on
    later calls). `parts()` gives the rows block by block for streaming writes.
    """

    BLOCK_BYTES = 32 << 20

    def __init__(self, dim: int):
        self.dim = dim
        self.block_rows = max(1, self.BLOCK_BYTES // (4 * dim))
        self.blocks: list[np.ndarray] = []
        self.rows = 0
        self._free = 0  # unused rows at the end of the last block

    def __len__(self) -> int:
        return self.rows

    @classmethod
    def from_parts(cls, dim: int, parts) -> FeatureBuffer:
        """A full buffer made of existing (n, dim) arrays, kept as they are when float32."""
        buffer = cls(dim)
        buffer.blocks = [np.ascontiguousarray(part, np.float32) for part in parts if len(part)]
        buffer.rows = sum(len(block) for block in buffer.blocks)
        return buffer

    def append(self, rows: np.ndarray) -> None:
        start = 0
        while start < len(rows):
            if self._free == 0:
                self.blocks.append(np.empty((self.block_rows, self.dim), np.float32))
                self._free = self.block_rows
            block = self.blocks[-1]
            filled = len(block) - self._free
            take = min(self._free, len(rows) - start)
            block[filled:filled + take] = rows[start:start + take]
            self._free -= take
            start += take
        self.rows += len(rows)

    def parts(self):
        """The stored rows, block by block (views, no copies)."""
        for index, block in enumerate(self.blocks):
            last = index == len(self.blocks) - 1
            yield block[:len(block) - self._free] if last else block

    def array(self) -> np.ndarray:
        if not self.blocks:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(self.blocks) == 1:
            return self.blocks[0][:self.rows]
        out = np.empty((self.rows, self.dim), np.float32)
        pending, self.blocks = list(self.parts())[::-1], []
        at = 0
        while pending:
            part = pending.pop()
            out[at:at + len(part)] = part
            at += len(part)
            del part  # the block's memory goes back before the next one is copied
        self.blocks, self._free = [out], 0
        return out


class FeatureStats:
    def __init__(self, dim: int, capture: bool = False, device="cpu", label: str = "features",
                 moments: bool = True):
        if not (capture or moments):
            raise ValueError("FeatureStats keeps nothing without capture or moments")
        self.dim, self.capture, self.moments, self.label = dim, capture, moments, label
        self.num = 0
        size = dim if moments else 0
        self.sum = torch.zeros(size, dtype=torch.float64, device=device)
        self.gram = torch.zeros(size, size, dtype=torch.float64, device=device)
        self.captured = FeatureBuffer(dim)

    def update(self, features: torch.Tensor) -> None:
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise StatsError(f"{self.label}: expected (N, {self.dim}) features, "
                             f"got {tuple(features.shape)}")
        if not torch.isfinite(features).all():
            raise StatsError(f"{self.label}: the feature network produced NaN or infinity "
                             f"(after {self.num} images)")
        self.num += features.shape[0]
        if self.moments:
            x = features.to(self.sum.device, torch.float64)
            self.sum += x.sum(0)
            self.gram += x.t() @ x
        if self.capture:
            self.captured.append(features.detach().float().cpu().numpy())

    def all_reduce(self, rows_per_batch: int | None = None) -> None:
        """Sum the statistics (and gather captured features) over torch.distributed ranks.

        With `rows_per_batch`, the gathered features come out in the order one process would
        have captured them: rank r holds global batches r, r + world, ... of that many rows
        (only the very last batch may be shorter), so subset draws (KID) and splits (IS) match
        a single-process run. Without it they stay in rank order.
        """
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        num = torch.tensor([self.num], dtype=torch.float64, device=self.sum.device)
        for tensor in (num, self.sum, self.gram) if self.moments else (num,):
            torch.distributed.all_reduce(tensor)
        self.num = int(num.item())
        if self.capture:
            self.captured = FeatureBuffer.from_parts(
                self.dim, gather_blocks(list(self.captured.parts()), rows_per_batch))

    def features(self) -> np.ndarray:
        if not self.capture:
            raise StatsError(f"{self.label}: features were not captured")
        return self.captured.array()

    def mean(self) -> np.ndarray:
        self._need(1)
        self._need_moments()
        return (self.sum / self.num).cpu().numpy()

    def covariance(self, kind: str = defaults.DEFAULT_COVARIANCE) -> np.ndarray:
        self._need(2)
        self._need_moments()
        if kind not in defaults.COVARIANCES:
            raise StatsError(f"--covariance {kind}: expected {' or '.join(defaults.COVARIANCES)}")
        mean = self.sum / self.num
        scatter = self.gram - self.num * torch.outer(mean, mean)
        divisor = self.num - 1 if kind == defaults.COVARIANCE_UNBIASED else self.num
        return (scatter / divisor).cpu().numpy()

    def _need(self, count: int) -> None:
        if self.num < count:
            raise StatsError(f"{self.label}: need at least {count} images for statistics, "
                             f"got {self.num}")

    def _need_moments(self) -> None:
        if not self.moments:
            raise StatsError(f"{self.label}: only the features were kept, no mean or covariance")

    # ---- files ----
    def save(self, path: str | Path, covariance: str, meta: dict | None = None) -> Path:
        """Atomic `.npz`: mu, sigma (pytorch-fid compatible), num, sum, gram, meta, features
        (streamed block by block: saving never assembles a second copy of them); without
        moments just num, meta and features."""
        arrays = {"num": np.int64(self.num),
                  "meta": np.array(json.dumps({**(meta or {}), "covariance": covariance}))}
        if self.moments:
            arrays.update({"mu": self.mean(), "sigma": self.covariance(covariance),
                           "sum": self.sum.cpu().numpy(), "gram": self.gram.cpu().numpy()})
        path = Path(path)
        with atomic_path(path, suffix=".npz") as tmp:
            _write_npz(tmp, arrays, self.captured if self.capture else None)
        return path

    @classmethod
    def load(cls, path: str | Path, label: str | None = None, device="cpu") -> FeatureStats:
        """Read a file written by `save` (num with sum/gram, features or both); sums go to
        `device`."""
        data = _read_npz(path)
        moments = {"sum", "gram"} <= set(data)
        if "num" not in data or not (moments or "features" in data):
            raise StatsError(f"{path}: holds only mean/covariance, not streamable statistics")
        dim = int(data["sum"].shape[0] if moments else data["features"].shape[1])
        stats = cls(dim, capture="features" in data, label=label or str(path), moments=moments)
        stats.num = int(data["num"])
        if moments:
            stats.sum = torch.from_numpy(data["sum"].astype(np.float64)).to(device)
            stats.gram = torch.from_numpy(data["gram"].astype(np.float64)).to(device)
        if "features" in data:
            stats.captured = FeatureBuffer.from_parts(stats.dim, [data.pop("features")])
        return stats


def _write_npz(path: Path, arrays: dict[str, np.ndarray], features: FeatureBuffer | None):
    """What np.savez writes (stored zip of .npy members), with `features` streamed by block."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
        if features is None:
            return
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                  "fortran_order": False, "shape": (len(features), features.dim)}
        with archive.open("features.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, header)
            for part in features.parts():
                member.write(memoryview(np.ascontiguousarray(part)).cast("B"))


def _batches_of(blocks: list[np.ndarray], rows_per_batch: int):
    """One rank's rows, cut into consecutive batches of `rows_per_batch` (lists of views)."""
    pieces, missing = [], rows_per_batch
    for block in blocks:
        at = 0
        while at < len(block):
            take = min(missing, len(block) - at)
            pieces.append(block[at:at + take])
            at, missing = at + take, missing - take
            if missing == 0:
                yield pieces
                pieces, missing = [], rows_per_batch
    if pieces:
        yield pieces


def global_batch_order(per_rank: list[list[np.ndarray]], rows_per_batch: int) -> list:
    """Views of every rank's blocks in global batch order (round robin over ranks), no copy."""
    ranks = [_batches_of(blocks, rows_per_batch) for blocks in per_rank]
    ordered: list[np.ndarray] = []
    while ranks:
        for rank in list(ranks):
            batch = next(rank, None)
            if batch is None:
                ranks.remove(rank)
            else:
                ordered.extend(batch)
    return ordered


def gather_blocks(blocks: list[np.ndarray], rows_per_batch: int | None = None) -> list:
    """Every torch.distributed rank's row blocks: in one-process order with `rows_per_batch`
    (rank r holds global batches r, r + world, ... of that many rows, only the very last one
    shorter), else in rank order; `blocks` as they are without torch.distributed."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return blocks
    gathered: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, blocks)
    if rows_per_batch:
        return global_batch_order(gathered, rows_per_batch)
    return [block for rank_blocks in gathered for block in rank_blocks]


def _read_npz(path: str | Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise StatsError(f"{path}: not a readable .npz statistics file ({exc})") from exc


def load_gaussian(path: str | Path, covariance: str = defaults.DEFAULT_COVARIANCE):
    """(mu, sigma, meta) from any statistics `.npz` (ours or pytorch-fid's --save-stats)."""
    data = _read_npz(path)
    meta = json.loads(str(data["meta"])) if "meta" in data else {}
    if {"num", "sum", "gram"} <= set(data):
        stats = FeatureStats.load(path)
        return stats.mean(), stats.covariance(covariance), {**meta, "num": stats.num,
                                                             "covariance": covariance}
    if not {"mu", "sigma"} <= set(data):
        raise StatsError(f"{path}: expected arrays 'mu' and 'sigma' (found: "
                         f"{', '.join(data) or 'none'})")
    meta.setdefault("covariance", "as stored")
    return data["mu"].astype(np.float64), data["sigma"].astype(np.float64), meta


# ---- cache ---------------------------------------------------------------------------------

def _sample_bytes(path: Path, size: int, chunk: int = 1 << 20) -> bytes:
    with open(path, "rb") as f:
        head = f.read(chunk)
        if size > 2 * chunk:
            f.seek(size - chunk)
        return head + f.read(chunk)


def fingerprint(data: str | Path) -> str:
    """A SHA-256 over a dataset's content: every file's relative name, size and modification
    time, plus the first and last MiB of an HDF5 file (hashing 90 GB of PNGs per cache lookup
    would defeat the cache; any rewrite changes size or mtime)."""
    from ffhq_tools.images import list_images

    path = Path(data)
    digest = hashlib.sha256()
    if path.is_dir():
        for file in list_images(path):
            st = file.stat()
            digest.update(f"{file.relative_to(path).as_posix()}\0{st.st_size}\0"
                          f"{st.st_mtime_ns}\n".encode())
    else:
        st = path.stat()
        digest.update(f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        digest.update(_sample_bytes(path, st.st_size))
    return digest.hexdigest()


def cache_key(fields: dict) -> str:
    """SHA-256 of every option that affects the statistics (canonical JSON)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def default_cache_dir() -> Path:
    from ffhq_tools.weights import cache_dir

    return cache_dir() / "stats"


def cache_path(folder: str | Path | None, fields: dict) -> Path:
    return Path(folder or default_cache_dir()) / f"{cache_key(fields)}.npz"

"""Training-style reading: random-order batches of 32 at 256px with 2 DataLoader workers, from
`H5Dataset` (packed file, each compression) and from decoding the same PNGs of a folder, in
this process; prints images/s and the ratio. Images: 256px crops of real photo content."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from ffhq_tools.data import H5Dataset, PackOptions, pack
from ffhq_tools.images import list_images

COUNT = 512
BATCH = 32
WORKERS = 2


class PngFolder:
    """The baseline: decode each PNG on every access (what a folder dataset does)."""

    def __init__(self, folder: Path):
        self.paths = list_images(folder)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        import torch

        with Image.open(self.paths[index]) as image:
            pixels = np.asarray(image.convert("RGB"))
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def make_images(folder: Path) -> None:
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for i in range(COUNT):
        photo = Image.fromarray(photos[i % len(photos)])
        side = int(min(photo.size) * rng.uniform(0.5, 1.0))
        left = rng.randint(0, photo.size[0] - side + 1)
        top = rng.randint(0, photo.size[1] - side + 1)
        crop = photo.crop((left, top, left + side, top + side)).resize((256, 256), Image.LANCZOS)
        crop.save(folder / f"{i:05d}.png")


def images_per_second(dataset) -> float:
    import torch

    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True,
                                         num_workers=WORKERS, persistent_workers=True,
                                         generator=torch.Generator().manual_seed(0))
    for _ in loader:  # warm-up epoch: worker start, file open, page cache
        pass
    start = time.perf_counter()
    count = sum(len(batch) for batch in loader)
    return count / (time.perf_counter() - start)


def main() -> None:
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".bench-reader-") as tmp:
        folder = Path(tmp) / "png"
        make_images(folder)
        png_rate = images_per_second(PngFolder(folder))
        print(f"PNG folder (decode per access): {png_rate:.0f} img/s", flush=True)
        for compression in ("none", "lzf", "gzip-4"):
            h5 = Path(tmp) / f"{compression}.h5"
            pack(folder, h5, PackOptions(min_res=256, compression=compression), progress=False)
            rate = images_per_second(H5Dataset(h5, 256))
            size = h5.stat().st_size / 2**20
            print(f"H5Dataset {compression:6s} ({size:5.1f} MiB): {rate:.0f} img/s -> "
                  f"{rate / png_rate:.1f}x the PNG folder", flush=True)


if __name__ == "__main__":
    main()

"""What a path handed to a verb that wants an HDF5 dataset actually is, and how to make one."""

from __future__ import annotations

import zipfile
from pathlib import Path

from ffhq_tools.images import list_images


def not_a_dataset_hint(path: Path) -> str | None:
    """A hint for an image folder or a stylegan2-ada zip given where a .h5 dataset belongs."""
    command = f"pack it first: ffhq-tools pack {path} {path.with_suffix('').name or 'data'}.h5"
    if path.is_dir():
        images = list_images(path)
        if not images:
            return f"{path} is a folder without images (nothing to pack)"
        return f"{path} is a folder of {len(images)} images, not an HDF5 dataset; {command}"
    if path.is_file() and zipfile.is_zipfile(path):
        return f"{path} is a zip archive (a stylegan2-ada dataset?), not an HDF5 dataset; {command}"
    return None

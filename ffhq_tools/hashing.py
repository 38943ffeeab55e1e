"""Content hashes used for provenance: file SHA-256 / MD5 and FFHQ's pixel MD5."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

CHUNK = 1 << 20


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str | Path) -> str:
    return file_digest(path, "sha256")


def md5_file(path: str | Path) -> str:
    return file_digest(path, "md5")


def pixel_md5(pixels: np.ndarray) -> str:
    """MD5 of the raw decoded pixel bytes (HWC uint8, C-order), as FFHQ defines `pixel_md5`."""
    return hashlib.md5(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def sha256_matches(actual: str, expected: str) -> bool:
    """Full hashes must be equal; a hub-style prefix (8+ hex digits) must be a prefix."""
    actual, expected = actual.lower(), expected.lower()
    return actual == expected if len(expected) == 64 else actual.startswith(expected)

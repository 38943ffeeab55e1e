"""`ffhq-tools doctor`: versions, devices, cache and the state of every registered network."""

from __future__ import annotations

import importlib.metadata
import platform
import sys

from ffhq_tools import __version__, weights

PACKAGES = ("torch", "torchvision", "numpy", "scipy", "h5py", "pillow", "lpips", "dlib-bin",
            "face_recognition_models", "face-alignment", "scikit-learn", "pandas")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def device_lines() -> list[str]:
    import torch

    lines = [f"cpu: {torch.get_num_threads()} threads"]
    lines.append(f"cuda build: {torch.version.cuda or 'none'}; "
                 f"available: {torch.cuda.is_available()}")
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        props = torch.cuda.get_device_properties(i)
        lines.append(f"cuda:{i}: {props.name}, {props.total_memory / 2**30:.1f} GiB")
    return lines


def report() -> str:
    lines = [f"ffhq-tools {__version__}",
             f"python {sys.version.split()[0]} ({platform.platform()})"]
    lines += [f"{name} {version}" for name, version in package_versions().items()]
    lines += device_lines()
    lines.append(f"cache dir: {weights.cache_dir()}")
    lines.append("weights:")
    for name, entry in weights.REGISTRY.items():
        lines.append(f"  {name:26s} {weights.status(name):17s} {entry.filename}")
    return "\n".join(lines)


def _doctor(args) -> int:
    print(report())
    return 0


def add_verbs(verbs) -> None:
    parser = verbs.add_parser("doctor", help="show versions, devices, cache and weights status")
    parser.set_defaults(func=_doctor)

"""The weights registry: every network file the suite can use, its cache and its verification.

An entry names a file, the public URLs it can be fetched from, its SHA-256 (a full hash, a
hub-style prefix, or None when unknown: the hash is then recorded on first import/fetch and
checked from then on) and the loader kind that reads it. Files live in one cache folder:
`$FFHQ_TOOLS_CACHE`, else `$XDG_CACHE_HOME/ffhq-tools`, else `~/.cache/ffhq-tools`.
Nothing is ever substituted silently: a missing file is an error that says how to get it.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from ffhq_tools.atomic import write_json_atomic
from ffhq_tools.download import DownloadError, download
from ffhq_tools.errors import HashMismatchError, WeightsError
from ffhq_tools.hashing import sha256_file, sha256_matches

CELEBAHQ_ATTRIBUTES = (
    "male", "smiling", "attractive", "wavy-hair", "young", "5-o-clock-shadow",
    "arched-eyebrows", "bags-under-eyes", "bald", "bangs", "big-lips", "big-nose", "black-hair",
    "blond-hair", "blurry", "brown-hair", "bushy-eyebrows", "chubby", "double-chin", "eyeglasses",
    "goatee", "gray-hair", "heavy-makeup", "high-cheekbones", "mouth-slightly-open", "mustache",
    "narrow-eyes", "no-beard", "oval-face", "pale-skin", "pointy-nose", "receding-hairline",
    "rosy-cheeks", "sideburns", "straight-hair", "wearing-earrings", "wearing-hat",
    "wearing-lipstick", "wearing-necklace", "wearing-necktie",
)

NVIDIA_METRICS = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics"
NVIDIA_STYLEGAN_METRICS = "https://nvlabs-fi-cdn.nvidia.com/stylegan/networks/metrics"
FAN_DOWNLOADS = "https://www.adrianbulat.com/downloads/python-fan"
# The published files' SHA-256, as pinned by public code that downloads them: k-diffusion's
# evaluation (inception-2015-12-05.pt, 95,607,719 bytes) and genforce's perceptual model
# (vgg16.pt). Any other file under these names is refused by `weights import` / `fetch`;
# custom weights go through `--weights NAME=PATH`, recorded with their own hash.
INCEPTION_TS_SHA256 = "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"
VGG16_TS_SHA256 = "b437eb095feaeb0b83eb3fa11200ebca4548ee39a07fb944a417ddc516cc07c3"
DINOV2_DOWNLOADS = "https://dl.fbaipublicfiles.com/dinov2"
OPEN_CLIP_VIT_B_32_OPENAI = ("https://huggingface.co/timm/vit_base_patch32_clip_224.openai/"
                             "resolve/main/open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class WeightsEntry:
    name: str
    filename: str
    urls: tuple[str, ...]
    sha256: str | None
    loader: str
    description: str
    package: str | None = None  # resolved from this installed package instead of the cache
    package_path: str | None = None  # relative path inside that package
    manual: str | None = None  # no stable URL: where a user gets the file by hand


def _classifier_entries() -> list[WeightsEntry]:
    entries = []
    for index, attribute in enumerate(CELEBAHQ_ATTRIBUTES):
        filename = f"celebahq-classifier-{index:02d}-{attribute}.pkl"
        entries.append(WeightsEntry(
            name=f"celebahq-classifier-{index:02d}",
            filename=filename,
            urls=(f"{NVIDIA_STYLEGAN_METRICS}/{filename}",),
            sha256=None,
            loader="tf-pickle",
            description=f"StyleGAN CelebA-HQ attribute classifier '{attribute}' (TF pickle)",
        ))
    return entries


def _dinov2_entries() -> list[WeightsEntry]:
    """facebookresearch/dinov2 LVD-142M backbones (no published SHA-256: recorded on import)."""
    sizes = (("s", "ViT-S/14, 384-d"), ("b", "ViT-B/14, 768-d"), ("l", "ViT-L/14, 1024-d"),
             ("g", "ViT-g/14, 1536-d"))
    return [WeightsEntry(
        name=f"dinov2-vit-{size}-14",
        filename=f"dinov2_vit{size}14_pretrain.pth",
        urls=(f"{DINOV2_DOWNLOADS}/dinov2_vit{size}14/dinov2_vit{size}14_pretrain.pth",),
        sha256=None,
        loader="state-dict",
        description=f"DINOv2 {label} image encoder (facebookresearch/dinov2 state dict)",
    ) for size, label in sizes]


REGISTRY: dict[str, WeightsEntry] = {e.name: e for e in [
    WeightsEntry(
        "inception-fid", "pt_inception-2015-12-05-6726825d.pth",
        ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
         "pt_inception-2015-12-05-6726825d.pth",),
        "6726825d", "state-dict",
        "FID Inception-v3 (TF graph 2015-12-05) as pytorch-fid's state dict",
    ),
    WeightsEntry(
        "inception-ts", "inception-2015-12-05.pt",
        (f"{NVIDIA_METRICS}/inception-2015-12-05.pt",),
        INCEPTION_TS_SHA256, "torchscript-data",
        "FID Inception-v3 as NVIDIA's TorchScript module (stylegan2-ada, clean-fid); "
        "its tensors are read as data, its code never runs",
    ),
    WeightsEntry(
        "vgg16", "vgg16-397923af.pth",
        ("https://download.pytorch.org/models/vgg16-397923af.pth",),
        "397923af", "state-dict",
        "torchvision VGG16 (ImageNet): LPIPS backbone and precision/recall features",
    ),
    WeightsEntry(
        "vgg19", "vgg19-dcbb9e9d.pth",
        ("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",),
        "dcbb9e9d", "state-dict",
        "torchvision VGG19 (ImageNet): DualStyleGAN's training losses (perceptual, style, "
        "contextual)",
    ),
    WeightsEntry(
        "vgg16-ts", "vgg16.pt",
        (f"{NVIDIA_METRICS}/vgg16.pt",),
        VGG16_TS_SHA256, "torchscript-data",
        "NVIDIA VGG16 TorchScript (LPIPS distance and 4096-d precision/recall features); "
        "its tensors are read as data, its code never runs",
    ),
    *_classifier_entries(),
    *_dinov2_entries(),
    WeightsEntry(
        "clip-vit-b-32", "clip-vit-b-32-openai.bin", (OPEN_CLIP_VIT_B_32_OPENAI,),
        None, "state-dict",
        "OpenAI CLIP ViT-B/32 (open_clip's state dict of OpenAI's weights; image encoder)",
    ),
    WeightsEntry(
        "dlib-landmarks-68", "shape_predictor_68_face_landmarks.dat", (),
        "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f", "dlib",
        "dlib 68-point iBUG landmark predictor", "face_recognition_models",
        "models/shape_predictor_68_face_landmarks.dat",
    ),
    WeightsEntry(
        "dlib-face-resnet", "dlib_face_recognition_resnet_model_v1.dat", (),
        "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30", "dlib",
        "dlib ResNet face descriptor (128-d)", "face_recognition_models",
        "models/dlib_face_recognition_resnet_model_v1.dat",
    ),
    WeightsEntry(
        "dlib-mmod", "mmod_human_face_detector.dat", (),
        "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6", "dlib",
        "dlib MMOD CNN face detector", "face_recognition_models",
        "models/mmod_human_face_detector.dat",
    ),
    WeightsEntry(
        "lpips-vgg-lin", "vgg.pth", (),
        "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868", "state-dict",
        "LPIPS v0.1 linear layers for VGG, shipped inside the lpips package", "lpips",
        "weights/v0.1/vgg.pth",
    ),
    WeightsEntry(
        "arcface-ir-se50", "model_ir_se50.pth", (), None, "state-dict",
        "ArcFace IR-SE50 face recognition (pSp's identity-loss network, TreB1eN's "
        "InsightFace_Pytorch weights)",
        manual="the 'IR-SE50 Model' link (Google Drive) in the Pretrained Models table of "
               "the pSp README, github.com/eladrich/pixel2style2pixel",
    ),
    WeightsEntry(
        "fan-2d", "2DFAN4-11f355bf06.pth.tar",
        (f"{FAN_DOWNLOADS}/2DFAN4-11f355bf06.pth.tar",),
        "11f355bf06", "state-dict",
        "face-alignment 2D-FAN-4 landmark network (face-alignment 1.5 checkpoint)",
    ),
    WeightsEntry(
        "s3fd", "s3fd-619a316812.pth",
        (f"{FAN_DOWNLOADS}/s3fd-619a316812.pth",),
        "619a316812", "state-dict",
        "face-alignment S3FD face detector",
    ),
]}


def cache_dir() -> Path:
    if os.environ.get("FFHQ_TOOLS_CACHE"):
        return Path(os.environ["FFHQ_TOOLS_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "ffhq-tools"
    return Path.home() / ".cache" / "ffhq-tools"


def get_entry(name: str) -> WeightsEntry:
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, REGISTRY, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise WeightsError(f"unknown weights entry '{name}'.{hint} See `ffhq-tools weights list`.")
    return REGISTRY[name]


def _package_folder(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def expected_path(name: str) -> Path:
    entry = get_entry(name)
    if entry.package:
        folder = _package_folder(entry.package)
        if folder is None:
            raise WeightsError(
                f"weights '{name}' ship with the Python package '{entry.package}', which is not "
                f"installed: pip install {entry.package}")
        return folder / entry.package_path
    return cache_dir() / entry.filename


def _recorded_hashes_file() -> Path:
    return cache_dir() / "recorded-sha256.json"


def recorded_hashes() -> dict[str, str]:
    path = _recorded_hashes_file()
    return json.loads(path.read_text()) if path.exists() else {}


def _record_hash(name: str, sha256: str) -> None:
    hashes = recorded_hashes()
    hashes[name] = sha256
    write_json_atomic(_recorded_hashes_file(), hashes)


def expected_sha256(name: str) -> str | None:
    """The registry's hash, else the hash recorded when the file was first imported."""
    return get_entry(name).sha256 or recorded_hashes().get(name)


def custom_weights(used: dict[str, str]) -> dict[str, str]:
    """{name: why} for every file in `used` ({name: sha256}) that is not the registry's
    published file: 'custom weights' when the hash differs, 'unpinned' when none is published."""
    out = {}
    for name, digest in used.items():
        published = get_entry(name).sha256 if name in REGISTRY else None
        if published is None:
            out[name] = "unpinned (no published SHA-256)"
        elif not sha256_matches(digest, published):
            out[name] = f"custom weights (sha256 {digest[:12]}..., registry {published[:12]}...)"
    return out


def import_command(name: str) -> str:
    return f"ffhq-tools weights import {name} /path/to/{get_entry(name).filename}"


def missing_message(name: str) -> str:
    entry = get_entry(name)
    where = expected_path(name)
    lines = [f"weights '{name}' ({entry.description}) are not available: {where} does not exist."]
    if entry.urls:
        lines.append(f"Fetch it (needs internet): ffhq-tools weights fetch {name}")
        lines.append(f"or download {entry.urls[0]} elsewhere and run: {import_command(name)}")
    if entry.manual:
        lines.append(f"Get {entry.filename} from {entry.manual}, then run: "
                     f"{import_command(name)}")
    lines.append(f"or pass a file explicitly: --weights {name}=PATH")
    return "\n".join(lines)


class _VerifiedStamp:
    """A record in the cache folder so an unchanged file is not re-hashed on every use.

    Stamps are keyed by the file's absolute path and stored under `<cache>/stamps/`, never
    beside the file (packaged weights live in site-packages, which we do not write to).
    """

    @staticmethod
    def path(target: Path) -> Path:
        key = hashlib.sha1(str(target.resolve()).encode()).hexdigest()
        return cache_dir() / "stamps" / f"{key}.json"

    @classmethod
    def load(cls, target: Path) -> str | None:
        stamp = cls.path(target)
        if not stamp.exists():
            return None
        data = json.loads(stamp.read_text())
        st = target.stat()
        if data.get("size") == st.st_size and data.get("mtime_ns") == st.st_mtime_ns:
            return data.get("sha256")
        return None

    @classmethod
    def save(cls, target: Path, sha256: str) -> None:
        st = target.stat()
        try:
            write_json_atomic(cls.path(target), {"path": str(target.resolve()), "sha256": sha256,
                                                 "size": st.st_size, "mtime_ns": st.st_mtime_ns})
        except OSError:
            pass  # a read-only cache only costs a re-hash next time


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, reusing a stamp written next to it when the file is unchanged."""
    cached = _VerifiedStamp.load(path)
    if cached:
        return cached
    digest = sha256_file(path)
    _VerifiedStamp.save(path, digest)
    return digest


@dataclass(frozen=True)
class ResolvedWeights:
    name: str
    path: Path
    sha256: str
    source: str  # "cache", "package" or "explicit"

    def provenance(self) -> dict[str, str]:
        return {"name": self.name, "sha256": self.sha256, "source": self.source}


def _check(name: str, path: Path, digest: str) -> None:
    expected = expected_sha256(name)
    if expected and not sha256_matches(digest, expected):
        raise HashMismatchError(
            f"{path}: SHA-256 {digest} does not match the expected {expected} for weights "
            f"'{name}'. Delete the file and fetch or import it again.")


def resolve(name: str, overrides: dict[str, Path] | None = None) -> ResolvedWeights:
    """Locate and verify the file for `name`; an explicit override is used as given."""
    get_entry(name)
    if overrides and name in overrides:
        path = Path(overrides[name])
        if not path.is_file():
            raise WeightsError(f"--weights {name}={path}: no such file")
        return ResolvedWeights(name, path, sha256_file(path), "explicit")
    path = expected_path(name)
    if not path.is_file():
        raise WeightsError(missing_message(name))
    digest = file_sha256(path)
    _check(name, path, digest)
    return ResolvedWeights(name, path, digest, "package" if get_entry(name).package else "cache")


def is_available(name: str, overrides: dict[str, Path] | None = None) -> bool:
    if overrides and name in overrides:  # used as given: present is enough, no need to hash it
        return name in REGISTRY and Path(overrides[name]).is_file()
    try:
        resolve(name, overrides)
    except WeightsError:
        return False
    return True


@contextlib.contextmanager
def _cache_temp(name: str):
    """A temp file in the cache folder, removed unless it was moved into place."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{get_entry(name).filename}.", suffix=".part", dir=folder)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _store(name: str, verified_temp: Path, digest: str) -> Path:
    """Check `digest` (recording it when no hash is known) and rename the temp file into place."""
    _check(name, verified_temp, digest)
    if expected_sha256(name) is None:
        warnings.warn(f"weights '{name}' have no published SHA-256; recording {digest} "
                      "and verifying against it from now on", stacklevel=3)
        _record_hash(name, digest)
    target = cache_dir() / get_entry(name).filename
    os.replace(verified_temp, target)
    _VerifiedStamp.save(target, digest)
    return target


def _reject_packaged(name: str, verb: str) -> None:
    entry = get_entry(name)
    if entry.package:
        raise WeightsError(f"weights '{name}' come from the installed package '{entry.package}' "
                           f"and cannot be {verb}; pass another file with --weights {name}=PATH")


def import_file(name: str, source: str | Path) -> Path:
    """Copy a user-provided file into the cache after verifying its hash."""
    _reject_packaged(name, "imported")
    source = Path(source)
    if not source.is_file():
        raise WeightsError(f"weights import {name}: no such file {source}")
    digest, expected = sha256_file(source), expected_sha256(name)
    if expected and not sha256_matches(digest, expected):
        raise HashMismatchError(
            f"weights import {name}: {source} has SHA-256 {digest}, not the expected "
            f"{expected}; it is not the file '{name}' names. To use other weights, pass "
            f"--weights {name}=PATH (the file's own SHA-256 is recorded with every result).")
    with _cache_temp(name) as tmp:
        shutil.copyfile(source, tmp)
        return _store(name, tmp, sha256_file(tmp))


def fetch(name: str, retries: int = 4, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download `name` from its URLs into the cache (temp file, hash check, atomic rename)."""
    _reject_packaged(name, "fetched")
    entry = get_entry(name)
    if entry.manual:
        raise WeightsError(f"weights '{name}' have no download URL: get {entry.filename} "
                           f"from {entry.manual}, then run: {import_command(name)}")
    errors = []
    for url in entry.urls:
        with _cache_temp(name) as tmp:
            try:
                digest = download(url, tmp, retries=retries, timeout=timeout, progress=progress)
            except DownloadError as exc:
                errors.append(str(exc))
                continue
            return _store(name, tmp, digest)
    raise WeightsError(f"could not fetch weights '{name}':\n  " + "\n  ".join(errors)
                       + f"\nOffline? Download the file elsewhere and run: {import_command(name)}")


def parse_overrides(specs: list[str] | None) -> dict[str, Path]:
    """Parse repeated `--weights NAME=PATH` flags."""
    overrides: dict[str, Path] = {}
    for spec in specs or []:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise WeightsError(f"--weights {spec!r}: expected NAME=PATH")
        get_entry(name)
        if not Path(path).is_file():
            raise WeightsError(f"--weights {name}={path}: no such file")
        overrides[name] = Path(path)
    return overrides


def status(name: str) -> str:
    """One word for `doctor` and `weights list`: verified, mismatch, missing or unavailable."""
    try:
        path = expected_path(name)
    except WeightsError:
        return "unavailable"
    if not path.is_file():
        return "missing"
    try:
        resolve(name)
    except HashMismatchError:
        return "MISMATCH"
    return "verified" if expected_sha256(name) else "cached (no hash)"

"""The weights registry: cache hits, verification, downloads over loopback and offline errors."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import threading
import warnings

import pytest

from ffhq_tools import weights
from ffhq_tools.errors import HashMismatchError, WeightsError


@pytest.fixture
def served_file(tmp_path):
    """A loopback HTTP server serving one file; yields (url, payload, request_count)."""
    payload = b"fake network weights " * 1000
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/weights.bin", payload, hits
    server.shutdown()
    server.server_close()


def _point_entry(monkeypatch, name, urls, sha256):
    entry = dataclasses.replace(weights.REGISTRY[name], urls=tuple(urls), sha256=sha256)
    monkeypatch.setitem(weights.REGISTRY, name, entry)


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("FFHQ_TOOLS_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("FFHQ_TOOLS_CACHE")
    assert weights.cache_dir() == tmp_path / "xdg" / "ffhq-tools"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights.cache_dir() == tmp_path / "home" / ".cache" / "ffhq-tools"


def test_registry_has_every_documented_entry():
    expected = {"inception-fid", "inception-ts", "vgg16", "vgg16-ts", "dlib-landmarks-68",
                "dlib-face-resnet", "fan-2d", "s3fd"}
    expected |= {f"celebahq-classifier-{i:02d}" for i in range(40)}
    assert expected <= set(weights.REGISTRY)
    for entry in weights.REGISTRY.values():
        assert entry.package or entry.manual or (
            all(u.startswith("https://") for u in entry.urls) and entry.urls)


def test_missing_weights_error_names_entry_path_and_import_command():
    with pytest.raises(WeightsError) as info:
        weights.resolve("inception-fid")
    message = str(info.value)
    assert "inception-fid" in message
    assert str(weights.cache_dir() / "pt_inception-2015-12-05-6726825d.pth") in message
    assert "ffhq-tools weights import inception-fid" in message


def test_unknown_entry_suggests_close_names():
    with pytest.raises(WeightsError, match="inception-fid"):
        weights.get_entry("inception-fd")


def test_import_with_wrong_hash_is_refused(tmp_path):
    bogus = tmp_path / "pt_inception.pth"
    bogus.write_bytes(b"not the inception weights")
    refusal = r"pt_inception.pth has SHA-256 .* not the expected .* --weights inception-fid=PATH"
    with pytest.raises(HashMismatchError, match=refusal):
        weights.import_file("inception-fid", bogus)
    assert not (weights.cache_dir() / "pt_inception-2015-12-05-6726825d.pth").exists()
    assert not list(weights.cache_dir().glob("*.part"))


def test_import_unknown_hash_records_it_then_cache_hit(tmp_path, monkeypatch):
    source = tmp_path / "inception.pt"
    source.write_bytes(b"torchscript bytes")
    with pytest.warns(UserWarning, match="recording"):
        stored = weights.import_file("celebahq-classifier-00", source)
    digest = hashlib.sha256(b"torchscript bytes").hexdigest()
    assert weights.recorded_hashes()["celebahq-classifier-00"] == digest
    resolved = weights.resolve("celebahq-classifier-00")
    assert (resolved.path, resolved.sha256, resolved.source) == (stored, digest, "cache")
    # A cache hit reuses the verification stamp instead of re-hashing the file.
    monkeypatch.setattr(weights, "sha256_file", lambda path: pytest.fail("re-hashed"))
    assert weights.resolve("celebahq-classifier-00").sha256 == digest


def test_tampered_cached_file_is_detected(tmp_path):
    source = tmp_path / "inception.pt"
    source.write_bytes(b"original")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stored = weights.import_file("celebahq-classifier-00", source)
    stored.write_bytes(b"tampered!")
    with pytest.raises(HashMismatchError):
        weights.resolve("celebahq-classifier-00")
    assert weights.status("celebahq-classifier-00") == "MISMATCH"


def test_fetch_over_loopback_verifies_and_stores(monkeypatch, served_file):
    url, payload, hits = served_file
    _point_entry(monkeypatch, "vgg16-ts", [url], hashlib.sha256(payload).hexdigest())
    path = weights.fetch("vgg16-ts", retries=0, progress=False)
    assert path.read_bytes() == payload
    assert weights.resolve("vgg16-ts").source == "cache"
    assert len(hits) == 1


def test_fetch_hash_mismatch_deletes_download(monkeypatch, served_file):
    url, _, _ = served_file
    _point_entry(monkeypatch, "vgg16-ts", [url], "0" * 64)
    with pytest.raises(HashMismatchError, match="does not match"):
        weights.fetch("vgg16-ts", retries=0, progress=False)
    assert not (weights.cache_dir() / "vgg16.pt").exists()
    assert not list(weights.cache_dir().glob(".*part"))


def test_fetch_offline_error_says_how_to_import(monkeypatch):
    _point_entry(monkeypatch, "vgg16-ts", ["http://127.0.0.1:9/vgg16.pt"], None)
    with pytest.raises(WeightsError) as info:
        weights.fetch("vgg16-ts", retries=1, timeout=2, progress=False)
    assert "ffhq-tools weights import vgg16-ts" in str(info.value)
    assert not list(weights.cache_dir().glob(".*part"))


def test_fetch_refuses_non_http_schemes(monkeypatch, tmp_path):
    _point_entry(monkeypatch, "vgg16-ts", [f"file://{tmp_path}/x"], None)
    with pytest.raises(WeightsError, match="only http and https"):
        weights.fetch("vgg16-ts", retries=0, progress=False)


def test_explicit_override_is_used_as_given_and_hashed(tmp_path):
    custom = tmp_path / "my-inception.pth"
    custom.write_bytes(b"custom test network")
    overrides = weights.parse_overrides([f"inception-fid={custom}"])
    resolved = weights.resolve("inception-fid", overrides)
    assert resolved.source == "explicit"
    assert resolved.sha256 == hashlib.sha256(b"custom test network").hexdigest()
    assert resolved.provenance()["sha256"] == resolved.sha256


@pytest.mark.parametrize("spec, match", [
    ("inception-fid", "NAME=PATH"),
    ("no-such-net=/x", "unknown weights entry"),
    ("inception-fid=/definitely/missing.pth", "no such file"),
])
def test_bad_override_flags(spec, match):
    with pytest.raises(WeightsError, match=match):
        weights.parse_overrides([spec])


def test_packaged_dlib_models_resolve_and_verify():
    resolved = weights.resolve("dlib-landmarks-68")
    assert resolved.source == "package"
    assert resolved.path.name == "shape_predictor_68_face_landmarks.dat"
    with pytest.raises(WeightsError, match="installed package"):
        weights.import_file("dlib-landmarks-68", resolved.path)

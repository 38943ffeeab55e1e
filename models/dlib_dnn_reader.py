"""A data-only reader of dlib's DNN files (`serialize(net, out)`), as dlib's `dnn/core.h`,
`dnn/layers.h`, `dnn/input.h`, `dnn/loss.h` and `serialize.h` lay them out. Nothing in the
file is executed; every size is checked against the bytes that are left.

Primitives:
- integers: one byte holding the byte count (bit 0x80: negative), then that many bytes,
  little endian;
- bool: the character '0' or '1'; a string: its length as an integer, then the bytes;
- float: a mantissa and an exponent, two integers (value = mantissa * 2^exponent);
- tensor: version 2, num_samples, k, nr, nc, then raw little-endian float32 values;
  alias_tensor: version 1 and its four sizes (a view into a layer's `params`).

Structure: `add_loss_layer` writes its version and the loss details, then its subnetwork.
Every wrapper writes its version and then its subnetwork first, so the file begins with the
chain of versions from the output down to the input (computational layers `add_layer`, 2;
tags and skips, 1; the innermost add_layer, 2 or 3, holds the input layer and the first
computational layer), followed by the layers' details from the input upwards, each
`add_layer`'s followed by its bookkeeping (three
bools, x_grad, cached_output, params_grad or grad_final). Tags and skips carry no data,
so their ids are not in the file: the architecture that reads the layers knows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ffhq_tools.errors import WeightsError

MAX_STRING = 256
MAX_LAYERS = 10_000


@dataclass
class DlibLayer:
    kind: str  # the serialized version string: "con_4", "affine_2", "relu_2", ...
    fields: dict = field(default_factory=dict)


@dataclass
class DlibNet:
    loss: DlibLayer
    input: DlibLayer
    layers: list[DlibLayer]  # computational layers, input side first
    wrappers: list[int]  # the version chain, output side first (1: a tag or a skip)


class Stream:
    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def fail(self, what: str) -> WeightsError:
        return WeightsError(f"{self.path}: not a dlib network file ({what} at byte {self.pos})")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"{n} bytes wanted, {len(self.data) - self.pos} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def peek_int(self) -> int:
        start = self.pos
        value = self.int()
        self.pos = start
        return value

    def int(self) -> int:
        head = self.take(1)[0]
        size = head & 0x0F
        if size == 0 or size > 8 or head & 0x70:
            raise self.fail(f"integer header 0x{head:02x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if head & 0x80 else value

    def bool(self) -> bool:
        ch = self.take(1)
        if ch not in (b"0", b"1"):
            raise self.fail(f"bool byte {ch!r}")
        return ch == b"1"

    def string(self) -> str:
        n = self.int()
        if not 0 <= n <= MAX_STRING:
            raise self.fail(f"string of length {n}")
        try:
            return self.take(n).decode("ascii")
        except UnicodeDecodeError:
            raise self.fail("non-ASCII name") from None

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        if exponent >= 32000:  # dlib's markers for inf / nan
            raise self.fail("a non-finite float")
        return float(np.ldexp(float(mantissa), exponent))

    def shape(self, version: int, what: str) -> tuple[int, int, int, int]:
        if self.int() != version:
            raise self.fail(f"{what} version")
        dims = tuple(self.int() for _ in range(4))
        if any(d < 0 for d in dims):
            raise self.fail(f"negative {what} size {dims}")
        return dims

    def tensor(self) -> np.ndarray:
        dims = self.shape(2, "tensor")
        count = int(np.prod(dims, dtype=np.int64))
        if count * 4 > len(self.data) - self.pos:
            raise self.fail(f"a tensor of {dims} larger than the file")
        return np.frombuffer(self.take(count * 4), dtype="<f4").reshape(dims).astype(np.float32)

    def alias(self) -> tuple[int, int, int, int]:
        return self.shape(1, "alias_tensor")


def _slices(params: np.ndarray, *shapes) -> list[np.ndarray]:
    """Consecutive views of `params` (the aliases of one layer), as dlib's alias_tensor."""
    flat, out, offset = params.reshape(-1), [], 0
    for dims in shapes:
        n = int(np.prod(dims))
        if offset + n > flat.size:
            raise ValueError(f"alias {dims} beyond params of size {flat.size}")
        out.append(flat[offset:offset + n].reshape(dims))
        offset += n
    return out


def _con(s: Stream, kind: str) -> dict:
    params = s.tensor()
    f = {"num_filters": s.int(), "nr": s.int(), "nc": s.int(), "stride": (s.int(), s.int()),
         "padding": (s.int(), s.int())}
    filters, biases = s.alias(), s.alias()
    f["multipliers"] = [s.float() for _ in range(4)]
    f["use_bias"] = s.bool() if kind in ("con_5", "con_6") else True
    if kind == "con_6" and s.bool():
        raise s.fail("a con_ layer with a fused relu")
    f["weight"], f["bias"] = _slices(params, filters, biases if f["use_bias"] else (0,))
    return f


def _affine(s: Stream, kind: str) -> dict:
    params = s.tensor()
    gamma, beta = s.alias(), s.alias()
    f = {"mode": s.int()}
    f["disabled"] = s.bool() if kind == "affine_2" else False
    f["gamma"], f["beta"] = _slices(params, gamma, beta)
    return f


def _pool(s: Stream, kind: str) -> dict:
    return {"nr": s.int(), "nc": s.int(), "stride": (s.int(), s.int()),
            "padding": (s.int(), s.int())}


def _fc(s: Stream, kind: str) -> dict:
    f = {"num_outputs": s.int(), "num_inputs": s.int()}
    params = s.tensor()
    weights, biases = s.alias(), s.alias()
    f["bias_mode"] = s.int()
    f["multipliers"] = [s.float() for _ in range(4)]
    f["use_bias"] = (s.bool() if kind == "fc_3" else True) and f["bias_mode"] == 0
    f["weight"], f["bias"] = _slices(params, weights, biases if f["use_bias"] else (0,))
    return f


def _relu(s: Stream, kind: str) -> dict:
    return {"disabled": s.bool() if kind == "relu_2" else False}


LAYER_READERS = {
    "con_4": _con, "con_5": _con, "con_6": _con,
    "affine_": _affine, "affine_2": _affine,
    "relu_": _relu, "relu_2": _relu,
    "max_pool_2": _pool, "avg_pool_2": _pool,
    "add_prev_": lambda s, kind: {},
    "fc_2": _fc, "fc_3": _fc,
}


def _layer(s: Stream) -> DlibLayer:
    kind = s.string()
    reader = LAYER_READERS.get(kind)
    if reader is None:
        raise s.fail(f"layer type {kind!r}, which this reader does not know")
    try:
        return DlibLayer(kind, reader(s, kind))
    except ValueError as exc:
        raise s.fail(f"{kind}: {exc}") from None


def _bookkeeping(s: Stream, version: int, on_input: bool) -> None:
    for _ in range(3):
        s.bool()
    for _ in range(3 if version >= 2 or on_input else 2):
        s.tensor()
    if on_input and version >= 3:
        s.int()


def _input(s: Stream) -> DlibLayer:
    kind = s.string()
    if kind not in ("input_rgb_image", "input_rgb_image_sized"):
        raise s.fail(f"input layer {kind!r} (expected an RGB image input)")
    f = {"mean": (s.float(), s.float(), s.float())}
    if kind == "input_rgb_image_sized":
        f["size"] = (s.int(), s.int())
    return DlibLayer(kind, f)


def _loss(s: Stream) -> DlibLayer:
    kind = s.string()
    if kind == "loss_metric_2":
        return DlibLayer(kind, {"margin": s.float(), "dist_thresh": s.float()})
    if kind == "loss_metric_":
        return DlibLayer(kind, {})
    raise s.fail(f"loss layer {kind!r} (expected loss_metric)")


def read_dlib_net(path: str | Path) -> DlibNet:
    """Every layer of a dlib DNN file, as plain numbers and float32 arrays."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: file not found")
    s = Stream(path.read_bytes(), path)
    if s.int() != 1:
        raise s.fail("add_loss_layer version")
    loss = _loss(s)
    wrappers = []
    while s.peek_int() in (1, 2, 3):
        wrappers.append(s.int())
        if len(wrappers) > MAX_LAYERS:
            raise s.fail("more nested layers than any network has")
    if not wrappers or wrappers[-1] not in (2, 3):
        raise s.fail("no input layer")
    net = DlibNet(loss, _input(s), [_layer(s)], wrappers)
    _bookkeeping(s, wrappers[-1], on_input=True)
    for version in reversed(wrappers[:-1]):
        if version == 1:
            continue
        net.layers.append(_layer(s))
        _bookkeeping(s, version, on_input=False)
    if s.pos != len(s.data):
        raise s.fail(f"{len(s.data) - s.pos} bytes after the last layer")
    return net

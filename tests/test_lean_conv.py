"""The numpy convolution and pooling kernels agree with the Keras layers themselves, and
the digits v2 CNN assembled from them agrees with the committed model's own call: every
test runs twice, on the compiled loops (_convloops.c) and on their numpy fallbacks."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.runtimes.lean import conv, convloops
from service.runtimes.lean.program import Unsupported
from tests.conftest import MODELS

keras = pytest.importorskip("keras")

TOLERANCE = 1e-5
DIGITS = MODELS / "digits" / "2"


@pytest.fixture(autouse=True, params=["compiled", "numpy"])
def loops(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which loops conv.py runs on: the compiled ones, or the numpy fallbacks that serve
    where the extension was not built."""
    if request.param == "compiled" and not convloops.COMPILED:
        pytest.skip("_convloops was not built (no C compiler at install time)")
    monkeypatch.setattr(convloops, "COMPILED", request.param == "compiled")
    return request.param


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert got.dtype == np.float32
    diff = np.abs(got.astype(np.float64) - want) / np.maximum(np.abs(want), 1.0)
    assert diff.max() <= TOLERANCE, diff.max()


def images(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# (H, W, C, F, kernel, strides, padding, bias): odd and even sizes, C=1 and 3, a kernel
# larger than the stride, one that is even (asymmetric "same" padding), a 1x1, and
# 3x3 stride 1 with many channels (Winograd) and with a few (im2col, not transposed).
CONV_CASES = [
    (7, 9, 1, 4, (3, 3), (1, 1), "same", True),
    (7, 9, 3, 8, (3, 3), (1, 1), "valid", False),
    (7, 9, 3, 5, (3, 3), (2, 2), "same", False),
    (7, 9, 1, 6, (3, 3), (2, 2), "valid", True),
    (28, 28, 1, 32, (3, 3), (1, 1), "same", False),
    (28, 28, 3, 16, (3, 3), (2, 2), "same", True),
    (28, 28, 3, 7, (5, 5), (2, 2), "valid", True),
    (8, 10, 3, 4, (2, 4), (1, 2), "same", True),
    (8, 9, 3, 4, (4, 2), (3, 2), "same", False),
    (7, 9, 3, 12, (1, 1), (1, 1), "same", True),
    (7, 9, 3, 12, (1, 1), (2, 2), "valid", False),
    (7, 9, 16, 8, (3, 3), (1, 1), "same", True),
    (8, 10, 32, 5, (3, 3), (1, 1), "valid", False),
    (7, 7, 64, 24, (3, 3), (1, 1), "same", False),
    (28, 28, 32, 16, (3, 3), (1, 1), "same", True),
    (14, 14, 32, 8, (3, 3), (2, 2), "same", True),
    (9, 7, 8, 6, (3, 3), (1, 1), "same", True),
]


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "-".join(map(str, c)))
def test_conv2d_matches_keras(case: tuple[Any, ...], activation: str | None) -> None:
    h, w, c, f, size, strides, padding, use_bias = case
    x = images((3, h, w, c))
    rng = np.random.default_rng(1)
    # Scaled as trained kernels are (He/Glorot): with unit-variance weights and C=64,
    # outputs near 100 cancel to near 1 and Keras's own float32 error passes 1e-5.
    fan_in = size[0] * size[1] * c
    kernel = (rng.standard_normal((*size, c, f)) / np.sqrt(fan_in)).astype(np.float32)
    bias = rng.standard_normal(f).astype(np.float32) if use_bias else None
    layer = keras.layers.Conv2D(f, size, strides=strides, padding=padding, use_bias=use_bias,
                                activation=activation)
    layer.build(x.shape)
    layer.set_weights([kernel, bias] if use_bias else [kernel])
    want = np.asarray(layer(x), dtype=np.float64)
    prepared = conv.Conv2D(kernel, bias, strides, padding, activation=activation)
    assert_close(prepared(x), want)
    assert_close(prepared(x[:1]), want[:1])  # one image: other tile and matrix shapes
    if activation is None:
        assert_close(conv.conv2d(x, kernel, bias, strides=strides, padding=padding), want)


# (H, W, C, kernel, strides, pool): Winograd with the fused 2x2 tile max (even and odd
# sizes) and with another pool, im2col transposed and not, strided.
POOLED_CASES = [
    (14, 14, 32, (3, 3), (1, 1), (2, 2)),
    (7, 9, 16, (3, 3), (1, 1), (2, 2)),
    (9, 7, 16, (3, 3), (1, 1), (3, 2)),
    (28, 28, 1, (3, 3), (1, 1), (2, 2)),
    (7, 9, 1, (3, 3), (1, 1), (3, 3)),
    (9, 11, 8, (3, 3), (2, 1), (2, 2)),
    (8, 10, 3, (2, 4), (1, 1), (2, 3)),
]


@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize("case", POOLED_CASES, ids=lambda c: "-".join(map(str, c)))
def test_conv2d_with_a_fused_max_pool_matches_keras(case: tuple[Any, ...],
                                                    use_bias: bool) -> None:
    h, w, c, size, strides, pool = case
    x = images((3, h, w, c))
    rng = np.random.default_rng(2)
    kernel = (rng.standard_normal((*size, c, 6)) / np.sqrt(size[0] * size[1] * c))
    bias = rng.standard_normal(6) if use_bias else None
    layer = keras.layers.Conv2D(6, size, strides=strides, padding="same", use_bias=use_bias,
                                activation="relu")
    layer.build(x.shape)
    layer.set_weights([kernel, bias] if use_bias else [kernel])
    want = np.asarray(keras.layers.MaxPooling2D(pool)(layer(x)), dtype=np.float64)
    prepared = conv.Conv2D(kernel, bias, strides, activation="relu", pool=pool)
    assert_close(prepared(x), want)
    assert_close(prepared(x[1:2]), want[1:2])


def test_each_method_is_picked_where_it_pays() -> None:
    def method(c: int, size: tuple[int, int] = (3, 3), strides: int = 1) -> str:
        return conv.Conv2D(np.ones((*size, c, 4), np.float32), strides=strides).method

    # The cases above cover all three.
    assert [method(1), method(3), method(16), method(64)] == [
        "im2col-transposed", "im2col-transposed", "winograd", "winograd"]
    assert [method(8), method(32, strides=2), method(32, (5, 5))] == ["im2col"] * 3


# (H, W, pool, strides, padding): strides equal to, smaller and larger than the pool.
POOL_CASES = [
    (28, 28, (2, 2), None, "valid"),
    (7, 9, (2, 2), None, "valid"),
    (7, 9, (2, 2), None, "same"),
    (7, 9, (3, 3), (2, 2), "same"),
    (7, 9, (3, 3), (2, 2), "valid"),
    (7, 9, (2, 3), (1, 1), "same"),
    (8, 10, (3, 2), (2, 1), "same"),
    (8, 10, (2, 2), (3, 3), "valid"),
    (9, 7, (3, 3), (3, 2), "same"),
]
POOLS: dict[str, tuple[Callable[..., np.ndarray], str]] = {
    "max": (conv.max_pool2d, "MaxPooling2D"), "average": (conv.average_pool2d,
                                                          "AveragePooling2D")}


@pytest.mark.parametrize("kind", sorted(POOLS))
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "-".join(map(str, c)))
def test_pools_match_keras(kind: str, case: tuple[Any, ...]) -> None:
    h, w, size, strides, padding = case
    # Negative values everywhere: a max pool that let padding (zero) win would show.
    x = images((2, h, w, 3)) - 5.0
    fn, layer_name = POOLS[kind]
    layer = getattr(keras.layers, layer_name)(size, strides=strides, padding=padding)
    want = np.asarray(layer(x), dtype=np.float64)
    assert_close(fn(x, size, strides, padding), want)


def test_global_pools_match_keras() -> None:
    x = images((4, 7, 9, 5))
    assert_close(conv.global_average_pool2d(x),
                 np.asarray(keras.layers.GlobalAveragePooling2D()(x), dtype=np.float64))
    assert_close(conv.global_max_pool2d(x),
                 np.asarray(keras.layers.GlobalMaxPooling2D()(x), dtype=np.float64))


@pytest.mark.parametrize("channels", [1, 8, 16])
def test_a_batch_larger_than_a_chunk_is_run_in_chunks_with_the_same_result(
        channels: int, monkeypatch: pytest.MonkeyPatch) -> None:
    x = images((5, 9, 7, channels))
    prepared = conv.Conv2D(images((3, 3, channels, 4), seed=1), images((4,), seed=2),
                           activation="relu", pool=2)
    whole = prepared(x)
    monkeypatch.setattr(conv, "CHUNK_IMAGES", 2)
    np.testing.assert_allclose(prepared(x), whole, rtol=1e-6, atol=1e-6)


def test_what_it_cannot_do_is_refused_clearly() -> None:
    x, kernel = images((1, 7, 9, 3)), images((3, 3, 3, 4))
    with pytest.raises(Unsupported, match="dilation"):
        conv.conv2d(x, kernel, dilation_rate=2)
    with pytest.raises(Unsupported, match="padding"):
        conv.conv2d(x, kernel, padding="causal")
    with pytest.raises(Unsupported, match="activation"):
        conv.Conv2D(kernel, activation="gelu")
    with pytest.raises(ValueError, match="kernel expects 2"):
        conv.conv2d(x, images((3, 3, 2, 4)))
    with pytest.raises(ValueError, match="bias must be"):
        conv.conv2d(x, kernel, images((5,)))
    with pytest.raises(ValueError, match="x must be"):
        conv.max_pool2d(x[0])
    with pytest.raises(ValueError, match="does not fit"):
        conv.conv2d(x, images((9, 3, 3, 4)), padding="valid")
    with pytest.raises(ValueError, match="does not fit"):
        conv.Conv2D(kernel, pool=8)(x)


def digits_forward(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The digits v2 network rebuilt from the kernels above, as a lean runtime would:
    Rescaling folded into the first kernel, each BatchNormalization into its conv, and
    each ReLU and MaxPooling2D into the Conv2D call before it."""
    layers = {type(layer).__name__ + str(i): layer for i, layer in enumerate(model.layers)}
    convs = [v for k, v in layers.items() if k.startswith("Conv2D")]
    norms = [v for k, v in layers.items() if k.startswith("BatchNormalization")]
    dense = [v for k, v in layers.items() if k.startswith("Dense")]
    (rescale,) = [v for k, v in layers.items() if k.startswith("Rescaling")]
    folded = []
    for i, (c, bn) in enumerate(zip(convs, norms, strict=True)):
        gamma, beta, mean, var = (np.asarray(w, np.float64) for w in bn.get_weights())
        scale = gamma / np.sqrt(var + bn.epsilon)
        kernel = np.asarray(c.get_weights()[0], np.float64) * scale
        if i == 0:
            kernel *= rescale.scale
        folded.append((kernel.astype(np.float32), (beta - mean * scale).astype(np.float32)))
    conv1 = conv.Conv2D(*folded[0], activation="relu", pool=2)
    conv2 = conv.Conv2D(*folded[1], activation="relu", pool=2)
    conv3 = conv.Conv2D(*folded[2], activation="relu")
    (w1, b1), (w2, b2) = (d.get_weights() for d in dense)

    def forward(x: np.ndarray) -> np.ndarray:
        h = conv2(conv1(np.reshape(x, (len(x), 28, 28, 1))))
        h = conv3(h).reshape(len(h), -1) @ w1
        h += b1
        np.maximum(h, 0.0, out=h)
        z = h @ w2 + b2
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return forward


def digits_inputs(rows: int = 64) -> np.ndarray:
    """The manifest's sample images, then random ones in [0, 255], half of them saturated."""
    samples = json.loads((DIGITS / "manifest.json").read_text())["samples"]
    x = np.random.default_rng(7).uniform(0, 255, size=(rows, 28, 28))
    x[rows // 2 :] = np.round(x[rows // 2 :] / 255) * 255
    x[: len(samples)] = [s["inputs"] for s in samples[:rows]]
    return x.astype(np.float32)


def test_the_digits_cnn_from_these_kernels_matches_the_committed_model() -> None:
    model = keras.saving.load_model(DIGITS / "model.keras", compile=False, safe_mode=True)
    x = digits_inputs()
    want = np.asarray(model(x, training=False), dtype=np.float64)
    got = digits_forward(model)(x)
    assert_close(got, want)
    np.testing.assert_array_equal(got.argmax(axis=1), want.argmax(axis=1))
    # One image at a time is the other shape the service calls it with.
    assert_close(digits_forward(model)(x[:1]), want[:1])


def test_the_loops_refuse_an_output_they_would_write_out_of_bounds() -> None:
    x = images((1, 4, 4, 2))
    with pytest.raises(ValueError, match="C-contiguous float32 array of shape"):
        convloops.pool(x, 2, 2, 2, 2, 0, 0, False, np.empty((1, 2, 2, 3), np.float32))
    with pytest.raises(ValueError, match="C-contiguous float32"):
        convloops.pool(x, 2, 2, 2, 2, 0, 0, False, np.empty((1, 2, 2, 2), np.float64))
    with pytest.raises(ValueError, match="shape"):
        convloops.winograd_in(x, 1, 1, 2, 2, np.empty((16, 4, 3), np.float32))
    with pytest.raises(ValueError, match="do not fit"):
        convloops.winograd_out(np.empty((16, 4, 3), np.float32), np.zeros(3, np.float32),
                               False, False, 2, 2, np.empty((1, 4, 4, 5), np.float32))
    with pytest.raises(ValueError, match="bias"):
        convloops.max_bias_relu(np.empty((4, 6, 3), np.float32), np.zeros(2, np.float32),
                                True, np.empty((6, 3), np.float32))


def test_the_loops_take_inputs_in_any_layout_and_dtype() -> None:
    # Strided, float64, Fortran-ordered inputs are copied into what the C loops read.
    wide = images((2, 9, 14, 3)).astype(np.float64)
    want = conv.average_pool2d(np.ascontiguousarray(wide[:, :, ::2]), 3, 2, "same")
    got = np.empty_like(want)
    convloops.pool(wide[:, :, ::2], 3, 3, 2, 2, 1, 1, True, got)
    assert_close(got, want)
    # A read-only input (a request's buffer) cannot lend its buffer to ctypes directly.
    frozen = images((2, 9, 7, 16))
    frozen.flags.writeable = False
    prepared = conv.Conv2D(images((3, 3, 16, 4), seed=1), images((4,), seed=2))
    np.testing.assert_array_equal(prepared(frozen), prepared(frozen.copy()))
    np.testing.assert_array_equal(conv.max_pool2d(frozen), conv.max_pool2d(frozen.copy()))
    blocks = np.asfortranarray(images((4, 6, 5)).astype(np.float64))
    out = np.empty((6, 5), np.float32)
    convloops.max_bias_relu(blocks, np.arange(10.0)[::2], True, out)
    np.testing.assert_allclose(out, np.maximum(blocks.max(axis=0) + np.arange(10.0)[::2], 0),
                               rtol=1e-6)


def test_importing_the_kernels_does_not_load_numba() -> None:
    # numba and LLVM took ~200 MB of the image and ~110 MB of every worker.
    root = Path(__file__).resolve().parent.parent
    code = ("import sys, service.runtimes.lean.conv, service.runtimes.lean.ops; "
            "assert 'numba' not in sys.modules and 'llvmlite' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=120)

"""Request bodies, built from the sample rows the models' manifests ship.

Using the manifests' own samples means every request is a valid, realistic input (a real
MNIST digit, real wine rows) and nothing in bench/ duplicates model data. Bodies are
written to files because wrk's Lua reads them from disk (binary-safe).
"""

from __future__ import annotations

import io
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

JSON = "Content-Type: application/json"


@dataclass(frozen=True)
class Payload:
    key: str
    body: bytes
    headers: tuple[str, ...]  # "Name: value"
    rows: int  # instances in one request, for rows/s

    def write(self, directory: Path) -> Path:
        path = directory / f"{self.key}.body"
        path.write_bytes(self.body)
        return path


def _samples(models: Path, name: str, version: int) -> list[Any]:
    manifest = json.loads((models / name / str(version) / "manifest.json").read_text())
    return [sample["inputs"] for sample in manifest["samples"]]


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _v2_json(name: str, rows: list[list[float]], **extra: Any) -> bytes:
    data = [v for row in rows for v in row]
    return _json({"inputs": [{"name": name, "shape": [len(rows), len(rows[0])],
                              "datatype": "FP32", "data": data}], **extra})


def _fp32(tensor: Any) -> tuple[list[int], bytes]:
    """Shape and raw little-endian FP32 bytes of a nested list (rows, or images)."""
    arr = np.asarray(tensor, dtype="<f4")
    return list(arr.shape), arr.tobytes()


def _v2_binary(name: str, images: list[list[list[float]]]) -> tuple[bytes, int]:
    """Triton's binary tensor extension: JSON header, then raw little-endian FP32."""
    shape, raw = _fp32(images)
    header = _json({
        "inputs": [{"name": name, "shape": shape, "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)}}],
        # Ask for binary outputs too, as tritonclient does by default.
        "parameters": {"binary_data_output": True},
    })
    return header + raw, len(header)


@dataclass(frozen=True)
class GrpcPayload:
    """One KServe V2 gRPC ModelInfer request as data: grpc_load.request_bytes() turns it
    into the pre-serialised protobuf (kept out of here so this module needs no protobuf)."""

    key: str
    model: str
    version: str
    input: str
    shape: list[int]
    raw: bytes  # raw_input_contents[0]: little-endian FP32
    rows: int

    @property
    def size(self) -> int:
        return len(self.raw)


def _digit_images(models: Path, count: int) -> list[Any]:
    return list(itertools.islice(itertools.cycle(_samples(models, "digits", 2)), count))


def build_grpc(models: Path, batch_images: int = 64) -> dict[str, GrpcPayload]:
    """The gRPC twins of wine_v2 (one row) and digits64_v2_binary (the same 64 images)."""
    wine_shape, wine_raw = _fp32([_samples(models, "wine-quality", 2)[0]])
    digits_shape, digits_raw = _fp32(_digit_images(models, batch_images))
    payloads = [
        GrpcPayload("grpc_wine_v2", "wine-quality", "2", "features", wine_shape, wine_raw, 1),
        GrpcPayload("grpc_digits64", "digits", "1", "image", digits_shape, digits_raw,
                    batch_images),
    ]
    return {p.key: p for p in payloads}


def build(models: Path, batch_rows: int = 256, batch_images: int = 64) -> dict[str, Payload]:
    wine = _samples(models, "wine-quality", 2)
    housing = _samples(models, "housing", 2)
    digits = _samples(models, "digits", 2)
    digit = digits[0]  # 28x28 pixel values 0-255
    images = _digit_images(models, batch_images)
    batch = list(itertools.islice(itertools.cycle(wine), batch_rows))
    # MLServer's sklearn runtime returns predict() unless the request names an output;
    # our service returns probabilities for a classifier, so ask MLServer for the same.
    proba = {"outputs": [{"name": "predict_proba"}]}
    binary, header_len = _v2_binary("image", [digit])
    binary_batch, batch_header_len = _v2_binary("image", images)
    payloads = [
        Payload("wine_tfs", _json({"instances": [wine[0]]}), (JSON,), 1),
        Payload("wine_tfs_batch", _json({"instances": batch}), (JSON,), batch_rows),
        Payload("wine_v2", _v2_json("features", [wine[0]]), (JSON,), 1),
        Payload("wine_v2_proba", _v2_json("features", [wine[0]], **proba), (JSON,), 1),
        Payload("housing_v2", _v2_json("features", [housing[0]]), (JSON,), 1),
        Payload("digits_tfs", _json({"instances": [digit]}), (JSON,), 1),
        Payload("digits_v2_json", _v2_json_image("image", [digit]), (JSON,), 1),
        Payload("digits_v2_binary", binary,
                ("Content-Type: application/octet-stream",
                 f"Inference-Header-Content-Length: {header_len}"), 1),
        Payload("digits64_tfs", _json({"instances": images}), (JSON,), batch_images),
        Payload("digits64_v2_json", _v2_json_image("image", images), (JSON,), batch_images),
        Payload("digits64_v2_binary", binary_batch,
                ("Content-Type: application/octet-stream",
                 f"Inference-Header-Content-Length: {batch_header_len}"), batch_images),
        Payload("digits_photo", photo(digit), ("Content-Type: image/png",), 1),
    ]
    return {p.key: p for p in payloads}


def photo(image: list[list[float]]) -> bytes:
    """The digit as a phone photo of a ruled page would give it: dark ink at 150 px on a
    480x360 page, light falling off across it, faint blue lines, sensor noise (PNG)."""
    rng = np.random.default_rng(0)
    digit = np.clip(np.asarray(image, dtype=np.float32), 0, 255).astype(np.uint8)
    cover = np.asarray(Image.fromarray(digit).resize((150, 150), Image.Resampling.BICUBIC),
                       dtype=np.float32) / 255.0
    h, w = 360, 480
    page = np.ones((h, w, 3), dtype=np.float32)
    page[::30] = (0.8, 0.86, 0.95)
    page[100:250, 170:320] *= 1 - 0.88 * cover[..., None]
    page *= (0.6 + 0.4 * np.arange(w) / w)[None, :, None]
    page += rng.normal(0, 0.03, page.shape)
    out = io.BytesIO()
    Image.fromarray((np.clip(page, 0, 1) * 255).astype(np.uint8)).save(out, "PNG")
    return out.getvalue()


def _v2_json_image(name: str, images: list[list[list[float]]]) -> bytes:
    data = [float(v) for image in images for row in image for v in row]
    shape = [len(images), len(images[0]), len(images[0][0])]
    return _json({"inputs": [{"name": name, "shape": shape, "datatype": "FP32", "data": data}]})

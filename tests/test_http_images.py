"""Digit uploads: real MNIST test digits rendered as dark-on-light PNG and JPEG at
several sizes and positions, sent as multipart and as raw bodies."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def _render(digit: np.ndarray, rng: np.random.Generator, fmt: str, rgb: bool) -> bytes:
    size = int(rng.integers(28, 220))
    ink = Image.fromarray(255 - digit).resize((size, size), Image.Resampling.BILINEAR)
    canvas = Image.new("L", (size + int(rng.integers(0, 160)), size + int(rng.integers(0, 160))),
                       255)
    canvas.paste(ink, (int(rng.integers(0, canvas.width - size + 1)),
                       int(rng.integers(0, canvas.height - size + 1))))
    out = io.BytesIO()
    (canvas.convert("RGB") if rgb else canvas).save(out, fmt, quality=90)
    return out.getvalue()


def test_uploaded_digits_are_recognised(client, data_dir):
    from training.data import load_mnist

    images, labels = load_mnist(data_dir, "test")
    rng = np.random.default_rng(7)
    n, correct = 120, 0
    for i in range(n):
        fmt = "JPEG" if i % 2 else "PNG"
        data = _render(images[i], rng, fmt, rgb=i % 3 == 0)
        mime = f"image/{fmt.lower()}"
        if i % 4 == 0:
            r = client.post("/v1/models/digits:predict_image", files={"file": ("d", data, mime)})
        else:
            r = client.post("/v1/models/digits:predict_image", content=data,
                            headers={"content-type": mime})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body["probabilities"]) == {str(d) for d in range(10)}
        correct += int(body["label"]) == labels[i]
    assert correct / n >= 0.97, correct / n


def test_light_on_dark_and_transparent_canvas(client, data_dir):
    from training.data import load_mnist

    images, labels = load_mnist(data_dir, "test")
    digit = images[0]
    big = Image.fromarray(digit).resize((140, 140), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    big.save(out, "PNG")  # white on black, like MNIST itself
    r = client.post("/v1/models/digits:predict_image", content=out.getvalue())
    assert r.json()["label"] == str(labels[0])
    rgba = Image.new("RGBA", big.size, (0, 0, 0, 0))
    rgba.putalpha(big)  # black strokes on a transparent canvas
    out = io.BytesIO()
    rgba.save(out, "PNG")
    r = client.post("/v1/models/digits/versions/2:predict_image?return_input=true",
                    content=out.getvalue())
    assert r.json()["label"] == str(labels[0])
    assert np.asarray(r.json()["input"]).shape == (28, 28)

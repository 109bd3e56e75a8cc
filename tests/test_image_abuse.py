"""Hostile and odd uploads to :predict_image over real HTTP: each is a clear 4xx whose JSON
error names the problem, never a 5xx, and the server keeps serving afterwards."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.conftest import TEST_LIMITS

URL = "/v1/models/digits:predict_image"


def _png(img: Image.Image, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG", **kw)
    return out.getvalue()


def _digit_png() -> bytes:
    img = Image.new("L", (60, 60), 255)
    img.paste(0, (26, 10, 34, 50))  # a "1": a dark bar on white
    return _png(img)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels; only a few rows follow."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    rows = zlib.compress(b"\0" * (width + 1) * 4, 9)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", rows)
            + _chunk(b"IEND", b""))


def _error(r, status: int, *needles: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert isinstance(body["error"], str)
    for needle in needles:
        assert needle in body["error"], (needle, body["error"])
    return body["error"]


@pytest.fixture(autouse=True)
def _still_serving(server, client):
    r = client.post(URL, content=_digit_png(), headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    yield
    assert server.proc.poll() is None, server.output()
    r = client.post(URL, content=_digit_png(), headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text


def test_truncated_png_at_many_lengths(client):
    # Paper noise, so the pixel data is most of the file.
    pixels = np.random.default_rng(0).integers(200, 256, (80, 80), dtype=np.uint8)
    pixels[10:70, 36:44] = 0
    data = _png(Image.fromarray(pixels))
    assert client.post(URL, content=data).status_code == 200
    # Cut inside the signature, the IHDR chunk and the pixel data. (A PNG missing only its
    # 12-byte IEND trailer still holds every pixel and is served.)
    for cut in (1, 8, 16, 33, 40, 100, len(data) // 2, len(data) - 40):
        r = client.post(URL, content=data[:cut], headers={"content-type": "image/png"})
        assert r.status_code in (400, 415), (cut, r.text)
        assert any(word in r.json()["error"] for word in ("truncated", "not a readable")), (
            cut, r.text)


def test_decompression_bomb_is_refused_from_the_header(client):
    limit = int(TEST_LIMITS["MODELSERVE_MAX_IMAGE_PIXELS"])
    # 30000x30000 = 900 Mpx claimed by a ~1 KB file: refused before decoding, by our
    # limit and by Pillow's own guard (past ~179 Mpx) alike, both as 413 naming pixels.
    for w, h in ((30_000, 30_000), (3_000, 3_000)):
        bomb = _bomb_png(w, h)
        assert len(bomb) < 2_000
        error = _error(client.post(URL, content=bomb, headers={"content-type": "image/png"}),
                       413, "pixels", str(limit))
        assert "too large" in error or f"{w}x{h}" in error


def test_one_pixel_image(client):
    for value in (0, 255):
        _error(client.post(URL, content=_png(Image.new("L", (1, 1), value))), 400,
               "No digit found")


def test_long_strip(client):
    strip = Image.new("L", (20_000, 1), 255)
    strip.paste(0, (9_000, 0, 11_000, 1))
    for img in (strip, strip.transpose(Image.Transpose.ROTATE_90)):
        _error(client.post(URL, content=_png(img), headers={"content-type": "image/png"}),
               400, "too narrow to hold a digit", f"{img.width}x{img.height}")


def test_animated_images_are_refused(client):
    frames = [Image.new("L", (40, 40), 255), Image.new("L", (40, 40), 0)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100)
    # GIF is not an accepted format at all (animated or not) ...
    _error(client.post(URL, content=gif.getvalue(), headers={"content-type": "image/gif"}),
           415)
    _error(client.post(URL, content=gif.getvalue()), 415, "PNG or JPEG", "GIF")
    # ... and an animated PNG (APNG) is refused rather than read as its first frame.
    apng = io.BytesIO()
    digit = Image.open(io.BytesIO(_digit_png()))
    digit.save(apng, "PNG", save_all=True, append_images=[frames[0]], duration=100)
    _error(client.post(URL, content=apng.getvalue(), headers={"content-type": "image/png"}),
           400, "Animated images are not accepted")


def test_non_image_with_an_image_content_type(client):
    for ctype in ("image/png", "image/jpeg"):
        _error(client.post(URL, content=b'{"instances": [[0]]}', headers={"content-type": ctype}),
               415, "not a readable PNG or JPEG")
    _error(client.post(URL, files={"file": ("x.png", b"%PDF-1.4 not a png", "image/png")}),
           415, "not a readable PNG or JPEG")


def test_valid_image_with_the_wrong_content_type(client):
    png = _digit_png()
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(png)).save(jpeg, "JPEG")
    _error(client.post(URL, content=png, headers={"content-type": "image/jpeg"}), 415,
           "image/jpeg", "PNG")
    _error(client.post(URL, content=jpeg.getvalue(), headers={"content-type": "image/png"}),
           415, "image/png", "JPEG")
    for ctype in ("text/plain", "application/json"):
        _error(client.post(URL, content=png, headers={"content-type": ctype}), 415, ctype,
               "image/png or image/jpeg")
    _error(client.post(URL, files={"file": ("d.jpg", png, "image/jpeg")}), 415, "PNG")
    # Unlabelled bytes are identified by content.
    for headers in ({}, {"content-type": "application/octet-stream"}):
        assert client.post(URL, content=png, headers=headers).status_code == 200

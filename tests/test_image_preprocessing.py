"""How an uploaded picture becomes a model's image input, as its manifest declares
(service/images.py), checked on pictures whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from service.errors import InvalidInput
from service.images import to_input
from service.manifest import ImagePreprocessing, ImageSpec, InputSpec


def _spec(h: int, w: int, c: int = 1, *, mode: str = "ink", box: int | None = None,
          centre: str = "mass", lo: float = 0.0, hi: float = 255.0,
          channel_axis: bool = False) -> InputSpec:
    shape = [-1, h, w, c] if (c > 1 or channel_axis) else [-1, h, w]
    return InputSpec(name="image", kind="image", shape=shape, dtype="float32", image=ImageSpec(
        height=h, width=w, channels=c, value_min=lo, value_max=hi, description="test",
        preprocessing=ImagePreprocessing(mode=mode, box=box, centre=centre)))


def _square_on_page(page: int, side: int, at: tuple[int, int], dark_on_light: bool) -> Image.Image:
    """A square drawn with a pen (an outline, strokes an eighth of its side: like a 0)."""
    img = np.full((page, page), 255 if dark_on_light else 0, dtype=np.uint8)
    y, x = at
    pen = max(1, side // 8)
    img[y:y + side, x:x + side] = 0 if dark_on_light else 255
    img[y + pen:y + side - pen, x + pen:x + side - pen] = 255 if dark_on_light else 0
    return Image.fromarray(img)


@pytest.mark.parametrize("dark_on_light", [True, False])
def test_ink_is_cropped_scaled_to_the_box_and_centred(dark_on_light):
    picture = _square_on_page(200, 40, (10, 130), dark_on_light)
    out = to_input(picture, _spec(8, 8, box=4, centre="box", lo=0, hi=16, channel_axis=True))
    assert out.shape == (8, 8, 1) and out.dtype == np.float32
    ink = out[..., 0] > 4
    rows, cols = np.nonzero(ink)
    # The square fills a 4x4 box in the middle of the 8x8 frame (its strokes, half a
    # pixel wide there, at more than half of full ink: 16), on background 0.
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (2, 5, 2, 5)
    assert 8 < out.max() <= 16 and out.min() == 0


def test_mnist_framing_centres_by_mass():
    picture = _square_on_page(100, 30, (0, 0), dark_on_light=True)
    out = to_input(picture, _spec(28, 28, box=20))
    ys, xs = np.indices(out.shape)
    total = out.sum()
    assert (ys * out).sum() / total == pytest.approx(14, abs=0.6)
    assert (xs * out).sum() / total == pytest.approx(14, abs=0.6)


def test_background_and_ink_values_follow_the_spec():
    # A model trained on dark ink (0) on white paper (1.0).
    picture = _square_on_page(80, 40, (20, 20), dark_on_light=True)
    out = to_input(picture, _spec(10, 10, box=8, centre="box", lo=1.0, hi=0.0))
    assert out[0, 0] == pytest.approx(1.0) and out.min() == pytest.approx(0.0, abs=0.01)
    assert out[5, 5] == pytest.approx(1.0, abs=0.01)  # the inside of the square is paper


def test_resize_mode_keeps_colour_and_the_whole_picture():
    rgb = np.zeros((40, 80, 3), dtype=np.uint8)
    rgb[:, :40] = (255, 0, 0)   # left half red, right half blue
    rgb[:, 40:] = (0, 0, 255)
    out = to_input(Image.fromarray(rgb), _spec(4, 8, 3, mode="resize", lo=0.0, hi=1.0))
    assert out.shape == (4, 8, 3)
    assert np.allclose(out[:, 0], [1, 0, 0], atol=0.02)
    assert np.allclose(out[:, -1], [0, 0, 1], atol=0.02)


def test_a_blank_picture_has_no_ink():
    with pytest.raises(InvalidInput, match="No digit found"):
        to_input(Image.new("L", (30, 30), 255), _spec(8, 8, box=8))


def test_resize_mode_keeps_the_picture_as_it_is_whatever_the_polarity():
    # A model of dark shapes on light paper (background 1.0, ink 0.0): a white corner
    # stays white and a black centre stays black; nothing is inverted.
    page = np.full((40, 40), 255, dtype=np.uint8)
    page[10:30, 10:30] = 0
    out = to_input(Image.fromarray(page), _spec(8, 8, mode="resize", lo=1.0, hi=0.0))
    assert out[0, 0] == pytest.approx(1.0) and out[4, 4] == pytest.approx(0.0)

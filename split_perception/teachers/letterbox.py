"""Resizing an image to the network input (numpy only, so it runs onboard), as the teacher's own pipeline does.

Two policies, both sampled bilinearly at dst -> (dst - offset) / ratio as `cv2.warpPerspective` does (no
half-pixel shift, positions rounded to 1/32 pixel, integer weights, 8-bit result), so that the network sees
the same pixels as upstream's pipeline gave it:

- `letterbox`, NanoDet's validation pipeline (`keep_ratio: True`): the image is scaled by min(W/w, H/h)
  about its centre and placed at the centre of the W x H input; outside the image is black.
- `stretch`, MediaPipe's ImageToTensorCalculator with `keep_aspect_ratio: false`: the whole image is scaled
  by W/w and H/h onto the input; taps past the last row or column repeat it (BORDER_REPLICATE).

Detected boxes map back through the inverse of the same transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ImageError

SUBPIXEL_BITS = 5  # OpenCV's INTER_BITS: warps sample at 1/32 pixel with integer weights
SUBPIXELS = 1 << SUBPIXEL_BITS


@dataclass(frozen=True)
class Letterbox:
    """The transform from a source image to the network input: input = ratio * source + offset, per axis."""

    ratio_x: float
    ratio_y: float
    offset_x: float
    offset_y: float
    source_width: int
    source_height: int

    @classmethod
    def fit(cls, source_width: int, source_height: int, input_width: int, input_height: int) -> "Letterbox":
        """Keep the aspect ratio, centre the image in the input."""
        ratio = min(input_width / source_width, input_height / source_height)
        return cls(ratio, ratio, 0.5 * input_width - ratio * source_width / 2,
                   0.5 * input_height - ratio * source_height / 2, source_width, source_height)

    @classmethod
    def stretch(cls, source_width: int, source_height: int, input_width: int, input_height: int) -> "Letterbox":
        """Scale each axis on its own so that the image fills the input."""
        return cls(input_width / source_width, input_height / source_height, 0.0, 0.0, source_width, source_height)

    def to_source(self, boxes: np.ndarray) -> np.ndarray:
        """xyxy boxes in input pixels -> source pixels, clipped to the source image."""
        out = np.empty_like(boxes, dtype=np.float64)
        out[:, 0::2] = np.clip((boxes[:, 0::2] - self.offset_x) / self.ratio_x, 0, self.source_width)
        out[:, 1::2] = np.clip((boxes[:, 1::2] - self.offset_y) / self.ratio_y, 0, self.source_height)
        return out


def _axis_taps(n_in: int, n_out: int, offset: float, ratio: float, replicate: bool) -> tuple[np.ndarray, np.ndarray]:
    """(source indices, integer weights summing to 32), both n_out x 2, of bilinear sampling at
    (i - offset) / ratio with the position rounded to 1/32 pixel as OpenCV's warps do; taps outside
    the source take the nearest edge pixel when `replicate`, else weigh 0 (a black border)."""
    position = np.rint((np.arange(n_out) - offset) / ratio * SUBPIXELS).astype(np.int64)
    first, fraction = position // SUBPIXELS, position % SUBPIXELS
    index = np.stack([first, first + 1], axis=1)
    weight = np.stack([SUBPIXELS - fraction, fraction], axis=1)
    if not replicate:
        weight[(index < 0) | (index >= n_in)] = 0
    return np.clip(index, 0, n_in - 1), weight


def _inside(taps: tuple[np.ndarray, np.ndarray]) -> slice:
    """The output span whose taps weigh anything: outside it a black border is 0 and needs no sums."""
    live = np.flatnonzero(taps[1].any(axis=1))
    return slice(int(live[0]), int(live[-1]) + 1) if len(live) else slice(0, 0)


def _sample_axis(image: np.ndarray, taps: tuple[np.ndarray, np.ndarray], axis: int, dtype) -> np.ndarray:
    """Integer weighted sums of the two taps along `axis` in `dtype` (values scale by 32): uint16 holds
    one pass over 8-bit pixels (at most 255 * 32), uint32 the second (at most 255 * 32 * 32)."""
    index, weight = taps
    shape = [1] * image.ndim
    shape[axis] = len(index)
    out = np.take(image, index[:, 0], axis=axis).astype(dtype)
    out *= weight[:, 0].astype(dtype).reshape(shape)
    second = np.take(image, index[:, 1], axis=axis).astype(dtype)
    second *= weight[:, 1].astype(dtype).reshape(shape)
    out += second
    return out


def _warp(image: np.ndarray, transform: Letterbox, input_width: int, input_height: int,
          replicate: bool) -> np.ndarray:
    """The H x W x 3 uint8 input that `transform` makes of `image`.

    Exact integer arithmetic, so the order of the two passes and the integer widths change nothing
    but the time: 8-bit rows weighted in uint16, then columns in uint32, one rounding at the end. A
    black border's rows and columns are left at 0 rather than summed (a 4:3 camera frame letterboxed
    to a square input is a quarter border)."""
    row_taps = _axis_taps(image.shape[0], input_height, transform.offset_y, transform.ratio_y, replicate)
    col_taps = _axis_taps(image.shape[1], input_width, transform.offset_x, transform.ratio_x, replicate)
    rows, cols = _inside(row_taps), _inside(col_taps)
    out = np.zeros((input_height, input_width, 3), np.uint8)
    part = _sample_axis(image, (row_taps[0][rows], row_taps[1][rows]), 0, np.uint16)
    part = _sample_axis(part, (col_taps[0][cols], col_taps[1][cols]), 1, np.uint32)
    part += SUBPIXELS ** 2 >> 1
    part >>= 2 * SUBPIXEL_BITS
    out[rows, cols] = part
    return out


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
        raise ImageError(f"expected an H x W x 3 uint8 image, got {image.shape} {image.dtype}")


def letterbox(image: np.ndarray, input_width: int, input_height: int) -> tuple[np.ndarray, Letterbox]:
    """(H x W x 3 uint8 image, its Letterbox) for an H' x W' x 3 uint8 image:
    keep-ratio resize, centred, black border."""
    _check_image(image)
    transform = Letterbox.fit(image.shape[1], image.shape[0], input_width, input_height)
    return _warp(image, transform, input_width, input_height, replicate=False), transform


def stretch(image: np.ndarray, input_width: int, input_height: int) -> tuple[np.ndarray, Letterbox]:
    """(H x W x 3 uint8 image, its Letterbox) for an H' x W' x 3 uint8 image:
    each axis scaled to fill the input, edges replicated."""
    _check_image(image)
    transform = Letterbox.stretch(image.shape[1], image.shape[0], input_width, input_height)
    return _warp(image, transform, input_width, input_height, replicate=True), transform


RESIZES = {"letterbox": letterbox, "stretch": stretch}  # teacher.yaml's input.resize -> function

"""Letterbox preprocessing (numpy only, so it runs onboard): keep-ratio resize, centred, black border.

The geometry is that of NanoDet's validation pipeline (`keep_ratio: True`): the image is scaled by
min(W/w, H/h) about its centre and placed at the centre of the W x H input, sampled bilinearly at
dst -> (dst - offset) / ratio as `cv2.warpPerspective` does (no half-pixel shift, outside is black,
positions rounded to 1/32 pixel, integer weights, 8-bit result), so the network sees the same pixels
as upstream's pipeline gave it. Detected boxes map back through the inverse of the same transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ImageError

SUBPIXEL_BITS = 5  # OpenCV's INTER_BITS: warps sample at 1/32 pixel with integer weights
SUBPIXELS = 1 << SUBPIXEL_BITS


@dataclass(frozen=True)
class Letterbox:
    """The transform from a source image to the network input: input = ratio * source + offset."""

    ratio: float
    offset_x: float
    offset_y: float
    source_width: int
    source_height: int

    @classmethod
    def fit(cls, source_width: int, source_height: int, input_width: int, input_height: int) -> "Letterbox":
        ratio = min(input_width / source_width, input_height / source_height)
        return cls(ratio, 0.5 * input_width - ratio * source_width / 2, 0.5 * input_height - ratio * source_height / 2,
                   source_width, source_height)

    def to_source(self, boxes: np.ndarray) -> np.ndarray:
        """xyxy boxes in input pixels -> source pixels, clipped to the source image."""
        out = np.empty_like(boxes, dtype=np.float64)
        out[:, 0::2] = np.clip((boxes[:, 0::2] - self.offset_x) / self.ratio, 0, self.source_width)
        out[:, 1::2] = np.clip((boxes[:, 1::2] - self.offset_y) / self.ratio, 0, self.source_height)
        return out


def _axis_taps(n_in: int, n_out: int, offset: float, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """(source indices, integer weights summing to 32), both n_out x 2, of bilinear sampling at
    (i - offset) / ratio with the position rounded to 1/32 pixel as OpenCV's warps do; taps outside
    the source weigh 0 (a black border)."""
    position = np.rint((np.arange(n_out) - offset) / ratio * SUBPIXELS).astype(np.int64)
    first, fraction = position // SUBPIXELS, position % SUBPIXELS
    index = np.stack([first, first + 1], axis=1)
    weight = np.stack([SUBPIXELS - fraction, fraction], axis=1)
    weight[(index < 0) | (index >= n_in)] = 0
    return np.clip(index, 0, n_in - 1), weight


def _sample_axis(image: np.ndarray, taps: tuple[np.ndarray, np.ndarray], axis: int) -> np.ndarray:
    """Integer weighted sums of the two taps along `axis` (values scale by 32)."""
    index, weight = taps
    shape = [1] * image.ndim
    shape[axis] = len(index)
    return sum(np.take(image, index[:, k], axis=axis).astype(np.int64) * weight[:, k].reshape(shape) for k in (0, 1))


def letterbox(image: np.ndarray, input_width: int, input_height: int) -> tuple[np.ndarray, Letterbox]:
    """(H x W x 3 float32 image holding 8-bit values, its Letterbox) for an H' x W' x 3 uint8 image."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
        raise ImageError(f"expected an H x W x 3 uint8 image, got {image.shape} {image.dtype}")
    transform = Letterbox.fit(image.shape[1], image.shape[0], input_width, input_height)
    rows = _sample_axis(image, _axis_taps(image.shape[0], input_height, transform.offset_y, transform.ratio), 0)
    both = _sample_axis(rows, _axis_taps(image.shape[1], input_width, transform.offset_x, transform.ratio), 1)
    return ((both + (SUBPIXELS ** 2 >> 1)) >> 2 * SUBPIXEL_BITS).astype(np.float32), transform

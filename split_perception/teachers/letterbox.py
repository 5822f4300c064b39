"""Letterbox preprocessing (numpy only, so it runs onboard): keep-ratio resize, centred, black border.

The geometry is that of NanoDet's validation pipeline (`keep_ratio: True`): the image is scaled by
min(W/w, H/h) about its centre and placed at the centre of the W x H input, sampled bilinearly at
dst -> (dst - offset) / ratio as `cv2.warpPerspective` does (no half-pixel shift, outside is black),
and the result is rounded to 8-bit values as the upstream pipeline's uint8 image is. Detected boxes
map back through the inverse of the same transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ImageError


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


def _sample_axis(image: np.ndarray, n_out: int, offset: float, ratio: float, axis: int) -> np.ndarray:
    """Bilinear samples of `image` along `axis` at (i - offset) / ratio; positions outside read black."""
    n_in = image.shape[axis]
    src = (np.arange(n_out, dtype=np.float64) - offset) / ratio
    i0 = np.floor(src).astype(np.int64)
    w1 = (src - i0).astype(np.float32)
    shape = [1] * image.ndim
    shape[axis] = n_out
    out = np.zeros(image.shape[:axis] + (n_out,) + image.shape[axis + 1:], np.float32)
    for index, weight in ((i0, 1.0 - w1), (i0 + 1, w1)):
        inside = (index >= 0) & (index < n_in)
        taken = np.take(image, np.clip(index, 0, n_in - 1), axis=axis).astype(np.float32)
        out += taken * np.where(inside, weight, 0.0).astype(np.float32).reshape(shape)
    return out


def letterbox(image: np.ndarray, input_width: int, input_height: int) -> tuple[np.ndarray, Letterbox]:
    """(H x W x 3 float32 image holding 8-bit values, its Letterbox) for an H' x W' x 3 uint8 image."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
        raise ImageError(f"expected an H x W x 3 uint8 image, got {image.shape} {image.dtype}")
    transform = Letterbox.fit(image.shape[1], image.shape[0], input_width, input_height)
    rows = _sample_axis(image, input_height, transform.offset_y, transform.ratio, axis=0)
    boxed = _sample_axis(rows, input_width, transform.offset_x, transform.ratio, axis=1)
    return np.clip(np.rint(boxed), 0, 255), transform

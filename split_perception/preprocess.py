"""Image -> network input: resize to the model's input size and normalize (runs onboard, no torch)."""

from __future__ import annotations

import cv2
import numpy as np

from .errors import ImageError


def to_input_array(rgb: np.ndarray, input_size, mean, std, out: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 HxWx3 -> float32 CHW array at `input_size` (h, w), normalized with mean/std.

    `out` (float32 3xHxW) is filled in place: a frame loop that reuses it allocates nothing large,
    so it pays no page faults for fresh memory every frame.
    """
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        dtype = getattr(rgb, "dtype", type(rgb).__name__)
        raise ImageError(f"expected an RGB uint8 image of shape HxWx3, got shape {shape} dtype {dtype}")
    if min(rgb.shape[:2]) < 8:
        raise ImageError(f"image too small: {rgb.shape[1]}x{rgb.shape[0]}")
    h, w = input_size
    if rgb.shape[:2] != (h, w):
        interp = cv2.INTER_AREA if rgb.shape[0] > h else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (w, h), interpolation=interp)
    x = np.empty((3, h, w), np.float32) if out is None else out
    np.copyto(x, rgb.transpose(2, 0, 1))
    x /= np.float32(255.0)
    x -= np.asarray(mean, dtype=np.float32)[:, None, None]
    x /= np.asarray(std, dtype=np.float32)[:, None, None]
    return x


def to_input_tensor(rgb: np.ndarray, input_size, mean, std):
    """The same as a torch tensor (training, evaluation, the torch runtime)."""
    import torch

    return torch.from_numpy(to_input_array(rgb, input_size, mean, std))

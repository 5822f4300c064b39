"""Image -> network input: resize to the model's input size and normalize (runs onboard: numpy only).

Resizing is separable, one axis at a time: area averaging when an axis shrinks (each output pixel
is the mean of the input span it covers, as OpenCV's INTER_AREA, without its rounding to uint8)
and bilinear interpolation with half-pixel centres when it grows. An integer ratio sums strided
slices; any other ratio gathers the few input rows/columns each output pixel reads, with
precomputed indices and weights.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import ImageError


@lru_cache(maxsize=32)
def axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), both n_out x K: output i = sum_k weights[i, k] * input[indices[i, k]]."""
    if n_out < n_in:  # area: overlap of [i*s, (i+1)*s) with each input pixel [j, j+1), over s
        s = n_in / n_out
        k = int(np.ceil(s)) + 1
        start = np.floor(np.arange(n_out) * s).astype(np.int64)
        idx = np.minimum(start[:, None] + np.arange(k), n_in - 1)
        lo, hi = np.arange(n_out)[:, None] * s, (np.arange(n_out)[:, None] + 1) * s
        cover = np.clip(np.minimum(hi, idx + 1.0) - np.maximum(lo, idx.astype(np.float64)), 0.0, None)
        cover[:, 1:][idx[:, 1:] == idx[:, :-1]] = 0.0  # clamped duplicates at the last pixel count once
        weights = cover / s
        used = (weights > 0).any(axis=0)  # an integer ratio never reaches its last column
        idx, weights = idx[:, used], weights[:, used]
    else:  # bilinear, half-pixel centres, edges clamped
        src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1.0)
        j0 = np.floor(src).astype(np.int64)
        idx = np.stack([j0, np.minimum(j0 + 1, n_in - 1)], axis=1)
        frac = src - j0
        weights = np.stack([1.0 - frac, frac], axis=1)
    return idx, weights.astype(np.float32)


def _resize_axis(x: np.ndarray, n_out: int, axis: int) -> tuple[np.ndarray, int]:
    """Resized along `axis`, and a divisor still to apply (an integer ratio sums its slices)."""
    n_in = x.shape[axis]
    if n_in % n_out == 0:  # integer ratio: f strided slices summed (640x480 -> 320x240 in ~1-2 ms)
        f = n_in // n_out
        out = x[(slice(None),) * axis + (slice(0, None, f),)].astype(np.float32)
        for k in range(1, f):
            np.add(out, x[(slice(None),) * axis + (slice(k, None, f),)], out=out)
        return out, f
    idx, w = axis_weights(n_in, n_out)
    out = None
    for k in range(idx.shape[1]):
        shape = [1] * x.ndim
        shape[axis] = n_out
        term = np.take(x, idx[:, k], axis=axis) * w[:, k].reshape(shape)
        out = term if out is None else np.add(out, term, out=out)
    return out, 1


def resize(rgb: np.ndarray, size) -> np.ndarray:
    """HxWxC image -> float32 image of `size` (h, w); unchanged values when the size already fits."""
    h, w = size
    x, divisor = rgb, 1
    for axis, n in ((0, h), (1, w)):
        if x.shape[axis] != n:
            x, f = _resize_axis(x, n, axis)
            divisor *= f
    x = x.astype(np.float32, copy=False)
    return x * np.float32(1.0 / divisor) if divisor > 1 else x


def to_input_array(rgb: np.ndarray, input_size, mean, std, out: np.ndarray | None = None,
                   resize_policy: str = "area", channel_order: str = "RGB") -> np.ndarray:
    """RGB uint8 HxWx3 -> float32 CHW array at `input_size` (h, w), normalized with mean/std (RGB order,
    on 0..1 values), channels then in `channel_order`.

    `resize_policy` "area" resizes each axis to the input size (below); "letterbox" and "stretch" are
    the resizes of teachers' own pipelines (`teachers/letterbox.py`), whose weights expect those pixels.
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
    if resize_policy != "area":
        from ..teachers.letterbox import RESIZES

        rgb = RESIZES[resize_policy](rgb, w, h)[0]
    elif rgb.shape[:2] != (h, w):
        rgb = resize(rgb, (h, w))
    x = np.empty((3, h, w), np.float32) if out is None else out
    source = (2, 1, 0) if channel_order == "BGR" else (0, 1, 2)  # input channel i holds RGB channel source[i]
    if rgb.dtype == np.uint8:  # one table lookup per pixel: the same float32 operations, done on 0..255 once
        table = _normalization_table(tuple(map(float, mean)), tuple(map(float, std)))
        for i, c in enumerate(source):
            np.take(table[c], rgb[..., c], out=x[i], mode="clip")  # uint8 indices: always in range
        return x
    np.copyto(x, rgb.transpose(2, 0, 1)[list(source)])
    x /= np.float32(255.0)
    x -= np.asarray(mean, dtype=np.float32)[list(source), None, None]
    x /= np.asarray(std, dtype=np.float32)[list(source), None, None]
    return x


@lru_cache(maxsize=8)
def _normalization_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """3 x 256 float32: ((v / 255) - mean) / std of every 8-bit value v, per RGB channel, in float32 as the
    arithmetic path computes it."""
    v = np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0)
    return (v - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]


def model_input_array(rgb: np.ndarray, cfg, out: np.ndarray | None = None) -> np.ndarray:
    """A frame as the network input of a model config (its size, resize policy, normalization and
    channel order): the one place that decides what every runtime feeds the network."""
    return to_input_array(rgb, cfg.input_size, cfg.image_mean, cfg.image_std, out, cfg.resize, cfg.channel_order)


def to_input_tensor(rgb: np.ndarray, input_size, mean, std):
    """The same as a torch tensor (training, evaluation, the torch runtime)."""
    import torch

    return torch.from_numpy(to_input_array(rgb, input_size, mean, std))


def model_input_tensor(rgb: np.ndarray, cfg):
    """`model_input_array` as a 1x3xHxW torch tensor."""
    import torch

    return torch.from_numpy(model_input_array(rgb, cfg))[None]

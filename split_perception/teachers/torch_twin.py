"""ONNX graph -> differentiable torch module (a "twin") that computes the same outputs.

Teachers ship as inference-only ONNX graphs (tf2onnx from TF.js, or torch.onnx). Training a student
through a frozen teacher tail needs gradients, and re-exporting the teacher's front inside a bigger
torch module needs traceable torch ops; ONNX Runtime gives neither, so the graph is rebuilt in torch.

Conversion runs the graph once on zeros of its static input shapes (the probe). That gives every
value's exact shape and dtype, so shape-dependent subgraphs (Shape, Gather, Concat, ConstantOfShape,
Cast of fp16 initializers, ...) fold into constants at conversion and the twin holds no Shape op. Each
remaining node becomes a step: a plain torch function whose attributes, pads, axes, indices and
target shapes are Python values resolved at conversion, so `forward` has no data-dependent control
flow and traces. Constants that steps read become frozen float32 (or integer) buffers.

Reshape keeps the leading dimension symbolic when the graph keeps it, so a twin converted at batch 1
also runs larger batches, as training needs.
"""

from __future__ import annotations

import math
import re
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from torch import Tensor, nn

from ..errors import ModelGraphError

__all__ = ["TorchTwin", "twin_of", "SUPPORTED_OPS"]

# ONNX element types -> the torch dtype the twin uses; every floating type computes in float32.
_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 4: torch.int64, 5: torch.int16, 6: torch.int32,
           7: torch.int64, 9: torch.bool, 10: torch.float32, 11: torch.float32, 12: torch.int64,
           13: torch.int64, 16: torch.float32}


def _to_torch(array: np.ndarray) -> Tensor:
    """A numpy constant as a torch tensor in the twin's dtypes (floats as float32, unsigned wide ints as int64)."""
    if array.dtype.kind == "f" or array.dtype.name == "bfloat16":
        array = array.astype(np.float32)
    elif array.dtype.kind == "u" and array.dtype != np.uint8:
        array = array.astype(np.int64)
    elif array.dtype.kind not in "iub":
        raise ModelGraphError(f"constants of dtype {array.dtype} are not supported")
    return torch.from_numpy(np.array(array, copy=True, order="C"))


def _attribute(attr: onnx.AttributeProto):
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, onnx.TensorProto):
        return _to_torch(numpy_helper.to_array(value))
    return value


class _Node:
    """One ONNX node during conversion: its attributes, and its inputs' probe values.

    Builders read inputs that must be known at conversion through `static`/`ints`/`scalar` (which
    removes them from the step's runtime arguments) and shapes through `shape`; `aux` adds a
    constant runtime argument (such as gather indices) after the node's own tensor inputs.
    """

    def __init__(self, proto: onnx.NodeProto, opset: int, values: dict[str, Tensor], consts: set[str],
                 producers: dict[str, onnx.NodeProto]):
        self.proto, self.opset = proto, opset
        self.attrs = {a.name: _attribute(a) for a in proto.attribute}
        self.names = list(proto.input)
        self._values, self._consts, self._producers = values, consts, producers
        self.consumed: set[int] = set()
        self.aux: list[Tensor] = []

    def error(self, message: str) -> ModelGraphError:
        return ModelGraphError(f"{self.proto.op_type} node {self.proto.name!r}: {message}")

    def has(self, i: int) -> bool:
        return i < len(self.names) and self.names[i] != ""

    def shape(self, i: int) -> tuple[int, ...]:
        return tuple(self._values[self.names[i]].shape)

    def dtype(self, i: int) -> torch.dtype:
        return self._values[self.names[i]].dtype

    def static(self, i: int) -> Tensor | None:
        """Input i's constant value (None when omitted); it is then no runtime argument of the step."""
        if not self.has(i):
            return None
        self.consumed.add(i)
        if self.names[i] not in self._consts:
            raise self.error(f"input {i} ({self.names[i]!r}) must be constant-foldable at conversion")
        return self._values[self.names[i]]

    def ints(self, i: int, default=None) -> list[int] | None:
        value = self.static(i)
        return default if value is None else [int(v) for v in value.reshape(-1).tolist()]

    def scalar(self, i: int, default=None):
        value = self.static(i)
        return default if value is None or value.numel() == 0 else value.reshape(-1)[0].item()

    def axes(self, i: int, attr: str = "axes") -> list[int] | None:
        """Axes given as an input (newer opsets) or as an attribute (older ones)."""
        return self.ints(i) if self.has(i) else self.attrs.get(attr)

    def absorb_zero_pad(self, i: int) -> tuple[list[int], list[int]] | None:
        """When input i is made by a Pad that adds zeros around the spatial axes only (tf2onnx writes
        one before most convs), read the Pad's input instead and return its begin and end pads."""
        pad = self._producers.get(self.names[i])
        if pad is None or pad.op_type != "Pad":
            return None
        attrs = {a.name: _attribute(a) for a in pad.attribute}
        inputs = list(pad.input) + [""] * 3
        if attrs.get("mode", "constant") != "constant" or inputs[3]:
            return None
        if self.opset < 11:
            pads, value = list(attrs.get("pads", attrs.get("paddings"))), attrs.get("value", 0.0)
        elif inputs[1] in self._consts and (not inputs[2] or inputs[2] in self._consts):
            pads = self._values[inputs[1]].tolist()
            value = self._values[inputs[2]].reshape(-1)[0].item() if inputs[2] else 0
        else:
            return None
        rank = len(pads) // 2
        if value != 0 or min(pads) < 0 or any(pads[:2] + pads[rank:rank + 2]):
            return None
        self.names[i] = inputs[0]
        return pads[2:rank], pads[rank + 2:]

    def args(self) -> list[str]:
        return [n for i, n in enumerate(self.names) if n != "" and i not in self.consumed]


def _norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _torch_pads(begin: Sequence[int], end: Sequence[int]) -> list[int]:
    """ONNX begin/end pads of the trailing axes -> F.pad's order (last axis first)."""
    out: list[int] = []
    for b, e in zip(reversed(begin), reversed(end)):
        out += [int(b), int(e)]
    return out


def _auto_pads(n: _Node, spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
               dilations: Sequence[int]) -> tuple[list[int], list[int]]:
    """Begin and end pads of the spatial axes from `pads` or `auto_pad` (SAME_UPPER/SAME_LOWER/VALID)."""
    rank = len(spatial)
    mode = n.attrs.get("auto_pad", "NOTSET")
    if mode == "NOTSET":
        pads = list(n.attrs.get("pads", [0] * 2 * rank))
        return pads[:rank], pads[rank:]
    if mode == "VALID":
        return [0] * rank, [0] * rank
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        raise n.error(f"auto_pad {mode!r} is not supported")
    begin, end = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begin.append(small if mode == "SAME_UPPER" else big)
        end.append(big if mode == "SAME_UPPER" else small)
    return begin, end


def _geometry(n: _Node, spatial: Sequence[int], kernel: Sequence[int]):
    rank = len(spatial)
    strides = list(n.attrs.get("strides", [1] * rank))
    dilations = list(n.attrs.get("dilations", [1] * rank))
    begin, end = _auto_pads(n, spatial, kernel, strides, dilations)
    return strides, dilations, begin, end


# --- convolution and pooling -------------------------------------------------------------------

def _conv(n: _Node):
    x_shape, w_shape = n.shape(0), n.shape(1)
    rank = len(w_shape) - 2
    conv = (F.conv1d, F.conv2d, F.conv3d)[rank - 1]
    kernel = n.attrs.get("kernel_shape", w_shape[2:])
    strides, dilations, begin, end = _geometry(n, x_shape[2:], kernel)
    absorbed = n.absorb_zero_pad(0)
    if absorbed:
        begin = [b + a for b, a in zip(begin, absorbed[0])]
        end = [e + a for e, a in zip(end, absorbed[1])]
    group = n.attrs.get("group", 1)
    if begin == end:
        return lambda x, w, b=None: conv(x, w, b, strides, begin, dilations, group)
    pads = _torch_pads(begin, end)
    return lambda x, w, b=None: conv(F.pad(x, pads), w, b, strides, 0, dilations, group)


def _conv_transpose(n: _Node):
    x_shape, w_shape = n.shape(0), n.shape(1)
    rank = len(w_shape) - 2
    if "output_shape" in n.attrs or n.attrs.get("auto_pad", "NOTSET") != "NOTSET":
        raise n.error("output_shape and auto_pad are not supported")
    conv = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[rank - 1]
    strides, dilations, begin, end = _geometry(n, x_shape[2:], n.attrs.get("kernel_shape", w_shape[2:]))
    extra = list(n.attrs.get("output_padding", [0] * rank))
    group = n.attrs.get("group", 1)
    if begin == end:
        return lambda x, w, b=None: conv(x, w, b, strides, begin, extra, group, dilations)
    crop = (slice(None), slice(None)) + tuple(slice(b, -e if e else None) for b, e in zip(begin, end))
    return lambda x, w, b=None: conv(x, w, b, strides, 0, extra, group, dilations)[crop]


def _pool_pads(n: _Node, x_shape: Sequence[int]):
    """Kernel, strides, dilations, explicit pads and the extra end pads that make ceil_mode's last
    windows fit, with ONNX Runtime's output size (a window must start inside the input or its
    begin pad), so a floor-mode torch pool over the padded input gives ORT's windows."""
    kernel = list(n.attrs["kernel_shape"])
    spatial = x_shape[2:]
    strides, dilations, begin, end = _geometry(n, spatial, kernel)
    extra = []
    for size, k, s, d, b, e in zip(spatial, kernel, strides, dilations, begin, end):
        span = size + b + e - ((k - 1) * d + 1)
        out = span // s + 1
        if n.attrs.get("ceil_mode", 0):
            out = -(-span // s) + 1
            if (out - 1) * s >= size + b:
                out -= 1
        extra.append(max((out - 1) * s + (k - 1) * d + 1 - (size + b + e), 0))
    return kernel, strides, dilations, begin, end, extra


def _max_pool(n: _Node):
    if len([o for o in n.proto.output if o]) > 1:
        raise n.error("the Indices output is not supported")
    x_shape = n.shape(0)
    pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[len(x_shape) - 3]
    kernel, strides, dilations, begin, end, extra = _pool_pads(n, x_shape)
    pads = _torch_pads(begin, [e + x for e, x in zip(end, extra)])
    if not any(pads):
        return lambda x: pool(x, kernel, strides, 0, dilations)
    return lambda x: pool(F.pad(x, pads, value=-math.inf), kernel, strides, 0, dilations)


def _average_pool(n: _Node):
    x_shape = n.shape(0)
    pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[len(x_shape) - 3]
    kernel, strides, dilations, begin, end, extra = _pool_pads(n, x_shape)
    if any(d != 1 for d in dilations):
        raise n.error("dilated average pooling is not supported")
    explicit = _torch_pads(begin, end)
    overhang = _torch_pads([0] * len(extra), extra)
    if not any(explicit + overhang):
        return lambda x: pool(x, kernel, strides)
    include = float(n.attrs.get("count_include_pad", 0))

    def average_pool(x: Tensor) -> Tensor:
        # Sum over each window divided by the count ONNX divides by: real elements, plus the explicit
        # pads when count_include_pad; never the ceil-mode overhang.
        total = pool(F.pad(F.pad(x, explicit), overhang), kernel, strides)
        count = F.pad(F.pad(torch.ones_like(x[:, :1]), explicit, value=include), overhang)
        return total / pool(count, kernel, strides)
    return average_pool


def _global_pool(reduce: Callable):
    def build(n: _Node):
        dims = list(range(2, len(n.shape(0))))
        return lambda x: reduce(x, dim=dims, keepdim=True)
    return build


# --- resizing ----------------------------------------------------------------------------------

def _source_coords(mode: str, out_len: int, in_len: int, scale: float) -> np.ndarray:
    """Each output position's source coordinate, in float32 and in ONNX Runtime's operation order."""
    x = np.arange(out_len, dtype=np.float32)
    s, half = np.float32(scale), np.float32(0.5)
    if mode == "half_pixel":
        return (x + half) / s - half
    if mode == "pytorch_half_pixel":
        return (x + half) / s - half if out_len > 1 else np.zeros_like(x)
    if mode == "align_corners":
        return np.zeros_like(x) if out_len == 1 else x * np.float32(in_len - 1) / np.float32(out_len - 1)
    if mode == "asymmetric":
        return x / s
    if mode == "tf_half_pixel_for_nn":
        return (x + half) / s
    if mode == "half_pixel_symmetric":
        adjust = np.float32(out_len) / (s * np.float32(in_len))
        offset = np.float32(in_len) / np.float32(2) * (np.float32(1) - adjust)
        return offset + (x + half) / s - half
    raise ModelGraphError(f"Resize coordinate_transformation_mode {mode!r} is not supported")


def _nearest(mode: str, coords: np.ndarray, downsampling: bool) -> np.ndarray:
    """Source pixel of each coordinate. As ONNX Runtime does, a coordinate within 1e-6 of a .5 tie
    counts as a tie, so float32 rounding of the coordinate does not decide which way it goes."""
    if mode in ("round_prefer_floor", "round_prefer_ceil"):
        low = np.floor(coords)
        fraction = coords - low
        tie = np.abs(fraction - np.float32(0.5)) <= 1e-6
        return np.where(tie, low + (mode == "round_prefer_ceil"), low + (fraction > 0.5))
    if mode == "floor":
        return np.floor(coords)
    if mode == "ceil":
        return np.ceil(coords)
    if mode == "simple":  # Upsample and Resize-10
        return np.ceil(coords) if downsampling else np.trunc(coords)
    raise ModelGraphError(f"Resize nearest_mode {mode!r} is not supported")


def _bilinear(resized: dict[int, tuple[int, int, float]], x_shape: Sequence[int], coords: str):
    """F.interpolate where it computes ORT's linear resize of NCHW (faster, and one Resize op when
    re-exported): only H and W resized, a coordinate mode torch has, and torch's output size equal to
    ORT's. Torch maps output to input positions with 1/scale, ORT divides by the scale: that changes
    weights by float rounding only, and linear interpolation is continuous in them."""
    if any(resized[a][2] != 1.0 for a in (0, 1) if a in resized):
        return None
    if coords not in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        return None
    (h_in, h_out, h_scale), (w_in, w_out, w_scale) = (resized.get(a, (x_shape[a], x_shape[a], 1.0)) for a in (2, 3))
    if coords == "pytorch_half_pixel" and min(h_out, w_out) == 1:
        return None
    if (math.floor(h_in * h_scale), math.floor(w_in * w_scale)) != (h_out, w_out):
        return None
    factors, align = (h_scale, w_scale), coords == "align_corners"
    return lambda x: F.interpolate(x, scale_factor=factors, mode="bilinear", align_corners=align,
                                   recompute_scale_factor=False)


def _resize_fn(n: _Node, scales: list[float] | None, sizes: list[int] | None, mode: str, coords: str,
               nearest: str):
    """Resize as gathers along each resized axis (with constant indices) and, for linear, a blend.

    Linear interpolation is separable, so one axis at a time gives ORT's result; the indices and
    weights are computed here with ORT's float32 formulas, which makes every coordinate mode exact.
    Bilinear resizes that torch computes alike use F.interpolate instead.
    """
    x_shape = n.shape(0)
    rank = len(x_shape)
    axes = [_norm_axis(a, rank) for a in n.attrs.get("axes", range(rank))]
    if mode not in ("nearest", "linear", "bilinear"):
        raise n.error(f"mode {mode!r} is not supported")
    if n.attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch" or n.attrs.get("antialias", 0):
        raise n.error("keep_aspect_ratio_policy and antialias are not supported")
    resized = []
    for j, axis in enumerate(axes):
        in_len = x_shape[axis]
        if sizes is not None:
            scale = float(np.float32(sizes[j]) / np.float32(in_len))
            resized.append((axis, in_len, sizes[j], scale))
        else:
            scale = float(np.float32(scales[j]))
            resized.append((axis, in_len, int(np.float32(scale) * np.float32(in_len)), scale))
    if all(in_len == out_len for _, in_len, out_len, _ in resized):
        return lambda x: x  # ORT copies the input whenever the shape does not change, whatever the scales
    if mode != "nearest" and rank == 4:
        bilinear = _bilinear({axis: (in_len, out_len, scale) for axis, in_len, out_len, scale in resized}, x_shape,
                             coords)
        if bilinear:
            return bilinear
    plan = []
    for axis, in_len, out_len, scale in resized:
        if scale == 1.0:
            continue
        src = _source_coords(coords, out_len, in_len, scale)
        if mode == "nearest":
            index = np.clip(_nearest(nearest, src, scale < 1.0), 0, in_len - 1).astype(np.int64)
            n.aux.append(torch.from_numpy(index))
            plan.append((axis, False))
            continue
        src = np.clip(src, np.float32(0), np.float32(in_len - 1))
        low = np.minimum(src.astype(np.int64), in_len - 1)
        high = np.minimum(low + 1, in_len - 1)
        weight = (src - low.astype(np.float32)).reshape((out_len,) + (1,) * (rank - axis - 1))
        n.aux += [torch.from_numpy(low), torch.from_numpy(high), torch.from_numpy(weight.astype(np.float32))]
        plan.append((axis, True))

    def resize(x: Tensor, *aux: Tensor) -> Tensor:
        constants = iter(aux)
        for axis, linear in plan:
            if linear:
                a = x.index_select(axis, next(constants))
                b = x.index_select(axis, next(constants))
                x = a + (b - a) * next(constants)
            else:
                x = x.index_select(axis, next(constants))
        return x
    return resize


def _resize(n: _Node):
    mode = n.attrs.get("mode", "nearest")
    if n.opset < 11:
        return _resize_fn(n, [float(v) for v in n.static(1).tolist()], None, mode, "asymmetric", "simple")
    n.static(1)  # roi: only tf_crop_and_resize reads it, and that mode is refused
    scales = n.static(2)
    sizes = n.ints(3)
    scales = None if scales is None or scales.numel() == 0 else [float(v) for v in scales.tolist()]
    return _resize_fn(n, scales, sizes, mode, n.attrs.get("coordinate_transformation_mode", "half_pixel"),
                      n.attrs.get("nearest_mode", "round_prefer_floor"))


def _upsample(n: _Node):
    scales = n.attrs["scales"] if "scales" in n.attrs else [float(v) for v in n.static(1).tolist()]
    return _resize_fn(n, scales, None, n.attrs.get("mode", "nearest"), "asymmetric", "simple")


# --- shapes and indexing -----------------------------------------------------------------------

def _reshape(n: _Node):
    """Reshape to the target resolved at conversion; the leading (batch) dimension follows the
    input's when the graph keeps it, so a twin converted at batch 1 reshapes any batch."""
    in_shape = n.shape(0)
    target = n.ints(1) if n.opset >= 5 else list(n.attrs["shape"])
    if not n.attrs.get("allowzero", 0):
        target = [in_shape[i] if t == 0 else t for i, t in enumerate(target)]
    inferred = target.index(-1) if -1 in target else None
    if inferred is not None:
        known = math.prod(t for t in target if t != -1)
        target[inferred] = math.prod(in_shape) // known if known else 0
    if bool(in_shape and target) and in_shape[0] == target[0] and math.prod(target[1:]) > 0:
        target[0] = -1
    elif inferred is not None:
        target[inferred] = -1
    return lambda x: x.reshape(target)


def _flatten(n: _Node):
    rank = len(n.shape(0))
    axis = _norm_axis(n.attrs.get("axis", 1), rank)
    if axis == 0:
        return lambda x: x.reshape(1, -1)
    if axis == rank:
        return lambda x: x.reshape(-1, 1)
    return lambda x: torch.flatten(torch.flatten(x, axis), 0, axis - 1)


def _squeeze(n: _Node):
    shape = n.shape(0)
    axes = n.axes(1)
    axes = [i for i, d in enumerate(shape) if d == 1] if axes is None else [_norm_axis(a, len(shape)) for a in axes]
    axes = sorted(axes, reverse=True)

    def squeeze(x: Tensor) -> Tensor:
        for axis in axes:
            x = x.squeeze(axis)
        return x
    return squeeze


def _unsqueeze(n: _Node):
    axes = n.axes(1)
    out_rank = len(n.shape(0)) + len(axes)
    axes = sorted(_norm_axis(a, out_rank) for a in axes)

    def unsqueeze(x: Tensor) -> Tensor:
        for axis in axes:
            x = x.unsqueeze(axis)
        return x
    return unsqueeze


def _slice(n: _Node):
    shape = n.shape(0)
    rank = len(shape)
    if n.opset < 10:
        starts, ends = n.attrs["starts"], n.attrs["ends"]
        axes, steps = n.attrs.get("axes", list(range(len(starts)))), [1] * len(starts)
    else:
        starts, ends = n.ints(1), n.ints(2)
        axes = n.ints(3, list(range(len(starts))))
        steps = n.ints(4, [1] * len(starts))
    index: list[slice] = [slice(None)] * rank
    flips = []
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis, dim = _norm_axis(axis, rank), shape[_norm_axis(axis, rank)]
        start = start + dim if start < 0 else start
        end = end + dim if end < 0 else end
        if step > 0:
            start, end = min(max(start, 0), dim), min(max(end, 0), dim)
            index[axis] = slice(start or None, None if end == dim else end, step if step != 1 else None)
        else:  # walk the flipped axis forwards: torch slices need positive steps
            start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
            flips.append(axis)
            index[axis] = slice(dim - 1 - start, None if end == -1 else dim - 1 - end, -step)
    key = tuple(index)
    if flips:
        return lambda x: x.flip(flips)[key]
    return lambda x: x[key]


def _split(n: _Node):
    shape = n.shape(0)
    axis = _norm_axis(n.attrs.get("axis", 0), len(shape))
    sizes = n.ints(1) if n.has(1) else n.attrs.get("split")
    if sizes is None:
        parts = n.attrs.get("num_outputs", len(n.proto.output))
        chunk = -(-shape[axis] // parts)
        sizes = [min(chunk, shape[axis] - i * chunk) for i in range(parts)]
    return lambda x: torch.split(x, sizes, axis)


def _gather(n: _Node):
    shape = n.shape(0)
    axis = _norm_axis(n.attrs.get("axis", 0), len(shape))
    indices = n.static(1)
    indices = torch.where(indices < 0, indices + shape[axis], indices).to(torch.int64)
    if indices.dim() == 0:
        position = int(indices)
        return lambda x: x.select(axis, position)
    n.aux.append(indices.reshape(-1))
    index_shape = tuple(indices.shape)
    return lambda x, i: x.index_select(axis, i).unflatten(axis, index_shape)


def _shape(n: _Node):
    n.consumed.add(0)
    start, end = n.attrs.get("start", 0), n.attrs.get("end")
    shape = list(n.shape(0))[start:end]
    return lambda: torch.tensor(shape, dtype=torch.int64)


def _size(n: _Node):
    n.consumed.add(0)
    count = math.prod(n.shape(0))
    return lambda: torch.tensor(count, dtype=torch.int64)


def _constant(n: _Node):
    (name, value), = n.attrs.items()
    if name == "value":
        return lambda: value
    if name in ("value_float", "value_int"):
        return lambda: torch.tensor(value, dtype=torch.float32 if name == "value_float" else torch.int64)
    if name in ("value_floats", "value_ints"):
        return lambda: torch.tensor(list(value), dtype=torch.float32 if name == "value_floats" else torch.int64)
    raise n.error(f"attribute {name!r} is not supported")


def _constant_of_shape(n: _Node):
    shape = n.ints(0)
    value = n.attrs.get("value", torch.zeros(1, dtype=torch.float32))
    return lambda: torch.full(shape, value.reshape(-1)[0].item(), dtype=value.dtype)


def _expand(n: _Node):
    shape = list(np.broadcast_shapes(n.shape(0), tuple(n.ints(1))))
    return lambda x: x.expand(shape)


def _tile(n: _Node):
    repeats = n.ints(1)
    return lambda x: x.repeat(repeats)


def _range(n: _Node):
    start, limit, delta = n.static(0), n.static(1), n.static(2)
    return lambda: torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)


def _pad(n: _Node):
    rank = len(n.shape(0))
    if n.opset < 11:
        pads, value = list(n.attrs.get("pads", n.attrs.get("paddings"))), n.attrs.get("value", 0.0)
    else:
        pads, value = n.ints(1), n.scalar(2, 0)
    axes = [_norm_axis(a, rank) for a in (n.ints(3) if n.has(3) else range(rank))]
    begin, end = [0] * rank, [0] * rank
    for j, axis in enumerate(axes):
        begin[axis], end[axis] = pads[j], pads[j + len(axes)]
    mode = n.attrs.get("mode", "constant")
    first = next((i for i in range(rank) if begin[i] or end[i]), rank)
    torch_pads = _torch_pads(begin[first:], end[first:])
    if not torch_pads:
        return lambda x: x
    if mode == "constant":
        return lambda x: F.pad(x, torch_pads, value=value)
    if mode not in ("reflect", "edge", "wrap") or rank - first > 3 or first < rank - 3 or rank < 2:
        raise n.error(f"mode {mode!r} on these axes is not supported")
    torch_mode = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode]
    return lambda x: F.pad(x, torch_pads, mode=torch_mode)


def _transpose(n: _Node):
    perm = list(n.attrs.get("perm", range(len(n.shape(0)) - 1, -1, -1)))
    return lambda x: x.permute(perm)


def _concat(n: _Node):
    axis = n.attrs["axis"]
    return lambda *xs: torch.cat(xs, axis)


def _cast(n: _Node):
    dtype = _DTYPES.get(n.attrs["to"])
    if dtype is None:
        raise n.error(f"cast to ONNX type {n.attrs['to']} is not supported")
    return lambda x: x.to(dtype)


def _cast_like(n: _Node):
    dtype = n.dtype(1)
    n.consumed.add(1)
    return lambda x: x.to(dtype)


# --- arithmetic ----------------------------------------------------------------------------------

def _simple(fn: Callable):
    return lambda n: fn


def _hard_sigmoid(n: _Node):
    alpha, beta = n.attrs.get("alpha", 0.2), n.attrs.get("beta", 0.5)
    return lambda x: torch.clamp(x * alpha + beta, 0, 1)


def _div(n: _Node):
    if n.dtype(0).is_floating_point:
        return torch.div
    return lambda a, b: torch.div(a, b, rounding_mode="trunc")


def _variadic(fn: Callable):
    def reduce(*xs: Tensor) -> Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = fn(out, x)
        return out
    return _simple(reduce)


def _clip(n: _Node):
    if n.opset < 11:
        low, high = n.attrs.get("min"), n.attrs.get("max")
    else:
        low, high = n.scalar(1), n.scalar(2)
    if low is None and high is None:
        return lambda x: x
    return lambda x: torch.clamp(x, low, high)


def _softmax(fn: Callable):
    def build(n: _Node):
        rank = len(n.shape(0))
        axis = _norm_axis(n.attrs.get("axis", -1 if n.opset >= 13 else 1), rank)
        if n.opset >= 13 or axis == rank - 1:
            return lambda x: fn(x, axis)
        return lambda x: fn(torch.flatten(x, axis), axis).view_as(x)  # older opsets: over all axes >= axis
    return build


def _reduce(fn: Callable):
    def build(n: _Node):
        rank = len(n.shape(0))
        axes = n.axes(1)
        keep = bool(n.attrs.get("keepdims", 1))
        if not axes:
            if n.attrs.get("noop_with_empty_axes", 0):
                return lambda x: x
            axes = range(rank)
        dims = sorted(_norm_axis(a, rank) for a in axes)
        return lambda x: fn(x, dim=dims, keepdim=keep)
    return build


def _gemm(n: _Node):
    alpha, beta = n.attrs.get("alpha", 1.0), n.attrs.get("beta", 1.0)
    trans_a, trans_b = n.attrs.get("transA", 0), n.attrs.get("transB", 0)

    def gemm(a: Tensor, b: Tensor, c: Tensor | None = None) -> Tensor:
        y = (a.t() if trans_a else a) @ (b.t() if trans_b else b)
        if alpha != 1.0:
            y = y * alpha
        if c is not None:
            y = y + (c * beta if beta != 1.0 else c)
        return y
    return gemm


def _batch_norm(n: _Node):
    if n.attrs.get("training_mode", 0) or len([o for o in n.proto.output if o]) > 1:
        raise n.error("training mode is not supported")
    eps = n.attrs.get("epsilon", 1e-5)
    return lambda x, scale, bias, mean, var: F.batch_norm(x, mean, var, scale, bias, False, 0.0, eps)


def _instance_norm(n: _Node):
    eps = n.attrs.get("epsilon", 1e-5)
    return lambda x, scale, bias: F.instance_norm(x, weight=scale, bias=bias, eps=eps)


def _layer_norm(n: _Node):
    if len([o for o in n.proto.output if o]) > 1:
        raise n.error("the Mean and InvStdDev outputs are not supported")
    shape = n.shape(0)
    normalized = shape[_norm_axis(n.attrs.get("axis", -1), len(shape)):]
    eps = n.attrs.get("epsilon", 1e-5)
    return lambda x, scale, bias=None: F.layer_norm(x, normalized, scale.expand(normalized),
                                                    None if bias is None else bias.expand(normalized), eps)


def _dropout(n: _Node):
    n.static(1), n.static(2)  # ratio and training_mode: inference ignores them
    if len([o for o in n.proto.output if o]) > 1:
        raise n.error("the mask output is not supported")
    return lambda x: x


_OPS: dict[str, Callable[[_Node], Callable]] = {
    "Conv": _conv, "ConvTranspose": _conv_transpose,
    "MaxPool": _max_pool, "AveragePool": _average_pool,
    "GlobalAveragePool": _global_pool(torch.mean), "GlobalMaxPool": _global_pool(torch.amax),
    "Resize": _resize, "Upsample": _upsample,
    "Relu": _simple(F.relu), "Sigmoid": _simple(torch.sigmoid), "Tanh": _simple(torch.tanh),
    "LeakyRelu": lambda n: partial(F.leaky_relu, negative_slope=n.attrs.get("alpha", 0.01)),
    "Elu": lambda n: partial(F.elu, alpha=n.attrs.get("alpha", 1.0)),
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": _simple(F.hardswish), "Softplus": _simple(F.softplus),
    "PRelu": _simple(lambda x, slope: torch.where(x < 0, x * slope, x)),
    "Exp": _simple(torch.exp), "Log": _simple(torch.log), "Sqrt": _simple(torch.sqrt), "Erf": _simple(torch.erf),
    "Neg": _simple(torch.neg), "Abs": _simple(torch.abs), "Reciprocal": _simple(torch.reciprocal),
    "Floor": _simple(torch.floor), "Ceil": _simple(torch.ceil),
    "Add": _simple(torch.add), "Sub": _simple(torch.sub), "Mul": _simple(torch.mul), "Div": _div,
    "Pow": _simple(torch.pow), "Max": _variadic(torch.maximum), "Min": _variadic(torch.minimum),
    "Sum": _variadic(torch.add),
    "Equal": _simple(torch.eq), "Less": _simple(torch.lt), "Greater": _simple(torch.gt),
    "LessOrEqual": _simple(torch.le), "GreaterOrEqual": _simple(torch.ge), "Not": _simple(torch.logical_not),
    "And": _simple(torch.logical_and), "Or": _simple(torch.logical_or), "Where": _simple(torch.where),
    "Clip": _clip, "Softmax": _softmax(torch.softmax), "LogSoftmax": _softmax(torch.log_softmax),
    "MatMul": _simple(torch.matmul), "Gemm": _gemm,
    "BatchNormalization": _batch_norm, "InstanceNormalization": _instance_norm,
    "LayerNormalization": _layer_norm,
    "ReduceMean": _reduce(torch.mean), "ReduceSum": _reduce(torch.sum),
    "ReduceMax": _reduce(torch.amax), "ReduceMin": _reduce(torch.amin),
    "Reshape": _reshape, "Flatten": _flatten, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze,
    "Transpose": _transpose, "Concat": _concat, "Slice": _slice, "Split": _split, "Gather": _gather,
    "Expand": _expand, "Tile": _tile, "Pad": _pad,
    "Shape": _shape, "Size": _size, "Constant": _constant, "ConstantOfShape": _constant_of_shape,
    "Range": _range, "Cast": _cast, "CastLike": _cast_like,
    "Identity": _simple(lambda x: x), "Dropout": _dropout,
}
SUPPORTED_OPS = frozenset(_OPS)


# --- the module ----------------------------------------------------------------------------------

class _Step:
    """One runtime node: its function, the values it reads and writes, and the values it is the last to read."""

    __slots__ = ("fn", "args", "outputs", "drop")

    def __init__(self, fn: Callable, args: list[str], outputs: list[str]):
        self.fn, self.args, self.outputs, self.drop = fn, args, outputs, []


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _probe_input(value: onnx.ValueInfoProto, shapes: dict[str, Sequence[int]]) -> Tensor:
    tensor_type = value.type.tensor_type
    dtype = _DTYPES.get(tensor_type.elem_type)
    if dtype is None:
        raise ModelGraphError(f"graph input {value.name!r} has unsupported type {tensor_type.elem_type}")
    shape = shapes.get(value.name) or [d.dim_value if d.dim_value > 0 else 1 for d in tensor_type.shape.dim]
    return torch.zeros(tuple(shape), dtype=dtype)


class TorchTwin(nn.Module):
    """A torch module that computes an ONNX graph's outputs, differentiably and traceably.

    `forward(*inputs)` takes the graph inputs in order (`input_names`) and returns a tuple of its
    outputs in order (`output_names`). The graph's constants are frozen buffers; gradients flow to
    the inputs. Shapes are those of the graph's static input shapes; `input_shapes` (name -> shape)
    fixes symbolic dimensions, which are otherwise taken as 1.

    `outputs` and `inputs` name other values of the graph to cut it at: outputs=[split] gives the
    front up to a split tensor, inputs=[split] the tail from it (which must not read the graph
    inputs past the cut).
    """

    def __init__(self, model: onnx.ModelProto, input_shapes: dict[str, Sequence[int]] | None = None,
                 inputs: Sequence[str] | None = None, outputs: Sequence[str] | None = None):
        super().__init__()
        graph = model.graph
        opset = _opset(model)
        values: dict[str, Tensor] = {t.name: _to_torch(numpy_helper.to_array(t)) for t in graph.initializer}
        consts = set(values)
        graph_inputs = [v.name for v in graph.input if v.name not in consts]
        self.input_names = list(inputs or graph_inputs)
        self.output_names = list(outputs or (v.name for v in graph.output))
        values.update({v.name: _probe_input(v, input_shapes or {}) for v in graph.input if v.name not in consts})
        steps: list[_Step] = []
        producers: dict[str, onnx.NodeProto] = {}
        with torch.no_grad():
            for proto in graph.node:
                made = self._convert(proto, opset, values, consts, producers)
                producers.update((name, proto) for step in made for name in step.outputs)
                steps += made
        unknown = [name for name in self.input_names + self.output_names if name not in values]
        constant = [name for name in self.input_names if name in consts]
        if unknown or constant:
            raise ModelGraphError(f"no such values in the graph: {unknown}; constants, not inputs: {constant}")
        self._bind(self._live(steps, consts), values, consts)

    @staticmethod
    def _convert(proto: onnx.NodeProto, opset: int, values: dict[str, Tensor], consts: set[str],
                 producers: dict[str, onnx.NodeProto]) -> list[_Step]:
        """Build a node's step and run it on the probe; a node whose arguments are all constant folds."""
        build = _OPS.get(proto.op_type) if proto.domain in ("", "ai.onnx") else None
        if build is None:
            domain = f"{proto.domain}::" if proto.domain else ""
            raise ModelGraphError(f"unsupported ONNX op {domain}{proto.op_type} (node {proto.name!r})")
        missing = [name for name in proto.input if name and name not in values]
        if missing:
            raise ModelGraphError(f"{proto.op_type} node {proto.name!r} reads {missing}, which no earlier node makes")
        node = _Node(proto, opset, values, consts, producers)
        fn = build(node)
        args = node.args()
        aux_names = []
        for i, tensor in enumerate(node.aux):
            name = f"{proto.name or proto.op_type}/aux{i}"
            while name in values:
                name += "_"
            aux_names.append(name)
            values[name] = tensor
        consts.update(aux_names)
        result = fn(*(values[a] for a in args + aux_names))
        result = list(result) if isinstance(result, (tuple, list)) else [result]
        outputs = list(proto.output)
        if len([o for o in outputs if o]) > len(result):
            raise node.error(f"only the first {len(result)} output(s) are supported")
        values.update((name, value) for name, value in zip(outputs, result) if name)
        if all(a in consts for a in args):
            consts.update(name for name in outputs if name)
            return []
        return [_Step(fn, args + aux_names, outputs[:len(result)])]

    def _live(self, steps: list[_Step], consts: set[str]) -> list[_Step]:
        """The steps from the inputs to the outputs, each noting the values it is the last to read
        (freed after it)."""
        read_later = set(self.output_names)
        to_make = read_later - set(self.input_names)
        kept = []
        for step in reversed(steps):
            if to_make.intersection(step.outputs):
                to_make.difference_update(step.outputs)
                step.drop = [a for a in dict.fromkeys(step.args) if a not in read_later]
                read_later.update(step.args)
                to_make.update(a for a in step.args if a not in self.input_names)
                kept.append(step)
        missing = sorted(to_make - consts)
        if missing:
            raise ModelGraphError(f"the outputs also need {missing}, which are not among the inputs {self.input_names}")
        return kept[::-1]

    def _bind(self, steps: list[_Step], values: dict[str, Tensor], consts: set[str]) -> None:
        """Register the constants that steps or outputs read as frozen buffers under sanitized names."""
        self._steps = steps
        self._buffer_of: dict[str, str] = {}
        read = [a for step in steps for a in step.args] + self.output_names
        for name in dict.fromkeys(read):
            if name in consts:
                stem = "c_" + re.sub(r"\W", "_", name)
                buffer, suffix = stem, 0
                while hasattr(self, buffer):
                    suffix += 1
                    buffer = f"{stem}_{suffix}"
                self.register_buffer(buffer, values[name].clone())
                self._buffer_of[name] = buffer

    def extra_repr(self) -> str:
        return f"inputs={self.input_names}, outputs={self.output_names}, steps={len(self._steps)}"

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        if len(inputs) != len(self.input_names):
            raise ModelGraphError(f"the twin takes {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}")
        env = {name: getattr(self, buffer) for name, buffer in self._buffer_of.items()}
        env.update(zip(self.input_names, inputs))
        for step in self._steps:
            result = step.fn(*(env[a] for a in step.args))
            if isinstance(result, (tuple, list)):
                env.update((name, value) for name, value in zip(step.outputs, result) if name)
            else:
                env[step.outputs[0]] = result
            for name in step.drop:
                del env[name]
        return tuple(env[name] for name in self.output_names)


def twin_of(path_or_model: str | Path | onnx.ModelProto, **kwargs) -> TorchTwin:
    """The twin of an ONNX file or model, in eval mode (see TorchTwin for kwargs)."""
    model = path_or_model if isinstance(path_or_model, onnx.ModelProto) else onnx.load(str(path_or_model))
    return TorchTwin(model, **kwargs).eval()

"""TorchTwin: parity with ONNX Runtime, gradients to the input, and a torch.onnx re-export that ORT runs.

Graphs come from torch.onnx.export of small modules (the usual torch export ops) and from
onnx.helper (the patterns tf2onnx writes: NHWC transposes around convs, fp16 initializers behind
Cast, Resize with a scales input, Pad nodes, SAME-padded pools).
"""

from __future__ import annotations

import io
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from split_perception.errors import ModelGraphError
from split_perception.teachers.torch_twin import SUPPORTED_OPS, TorchTwin, twin_of

ATOL = 1e-4
NANODET = Path(__file__).resolve().parents[1] / "split_perception/assets/teachers/nanodet_g/model.onnx"


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _export(module: nn.Module, *inputs: torch.Tensor, **kwargs) -> onnx.ModelProto:
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), inputs, f, dynamo=False, opset_version=17,
                          input_names=[f"x{i}" for i in range(len(inputs))], **kwargs)
    return onnx.load_from_string(f.getvalue())


def _max_diff(ours, reference) -> float:
    return max(float(np.abs(a.detach().numpy() - b).max()) for a, b in zip(ours, reference))


def check(model: onnx.ModelProto, *inputs: torch.Tensor) -> TorchTwin:
    """Twin parity with ORT, a non-zero input gradient, and the re-export's parity."""
    twin = TorchTwin(model)
    feed = {name: x.numpy() for name, x in zip(twin.input_names, inputs)}
    reference = _session(model).run(None, feed)
    xs = [x.clone().requires_grad_() for x in inputs]
    out = twin(*xs)
    assert len(out) == len(reference) == len(twin.output_names)
    assert [tuple(o.shape) for o in out] == [r.shape for r in reference]
    assert _max_diff(out, reference) < ATOL
    torch.manual_seed(1)  # a random weighting: sum(softmax) would have no gradient
    sum((o * torch.randn_like(o)).sum() for o in out).backward()
    assert xs[0].grad is not None and xs[0].grad.abs().sum() > 0
    assert not list(twin.parameters()) and not any(b.requires_grad for b in twin.buffers())
    assert all(b.dtype != torch.float16 for b in twin.buffers())
    again = _export(twin, *inputs)
    assert _max_diff(out, _session(again).run(None, {f"x{i}": x.numpy() for i, x in enumerate(inputs)})) < ATOL
    return twin


# --- graphs from torch.onnx.export ---------------------------------------------------------------

class Convs(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(4)  # first, so the exporter keeps it (it folds BN into a preceding conv)
        self.grouped = nn.Conv2d(4, 8, 3, padding=1, groups=2)
        self.dilated = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8, bias=False)
        self.pad = nn.ZeroPad2d((1, 0, 2, 1))
        self.strided = nn.Conv2d(8, 6, 3, stride=2)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)
            self.bn.weight.uniform_(0.5, 2)
            self.bn.bias.uniform_(-1, 1)

    def forward(self, x):
        x = F.leaky_relu(self.grouped(self.bn(x)), 0.1)
        x = F.relu6(self.dilated(x))
        return torch.sigmoid(self.strided(self.pad(x)))


class Pools(nn.Module):
    def forward(self, x):
        # padding 1 with kernel 2: ceil mode's last window would start in the end pad, and is dropped
        return (F.max_pool2d(x, 3, 2, padding=1, ceil_mode=True), F.max_pool2d(x, 2, 2, ceil_mode=True),
                F.max_pool2d(x, 2, 2, padding=1, ceil_mode=True),
                F.avg_pool2d(x, 2, 2, padding=1, ceil_mode=True, count_include_pad=True),
                F.avg_pool2d(x, 3, 2, padding=1, ceil_mode=True, count_include_pad=False),
                F.avg_pool2d(x, 3, 2, padding=1, count_include_pad=True), F.adaptive_avg_pool2d(x, 1))


class Resizes(nn.Module):
    def forward(self, x):
        return (F.interpolate(x, scale_factor=2, mode="nearest"),
                F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
                F.interpolate(x, size=(12, 5), mode="bilinear", align_corners=True),
                F.interpolate(x, size=(11, 4), mode="nearest"))


class Shapes(nn.Module):
    def forward(self, x):
        y = x.reshape(x.shape[0], 4, -1).transpose(1, 2)
        return y.softmax(-1), torch.flatten(x, 1).log_softmax(1), x.permute(0, 2, 3, 1).reshape(-1, 4)


class Slices(nn.Module):
    def forward(self, x):
        a, b, c = torch.split(x, [1, 2, 3], dim=1)
        sliced = x[:, 1:5:2, -3:, :-1]
        picked = torch.cat([x[:, [0, 4]], x[:, 5:6]], dim=1)
        return torch.cat([c, a, b], 1), sliced, picked, x[:, 2].unsqueeze(1), x.flip(-1), x[:, :, 0:1].squeeze(2)


class Dense(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 16)
        self.bn = nn.BatchNorm1d(16)
        self.ln = nn.LayerNorm(16)
        self.w = nn.Parameter(torch.randn(16, 5))
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        h = self.ln(self.bn(self.fc(x)))
        y = torch.matmul(h.unsqueeze(1).expand(-1, 3, -1), self.w)
        centred = y - y.mean(dim=-1, keepdim=True)
        return torch.sqrt(centred.pow(2) + 1) * torch.exp(-centred.abs()), y.amax(dim=1) / 4


class Misc(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1)
        self.prelu = nn.PReLU(4, init=0.2)
        self.norm = nn.InstanceNorm2d(4, affine=True)
        self.gelu = nn.GELU()

    def forward(self, x):
        y = self.norm(self.prelu(self.up(x)))
        acts = (F.hardswish(y) + F.hardsigmoid(y) + F.elu(y) + F.softplus(y) + torch.tanh(y)
                + self.gelu(y) + torch.where(y > 0.5, y, -y).clamp(min=-1.0))
        pooled = F.adaptive_max_pool2d(acts, 1)
        return acts * torch.sigmoid(pooled), pooled.expand(-1, -1, 2, 3).repeat(1, 1, 2, 1)


@pytest.mark.parametrize("module, shape", [
    (Convs(), (1, 4, 11, 13)), (Pools(), (1, 3, 9, 11)), (Pools(), (2, 2, 6, 7)), (Resizes(), (1, 2, 7, 9)),
    (Shapes(), (2, 8, 3, 5)), (Slices(), (1, 6, 5, 7)), (Dense(), (4, 12)), (Misc(), (1, 3, 5, 6)),
], ids=["convs", "pools_odd", "pools_even", "resizes", "shapes", "slices", "dense", "misc"])
def test_torch_exports_match_ort(module, shape):
    torch.manual_seed(0)
    x = torch.randn(shape)
    check(_export(module, x), x)


def test_shape_subgraphs_fold_and_batch_follows_the_input():
    """A graph with a symbolic batch has Shape ops; the twin folds them at batch 1 yet runs batch 3."""
    x = torch.randn(1, 8, 3, 5)
    model = _export(Shapes(), x, dynamic_axes={"x0": {0: "n"}})
    assert any(node.op_type == "Shape" for node in model.graph.node)
    twin = check(model, x)
    x3 = torch.randn(3, 8, 3, 5)
    out = twin(x3)
    reference = _session(model).run(None, {"x0": x3.numpy()})
    assert [tuple(o.shape) for o in out] == [r.shape for r in reference]
    assert _max_diff(out, reference) < ATOL


# --- hand-built graphs in tf2onnx's style --------------------------------------------------------

def _init(name: str, array) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _model(nodes, inputs, outputs, initializers, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _fp16_weight(name: str, shape, rng) -> tuple[onnx.TensorProto, onnx.NodeProto]:
    """A float16 initializer and the Cast to float32 that tf2onnx puts behind it."""
    half = (rng.standard_normal(shape) * 0.3).astype(np.float16)
    return _init(f"{name}_fp16", half), helper.make_node("Cast", [f"{name}_fp16"], [name], to=TensorProto.FLOAT)


def _value(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _tf2onnx_style_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w1, cast1 = _fp16_weight("w1", (8, 3, 3, 3), rng)
    w2, cast2 = _fp16_weight("w2", (8, 1, 3, 3), rng)
    w3, cast3 = _fp16_weight("w3", (6, 8, 1, 1), rng)
    nodes = [
        cast1, cast2, cast3,
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w1", "b1"], ["c1"], pads=[0, 0, 1, 1], strides=[2, 2]),
        helper.make_node("LeakyRelu", ["c1"], ["a1"], alpha=0.1),
        helper.make_node("Pad", ["a1", "pads", "neg_inf"], ["p1"], mode="constant"),
        helper.make_node("MaxPool", ["p1"], ["m1"], kernel_shape=[3, 3], strides=[1, 1]),
        helper.make_node("MaxPool", ["m1"], ["m2"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("Conv", ["m2", "w2"], ["c2"], group=8, kernel_shape=[3, 3], auto_pad="SAME_UPPER"),
        helper.make_node("Resize", ["c2", "", "scales"], ["r1"], mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Resize", ["c2", "", "scales"], ["r2"], mode="linear",
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("Add", ["r1", "r2"], ["s"]),
        helper.make_node("Conv", ["s", "w3", "b3"], ["c3"]),
        helper.make_node("Split", ["c3", "split"], ["cls", "box"], axis=1),
        helper.make_node("Sigmoid", ["cls"], ["cls_s"]),
        helper.make_node("Concat", ["cls_s", "box"], ["cat"], axis=1),
        helper.make_node("Reshape", ["cat", "shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["out"], perm=[0, 2, 1]),
        helper.make_node("Transpose", ["s"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Pad", ["a1", "zero_pads"], ["z1"]),  # zeros before a conv: the conv absorbs them
        helper.make_node("Conv", ["z1", "w4"], ["c4"], strides=[2, 2]),
        helper.make_node("Sigmoid", ["z1"], ["z1_s"]),
    ]
    w4, cast4 = _fp16_weight("w4", (4, 8, 3, 3), rng)
    nodes.insert(0, cast4)
    inits = [w1, w2, w3, w4, _init("zero_pads", np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)),
             _init("b1", rng.standard_normal(8).astype(np.float32)),
             _init("b3", rng.standard_normal(6).astype(np.float32)),
             _init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)), _init("neg_inf", np.float32(-np.inf)),
             _init("scales", np.array([1, 1, 2, 2], np.float32)), _init("split", np.array([2, 4], np.int64)),
             _init("shape", np.array([0, 6, -1], np.int64))]
    return _model(nodes, [_value("image", [1, 17, 19, 3])], [_value(n, None) for n in ("out", "nhwc", "c4", "z1_s")],
                  inits)


def test_tf2onnx_style_graph_matches_ort():
    twin = check(_tf2onnx_style_model(), torch.randn(1, 17, 19, 3))
    assert {b.dtype for b in twin.buffers()} <= {torch.float32, torch.int64}
    assert all(name.isidentifier() for name, _ in twin.named_buffers())


def test_front_and_tail_compose_to_the_whole_graph():
    """Cut at a split tensor: front(image) -> split, tail(split) -> outputs, gradients into the split."""
    model = _tf2onnx_style_model()
    whole = TorchTwin(model)
    front = TorchTwin(model, outputs=["s"])
    tail = TorchTwin(model, inputs=["s"], outputs=["out", "nhwc"])
    x = torch.randn(1, 17, 19, 3)
    (split,) = front(x)
    split.requires_grad_()
    out = tail(split)
    for a, b in zip(out, whole(x)[:2]):
        torch.testing.assert_close(a, b)
    out[0].sum().backward()
    assert split.grad.abs().sum() > 0
    with pytest.raises(ModelGraphError, match="also need"):
        TorchTwin(model, inputs=["s"])  # c4 reads the image past the cut
    with pytest.raises(ModelGraphError, match="no such values"):
        TorchTwin(model, outputs=["nothing"])


COORDINATE_MODES = ["asymmetric", "half_pixel", "pytorch_half_pixel", "align_corners", "tf_half_pixel_for_nn"]
NEAREST_MODES = ["floor", "round_prefer_floor", "round_prefer_ceil", "ceil"]
RESIZE_MODES = [(c, m) for c in COORDINATE_MODES for m in NEAREST_MODES + ["linear"]
                if (c, m) != ("tf_half_pixel_for_nn", "linear")]  # that mode is for nearest only


@pytest.mark.parametrize("coordinates, mode", RESIZE_MODES)
@pytest.mark.parametrize("target", ["scales_up", "scales_down", "sizes", "same_size"])
def test_resize_modes_match_ort(coordinates, mode, target):
    scales = {"scales_up": [1, 1, 2.5, 1.75], "scales_down": [1, 1, 0.5, 0.6],
              "same_size": [1, 1, 1.1, 1.05]}.get(target)  # same_size: ORT copies, as the output shape is the input's
    inputs = ["x", "", "scales"] if scales else ["x", "", "", "sizes"]
    sizes = np.array([1, 2, 7, 13], np.int64)
    inits = [_init("scales", np.array(scales, np.float32))] if scales else [_init("sizes", sizes)]
    attrs = dict(mode="linear") if mode == "linear" else dict(mode="nearest", nearest_mode=mode)
    node = helper.make_node("Resize", inputs, ["y"], coordinate_transformation_mode=coordinates, **attrs)
    model = _model([node], [_value("x", [1, 2, 6, 10])], [_value("y", None)], inits)
    check(model, torch.randn(1, 2, 6, 10))


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_same_padding_matches_ort(auto_pad):
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("MaxPool", ["x"], ["m"], kernel_shape=[3, 2], strides=[2, 3], auto_pad=auto_pad),
             helper.make_node("AveragePool", ["x"], ["a"], kernel_shape=[2, 3], strides=[2, 2], auto_pad=auto_pad),
             helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[4, 3], strides=[2, 2], auto_pad=auto_pad)]
    model = _model(nodes, [_value("x", [1, 2, 9, 10])], [_value(n, None) for n in "mac"],
                   [_init("w", rng.standard_normal((3, 2, 4, 3)).astype(np.float32))])
    check(model, torch.randn(1, 2, 9, 10))


def test_pad_modes_match_ort():
    nodes = [helper.make_node("Pad", ["x", "pads"], ["reflect"], mode="reflect"),
             helper.make_node("Pad", ["x", "pads"], ["edge"], mode="edge"),
             helper.make_node("Pad", ["x", "crop", "value"], ["constant"])]
    inits = [_init("pads", np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)),
             _init("crop", np.array([0, 1, -1, 2, 0, 0, 1, -2], np.int64)), _init("value", np.float32(0.5))]
    outputs = [_value(n, None) for n in ("reflect", "edge", "constant")]
    model = _model(nodes, [_value("x", [1, 3, 5, 6])], outputs, inits)
    check(model, torch.randn(1, 3, 5, 6))


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_matches_ort(mode):
    node = helper.make_node("Upsample", ["x", "scales"], ["y"], mode=mode)
    model = _model([node], [_value("x", [1, 2, 5, 6])], [_value("y", None)],
                   [_init("scales", np.array([1, 1, 2, 3], np.float32))], opset=9)
    check(model, torch.randn(1, 2, 5, 6))


def test_elementwise_and_folded_ops_match_ort():
    node = helper.make_node
    nodes = [node("Relu", ["x"], ["relu"]), node("LeakyRelu", ["x"], ["leaky"]), node("Abs", ["x"], ["abs"]),
             node("Add", ["abs", "one"], ["pos"]),
             node("Log", ["pos"], ["log"]), node("Reciprocal", ["pos"], ["inv"]),
             node("Floor", ["x"], ["floor"]), node("Ceil", ["x"], ["ceil"]),
             node("Max", ["x", "relu", "floor"], ["max"]), node("Min", ["x", "ceil"], ["min"]),
             node("Sum", ["x", "leaky", "log"], ["sum"]), node("CastLike", ["sum", "x"], ["sum_f"]),
             node("ReduceMin", ["x"], ["rmin"], axes=[2]), node("ReduceSum", ["x", "axes"], ["rsum"], keepdims=0),
             node("Less", ["x", "zero"], ["lt"]), node("LessOrEqual", ["x", "zero"], ["le"]),
             node("GreaterOrEqual", ["x", "half"], ["ge"]), node("Not", ["lt"], ["nlt"]),
             node("And", ["nlt", "ge"], ["and"]), node("Or", ["and", "le"], ["or"]),
             node("Where", ["or", "x", "inv"], ["where"]), node("Dropout", ["where"], ["drop"]),
             node("GlobalMaxPool", ["x"], ["gmax"]), node("Size", ["x"], ["size"]),
             node("Cast", ["size"], ["size_f"], to=TensorProto.FLOAT), node("Mul", ["gmax", "size_f"], ["scaled"]),
             node("Range", ["start", "limit", "delta"], ["range"]),
             node("Cast", ["range"], ["range_f"], to=TensorProto.FLOAT), node("Add", ["x", "range_f"], ["ramp"])]
    inits = [_init("one", np.float32(1)), _init("zero", np.float32(0)), _init("half", np.float32(0.5)),
             _init("axes", np.array([1, 3], np.int64)), _init("start", np.int64(0)), _init("limit", np.int64(5)),
             _init("delta", np.int64(1))]
    outputs = ("max", "min", "sum_f", "rmin", "rsum", "drop", "scaled", "ramp")
    model = _model(nodes, [_value("x", [1, 3, 4, 5])], [_value(n, None) for n in outputs], inits)
    twin = check(model, torch.randn(1, 3, 4, 5))
    assert {"c_range_f", "c_size_f"} <= dict(twin.named_buffers()).keys()  # Range, Size and Casts folded


def test_opset_11_attribute_forms_match_ort(tmp_path):
    """Older opsets give axes and splits as attributes and Softmax its coerced-to-2D meaning."""
    nodes = [helper.make_node("Unsqueeze", ["x"], ["u"], axes=[0, -1]),
             helper.make_node("Squeeze", ["u"], ["q"], axes=[0]),
             helper.make_node("Squeeze", ["q"], ["all"]),
             helper.make_node("Split", ["x", ], ["s1", "s2"], axis=1, split=[1, 2]),
             helper.make_node("Softmax", ["x"], ["soft"], axis=1),
             helper.make_node("ReduceMean", ["x"], ["mean"], axes=[1, 3], keepdims=0),
             helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["back"]),
             helper.make_node("Clip", ["x", "low", ""], ["clip"]),
             helper.make_node("Flatten", ["x"], ["flat"], axis=2)]
    inits = [_init("starts", np.array([-1, 4], np.int64)), _init("ends", np.array([-100, 0], np.int64)),
             _init("axes", np.array([3, 2], np.int64)), _init("steps", np.array([-2, -3], np.int64)),
             _init("low", np.float32(-0.3))]
    outputs = ("q", "all", "s1", "s2", "soft", "mean", "back", "clip", "flat")
    model = _model(nodes, [_value("x", [1, 3, 5, 1])], [_value(n, None) for n in outputs], inits, opset=11)
    path = tmp_path / "g.onnx"
    onnx.save(model, str(path))
    assert twin_of(path).output_names == list(outputs)
    check(model, torch.randn(1, 3, 5, 1))


def test_supports_the_ops_of_tf2onnx_detectors_and_torch_exports():
    assert {"Conv", "LeakyRelu", "Relu", "Sigmoid", "Softmax", "MaxPool", "AveragePool", "Concat", "Add", "Sub",
            "Mul", "Div", "Resize", "Upsample", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Slice",
            "Split", "Gather", "Shape", "Constant", "ConstantOfShape", "Cast", "Identity", "Clip",
            "BatchNormalization", "MatMul", "Gemm", "ReduceMean", "Pad", "Exp", "Sqrt", "Pow"} <= SUPPORTED_OPS


def test_unknown_op_is_a_typed_error():
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["keep"], name="nms_1")
    graph = helper.make_graph([node], "g", [_value("boxes", [1, 4, 4]), _value("scores", [1, 1, 4])],
                              [helper.make_tensor_value_info("keep", TensorProto.INT64, None)])
    with pytest.raises(ModelGraphError, match=r"NonMaxSuppression.*nms_1"):
        TorchTwin(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_shape_that_depends_on_data_is_a_typed_error():
    nodes = [helper.make_node("Cast", ["x"], ["target"], to=TensorProto.INT64),
             helper.make_node("Reshape", ["y", "target"], ["z"], name="reshape_by_data")]
    graph = helper.make_graph(nodes, "g", [_value("x", [2]), _value("y", [2, 3])], [_value("z", None)])
    with pytest.raises(ModelGraphError, match=r"reshape_by_data.*constant-foldable"):
        TorchTwin(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


# --- the real teacher, when the repository has it ------------------------------------------------

def _photo(width: int, height: int) -> np.ndarray:
    """A real photo (BGR, resized) from test/data/photos, else a synthetic scene."""
    import cv2

    photos = sorted((Path(__file__).parent / "data/photos").glob("*.jpg"))
    if photos:
        image = cv2.imread(str(photos[0]))
    else:
        from split_perception.data.synthetic import render_scene

        image = np.ascontiguousarray(render_scene(np.random.default_rng(0), (height, width))[0][..., ::-1])
    return cv2.resize(image, (width, height))


@pytest.mark.skipif(not NANODET.exists(), reason="the NanoDet-g teacher is not in this repository")
def test_nanodet_twin_matches_ort():
    model = onnx.load(str(NANODET))
    height, width = (d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[2:])
    mean = np.array([103.53, 116.28, 123.675], np.float32).reshape(1, 3, 1, 1)  # NanoDet's BGR normalization
    std = np.array([57.375, 57.12, 58.395], np.float32).reshape(1, 3, 1, 1)
    photo = (_photo(width, height).transpose(2, 0, 1)[None].astype(np.float32) - mean) / std
    twin = twin_of(model)
    session = _session(model)
    torch.manual_seed(0)
    for x in (torch.randn(1, 3, height, width), torch.from_numpy(photo)):
        start = time.perf_counter()
        with torch.no_grad():
            out = twin(x)
        elapsed = time.perf_counter() - start
        diff = _max_diff(out, session.run(None, {twin.input_names[0]: x.numpy()}))
        print(f"nanodet twin: max abs diff {diff:.2e}, {elapsed * 1e3:.0f} ms per forward")
        assert diff < ATOL
    x = torch.from_numpy(photo).requires_grad_()
    twin(x)[0].sum().backward()
    assert x.grad.abs().sum() > 0
    # the split the student replaces: the teacher's tail from its stride-8 backbone tensor
    (split,) = twin_of(model, outputs=["backbone_stride_8"])(x)
    split = split.detach().requires_grad_()
    tail = twin_of(model, inputs=["backbone_stride_8"])
    assert _max_diff(tail(split), session.run(None, {twin.input_names[0]: photo})) < ATOL
    tail(split)[0].sum().backward()
    assert split.grad.abs().sum() > 0

"""Cut an ONNX detector at a named tensor: front (image -> split tensor) runs onboard, tail (split
tensor -> detector outputs) offboard; tail(front(x)) computes exactly what the whole model does.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import onnx
from onnx.utils import Extractor

from ..errors import ModelGraphError


@dataclass(frozen=True)
class SplitModels:
    """The two parts of a detector cut at `tensor`, whose shape (from ONNX shape inference) is `shape`."""

    front: onnx.ModelProto
    tail: onnx.ModelProto
    tensor: str
    shape: tuple[int | str, ...]


def _tensor_names(graph: onnx.GraphProto) -> list[str]:
    return [name for node in graph.node for name in node.output]


def _free_inputs(model: onnx.ModelProto) -> set[str]:
    """Tensors the model's nodes read that nothing inside it provides."""
    graph = model.graph
    provided = {*_tensor_names(graph), *(i.name for i in graph.initializer), *(i.name for i in graph.input)}
    return {name for node in graph.node for name in node.input if name and name not in provided}


def split_model(model: onnx.ModelProto, tensor: str) -> SplitModels:
    """Front and tail of `model` cut at `tensor`; ModelGraphError when there is no such tensor, or when the
    tail needs more than that one tensor (the cut does not separate the graph)."""
    graph = model.graph
    names = _tensor_names(graph)
    if tensor not in names:
        close = difflib.get_close_matches(tensor, names, n=5, cutoff=0.3) or names[:5]
        raise ModelGraphError(f"no tensor {tensor!r} in the model; similar names: {close}")
    inferred = onnx.shape_inference.infer_shapes(model)
    info = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output]}
    if tensor not in info:
        raise ModelGraphError(f"shape inference gives no shape for {tensor!r}")
    shape = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param
                  for d in info[tensor].type.tensor_type.shape.dim)
    extractor = Extractor(inferred)
    front = extractor.extract_model([i.name for i in graph.input], [tensor])
    tail = extractor.extract_model([tensor], [o.name for o in graph.output])
    needs = {*(i.name for i in graph.input)} & {n for node in tail.graph.node for n in node.input} | _free_inputs(tail)
    if needs:
        raise ModelGraphError(f"cutting at {tensor!r} does not separate the model: the tail also needs {sorted(needs)}")
    for part in (front, tail):
        onnx.checker.check_model(part)
    return SplitModels(front, tail, tensor, shape)

"""`split-perception import-teacher`: bring an ONNX detector in as a teacher, checked end to end.

A teacher is an ONNX file plus what the file does not say: where to cut it (a tensor name), its
preprocessing (input size, channel order, mean/std, resize policy), the decoding of its outputs (a
head family and its parameters) and its class names. Those come from a teacher.yaml to start from
(`--like`: one of the bundled teachers of the same head family, or your own); the model, the split
tensor and the classes given on the command line replace its own. The import checks everything a
student and the nodes will rely on, then writes a folder that `model.teacher` can name.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import yaml

from ..errors import ConfigError, ModelGraphError
from ..model_files import file_sha256
from .spec import load_teacher_spec, resolve_teacher
from .split import split_model


def separating_tensors(model: onnx.ModelProto) -> list[str]:
    """Tensors that alone carry everything from the input to the outputs (where a single-tensor cut works),
    in graph order."""
    graph = model.graph
    sources = {i.name for i in graph.input} - {i.name for i in graph.initializer}
    outputs = {o.name for o in graph.output}

    def reaches_output_without(cut: str) -> bool:
        live = set(sources)
        for node in graph.node:  # ONNX graphs are topologically sorted
            if any(name in live for name in node.input):
                live.update(name for name in node.output if name != cut)
        return bool(live & outputs)

    candidates = [name for node in graph.node for name in node.output if name and name not in outputs]
    return [name for name in candidates if not reaches_output_without(name)]


def import_teacher(model_path: str | Path, split: str, like: str, out: str | Path, classes: str | None = None,
                   name: str | None = None) -> dict:
    """Write `out/` (model.onnx, classes.txt, teacher.yaml) and check it; return what was measured."""
    model_path, out = Path(model_path), Path(out)
    if not model_path.is_file():
        raise ConfigError(f"model not found: {model_path}")
    try:
        model = onnx.load(str(model_path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own types for a file that is no ONNX model
        raise ModelGraphError(f"{model_path}: not an ONNX model ({type(exc).__name__})") from None
    template_dir = resolve_teacher(like)
    template = yaml.safe_load((template_dir / "teacher.yaml" if template_dir.is_dir() else template_dir).read_text())
    try:
        parts = split_model(model, split)
    except ModelGraphError as exc:
        candidates = separating_tensors(model)
        shown = candidates if len(candidates) <= 12 else [*candidates[:6], "...", *candidates[-6:]]
        raise ModelGraphError(f"{exc}; tensors where a single cut works ({len(candidates)}): {shown}") from None
    if any(not isinstance(d, int) or d < 1 for d in parts.shape):
        raise ModelGraphError(f"split tensor {split!r} has no static shape ({parts.shape})")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_path, out / "model.onnx")
    classes_src = Path(classes) if classes else (template_dir if template_dir.is_dir() else template_dir.parent) \
        / template["classes"]
    if not classes_src.is_file():
        raise ConfigError(f"classes file not found: {classes_src}")
    shutil.copyfile(classes_src, out / "classes.txt")
    initializers = {i.name for i in model.graph.initializer}
    image = next(i for i in model.graph.input if i.name not in initializers)
    dims = [d.dim_value for d in image.type.tensor_type.shape.dim]
    size = {"height": dims[2], "width": dims[3]} if len(dims) == 4 and min(dims[2:]) > 0 else {}
    spec_data = {**template, "name": name or model_path.stem, "model": "model.onnx", "classes": "classes.txt",
                 "input": {**template["input"], "name": image.name, **size},
                 "split": {"tensor": split, "shape": list(parts.shape)},
                 "provenance": {"imported_from": str(model_path), "model_onnx_sha256": file_sha256(out / "model.onnx"),
                                "settings_from": str(like)}}
    spec_data["head"] = {**template["head"], "num_classes": sum(1 for line in (out / "classes.txt").read_text()
                                                                .splitlines() if line.strip())}
    (out / "teacher.yaml").write_text("# Written by split-perception import-teacher.\n"
                                      + yaml.safe_dump(spec_data, sort_keys=False))
    spec = load_teacher_spec(out)
    diff = _parity(model, parts, spec)
    (out / "student.yaml").write_text(STUDENT_CONFIG.format(teacher=out.resolve(), name=spec.name))
    return {"spec": spec, "max_abs_diff": diff, "shape": parts.shape}


STUDENT_CONFIG = """# A student of the teacher in this folder, distilled on unlabelled footage (split-perception train --config).
model:
  teacher: {teacher}
  encoder: front
  bottleneck_channels: 32  # at width 1.0; each width keeps its share
  widths: [0.25, 0.5, 0.75, 1.0]
  decoder_channels: 96
  decoder_layers: 2
train:
  stage: distill
  train_data: data/footage/train  # your recordings: folders of images, videos, camera bags
  output_dir: runs/{name}_student
  pca_init: 200
  pca_step: 4.0
  epochs: 3
  batch_size: 8
  task_weight: 0.0  # head distillation; a second run with student_init and task_weight 1 distils the outputs
  rate_weight: [10.0, 6.0, 4.0, 2.0]
"""


def _parity(model: onnx.ModelProto, parts, spec) -> float:
    """Run the whole model and tail(front) on one input on ONNX Runtime; the outputs the head decodes must
    exist, and the largest difference between the two paths is returned (0 for an exact cut)."""
    import onnxruntime as ort

    def session(m: onnx.ModelProto):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])

    inp = spec.input
    x = np.random.default_rng(0).standard_normal((1, 3, inp.height, inp.width)).astype(np.float32)
    whole, front, tail = session(model), session(parts.front), session(parts.tail)
    names = [o.name for o in whole.get_outputs()]
    missing = sorted(set(spec.head.output_names) - set(names))
    if missing:
        raise ModelGraphError(f"the head family {spec.head_family} reads outputs {missing}, the model has {names}")
    feed = {whole.get_inputs()[0].name: x}
    ref = whole.run(names, feed)
    cut = tail.run(names, {tail.get_inputs()[0].name: front.run(None, {front.get_inputs()[0].name: x})[0]})
    return float(max(np.abs(a - b).max() for a, b in zip(ref, cut)))

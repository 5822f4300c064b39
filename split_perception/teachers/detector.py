"""A teacher detector on ONNX Runtime: image -> resized input (letterbox or stretch) -> model -> head decoding.

Torch-free, so the same code serves onboard and offboard. `preprocess` and `decode` are separate
so that a split deployment can run the front of the model in one place and the tail in another.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..errors import ImageError, ModelGraphError
from .detections import Detection
from .letterbox import RESIZES, Letterbox
from .spec import BUNDLED_TEACHERS, CHANNEL_ORDERS, TeacherSpec, load_teacher_spec

DEFAULT_TEACHER = BUNDLED_TEACHERS / "nanodet_g"


def preprocess(image: np.ndarray, spec: TeacherSpec, channel_order: str) -> tuple[np.ndarray, Letterbox]:
    """(1 x 3 x H x W float32 network input, its Letterbox) for an H' x W' x 3 uint8 image whose channels
    are in `channel_order` ("RGB" or "BGR"), resized as teacher.yaml's input.resize says."""
    if channel_order not in CHANNEL_ORDERS:
        raise ImageError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
    inp = spec.input
    boxed, transform = RESIZES[inp.resize](image, inp.width, inp.height)
    if channel_order != inp.channel_order:
        boxed = boxed[..., ::-1]
    normed = (boxed - np.float32(inp.mean)) / np.float32(inp.std)
    return np.ascontiguousarray(normed.transpose(2, 0, 1)[None], dtype=np.float32), transform


class TeacherDetector:
    """A teacher model from its teacher.yaml, run whole on ONNX Runtime's CPU provider."""

    def __init__(self, spec: TeacherSpec | str | Path = DEFAULT_TEACHER, threads: int = 0):
        self.spec = spec if isinstance(spec, TeacherSpec) else load_teacher_spec(spec)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.spec.model_path), options, providers=["CPUExecutionProvider"])
        present = {t.name for t in [*self.session.get_inputs(), *self.session.get_outputs()]}
        if missing := {self.spec.input.name, *self.spec.head.output_names} - present:
            raise ModelGraphError(f"{self.spec.model_path.name} has no input or output {sorted(missing)}, "
                                  f"which teacher.yaml names; it has {sorted(present)}")

    def outputs(self, tensor: np.ndarray) -> Mapping[str, np.ndarray]:
        """The model's outputs for a preprocessed input, by name."""
        names = list(self.spec.head.output_names)
        return dict(zip(names, self.session.run(names, {self.spec.input.name: tensor})))

    def detect(self, image: np.ndarray, channel_order: str) -> list[Detection]:
        """Detections in `image`'s pixels, best score first."""
        tensor, transform = preprocess(image, self.spec, channel_order)
        return self.spec.head.decode(self.outputs(tensor), [transform])[0]

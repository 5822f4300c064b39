"""Real teacher detectors (ONNX models described by teacher.yaml) and their torch-free decoding.

Importing the package registers the head families it holds (nanodet_gfl, ssd_anchors).
"""

from . import nanodet, ssd  # noqa: F401  (register the nanodet_gfl and ssd_anchors head families)
from .detections import Detection
from .spec import TeacherSpec, load_teacher_spec

__all__ = ["Detection", "TeacherSpec", "load_teacher_spec"]

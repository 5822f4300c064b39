"""Real teacher detectors (ONNX models described by teacher.yaml) and their torch-free decoding.

Importing the package registers the head families it holds (nanodet_gfl).
"""

from . import nanodet  # noqa: F401  (registers the nanodet_gfl head family)
from .detections import Detection
from .spec import TeacherSpec, load_teacher_spec

__all__ = ["Detection", "TeacherSpec", "load_teacher_spec"]

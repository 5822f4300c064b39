"""Model files: the bundled models by name, what a `--model` argument names, and the SHA-256 that pins a file.

Torch-free and import-free within the package, so the checkpoint reader, the onboard export reader and the
configuration (which pins a teacher's ONNX file) all use it without importing each other.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
# Bundled models by name: NanoDet-g's student (COCO classes, distilled on real footage; the default, what a
# robot's camera needs) and the synthetic-shapes model (small and fast, segments, scored against ground truth)
BUNDLED_MODELS = {"nanodet_g": ASSETS / "nanodet_g_student.pt", "synthetic": ASSETS / "default_model.pt"}
DEFAULT_MODEL_NAME = "nanodet_g"
DEFAULT_MODEL = BUNDLED_MODELS[DEFAULT_MODEL_NAME]
MODEL_HELP = "checkpoint, onboard export folder, or a bundled model: nanodet_g (the default) or synthetic"


def model_file(model: str | Path | None) -> Path:
    """The checkpoint a user means: nothing (the default model), a bundled model's name, or a path."""
    if not model:
        return DEFAULT_MODEL
    return BUNDLED_MODELS.get(str(model), Path(model))


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

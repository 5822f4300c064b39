"""Model files: the bundled models by name, what a `--model` argument names, and the SHA-256 that pins a file.

Torch-free and import-free within the package, so the checkpoint reader, the onboard export reader and the
configuration (which pins a teacher's ONNX file) all use it without importing each other.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
# Bundled models by name: the synthetic-shapes model (the default) and NanoDet-g's student (COCO, real footage)
BUNDLED_MODELS = {"synthetic": ASSETS / "default_model.pt", "nanodet_g": ASSETS / "nanodet_g_student.pt"}
DEFAULT_MODEL = BUNDLED_MODELS["synthetic"]
MODEL_HELP = "checkpoint, onboard export folder, or a bundled model: synthetic (the default) or nanodet_g"


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

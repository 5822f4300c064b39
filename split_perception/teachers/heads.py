"""Registry of detection-head families: a teacher.yaml names its family, the family decodes the outputs.

A family is a class with `from_params(params, input_width, input_height, num_classes)` that validates
its part of teacher.yaml's `head` block, an `output_names` attribute (the model outputs it reads) and
`decode(outputs, letterboxes)` returning one list of Detections per image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from ..errors import ConfigError
from .detections import Detection
from .letterbox import Letterbox


class HeadDecoder(Protocol):
    """What every head family provides."""

    output_names: tuple[str, ...]
    score_outputs: tuple[str, ...]  # the outputs among them that hold class probabilities (after a sigmoid)

    def decode(self, outputs: Mapping[str, np.ndarray], letterboxes: Sequence[Letterbox]) -> list[list[Detection]]:
        ...


HEAD_FAMILIES: dict[str, Any] = {}


def register_head(family: str):
    """Class decorator: make a head decoder available under `family`."""
    def register(cls):
        HEAD_FAMILIES[family] = cls
        return cls
    return register


def build_head(family: str, params: Mapping[str, Any], input_width: int, input_height: int,
               num_classes: int) -> HeadDecoder:
    """The decoder of `family`, configured from teacher.yaml's head block."""
    if family not in HEAD_FAMILIES:
        raise ConfigError(f"unknown head family {family!r}; known: {sorted(HEAD_FAMILIES)}")
    return HEAD_FAMILIES[family].from_params(params, input_width, input_height, num_classes)

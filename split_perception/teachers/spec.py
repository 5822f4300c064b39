"""A teacher detector's description (teacher.yaml) as typed dataclasses, with clear errors when it is wrong.

teacher.yaml sits next to the model it describes; paths in it are relative to its folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .heads import HEAD_FAMILIES, HeadDecoder, build_head
from .letterbox import RESIZES

BUNDLED_TEACHERS = Path(__file__).resolve().parents[1] / "assets" / "teachers"  # <name>/teacher.yaml each
CHANNEL_ORDERS = ("RGB", "BGR")
RESIZE_POLICIES = tuple(RESIZES)  # whichever the teacher's own pipeline used: its weights expect those pixels


@dataclass(frozen=True)
class InputSpec:
    """The network input: tensor name, size, channel order and per-channel normalisation (on 0..255 values)."""

    name: str
    width: int
    height: int
    channel_order: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str


@dataclass(frozen=True)
class SplitSpec:
    """Where the detector is cut into an onboard front and an offboard tail: tensor name and NCHW shape."""

    tensor: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class TeacherSpec:
    """Everything needed to run and split a teacher detector."""

    name: str
    folder: Path
    model_path: Path
    class_names: tuple[str, ...]
    input: InputSpec
    head_family: str
    head: HeadDecoder
    split: SplitSpec
    provenance: Mapping[str, Any]


def _field(data: Mapping[str, Any], dotted: str, kind: type | tuple[type, ...] = object) -> Any:
    """data["a"]["b"] for "a.b", or a ConfigError naming the missing or mistyped field."""
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise ConfigError(f"teacher.yaml: missing field {dotted!r}")
        value = value[part]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"teacher.yaml: field {dotted!r} must be {kind}, got {value!r}")
    return value


def _triple(data: Mapping[str, Any], dotted: str) -> tuple[float, float, float]:
    values = _field(data, dotted, list)
    if len(values) != 3 or not all(isinstance(v, (int, float)) for v in values):
        raise ConfigError(f"teacher.yaml: field {dotted!r} must be three numbers, got {values!r}")
    return tuple(float(v) for v in values)


def parse_teacher_spec(data: Any, folder: Path) -> TeacherSpec:
    """A TeacherSpec from teacher.yaml's parsed content; `folder` is where its relative paths start."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"teacher.yaml: expected a mapping, got {type(data).__name__}")
    inp = InputSpec(_field(data, "input.name", str), _field(data, "input.width", int),
                    _field(data, "input.height", int), _field(data, "input.channel_order", str),
                    _triple(data, "input.mean"), _triple(data, "input.std"), _field(data, "input.resize", str))
    if inp.channel_order not in CHANNEL_ORDERS:
        raise ConfigError(f"teacher.yaml: input.channel_order must be one of {CHANNEL_ORDERS}, got {inp.channel_order!r}")
    if inp.resize not in RESIZE_POLICIES:
        raise ConfigError(f"teacher.yaml: input.resize must be one of {RESIZE_POLICIES}, got {inp.resize!r}")
    if inp.width < 1 or inp.height < 1 or min(inp.std) <= 0:
        raise ConfigError(f"teacher.yaml: input size and std must be positive, got {inp}")
    family = _field(data, "head.family", str)
    if family not in HEAD_FAMILIES:
        raise ConfigError(f"teacher.yaml: unknown head family {family!r}; known: {sorted(HEAD_FAMILIES)}")
    model_path = folder / _field(data, "model", str)
    classes_path = folder / _field(data, "classes", str)
    for path in (model_path, classes_path):
        if not path.is_file():
            raise ConfigError(f"teacher.yaml: {path} does not exist")
    class_names = tuple(line.strip() for line in classes_path.read_text().splitlines() if line.strip())
    num_classes = _field(data, "head.num_classes", int)
    if len(class_names) != num_classes:
        raise ConfigError(f"teacher.yaml: {classes_path.name} has {len(class_names)} names, head.num_classes "
                          f"is {num_classes}")
    shape = _field(data, "split.shape", list)
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ConfigError(f"teacher.yaml: split.shape must be positive integers, got {shape!r}")
    return TeacherSpec(
        name=_field(data, "name", str), folder=folder, model_path=model_path, class_names=class_names, input=inp,
        head_family=family, head=build_head(family, _field(data, "head", Mapping), inp.width, inp.height, num_classes),
        split=SplitSpec(_field(data, "split.tensor", str), tuple(shape)),
        provenance=_field(data, "provenance", Mapping))


def resolve_teacher(name: str | Path) -> Path:
    """A bundled teacher's folder by name (`nanodet_g`), else `name` as a path to a teacher.yaml or its folder."""
    bundled = BUNDLED_TEACHERS / str(name)
    if str(name) and "/" not in str(name) and (bundled / "teacher.yaml").is_file():
        return bundled
    path = Path(name)
    if not path.exists():
        known = sorted(p.parent.name for p in BUNDLED_TEACHERS.glob("*/teacher.yaml"))
        raise ConfigError(f"teacher {str(name)!r}: neither a bundled teacher ({', '.join(known)}) nor a path")
    return path


def load_teacher_spec(path: str | Path) -> TeacherSpec:
    """The TeacherSpec of a teacher.yaml, or of the teacher.yaml inside a folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "teacher.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read teacher spec {path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    return parse_teacher_spec(data, path.parent)

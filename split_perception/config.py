"""Typed configuration with every default in one place; YAML files override fields by name."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .teachers.spec import CHANNEL_ORDERS, load_teacher_spec, resolve_teacher
from .teachers.spec import RESIZE_POLICIES as TEACHER_RESIZE_POLICIES

DEFAULT_CLASSES = ("circle", "square", "triangle", "star", "cross")
# Two widths are the same width within this: widths travel as float32 (messages, parameters) and a
# model's widths differ by far more.
WIDTH_TOLERANCE = 1e-3
# Onboard encoder runtimes: ONNX Runtime (torch-free, from the onboard export), torch, or auto (onnx when
# the checkpoint has an up-to-date export)
RUNTIMES = ("auto", "onnx", "torch")
# Output stride of MobileNetV3-Large's features[:k]; the student encoder restores splits of stride 4 or 8
SPLIT_STRIDES = {3: 4, 4: 4, 5: 8, 6: 8, 7: 8}
DEVICES = ("auto", "cpu", "cuda")
RESIZE_POLICIES = ("area", *TEACHER_RESIZE_POLICIES)  # ours (each axis, area averaging); a teacher's own two
# Onboard encoders: "conv", a small slimmable conv network in place of the teacher's first layers;
# "front", the teacher's own first layers (frozen) + a slimmable 1x1 projection to the bottleneck
ENCODERS = ("conv", "front")


def find_width(widths, width: float) -> int | None:
    """Index of `width` in `widths` (within WIDTH_TOLERANCE), or None."""
    return next((i for i, w in enumerate(widths) if abs(float(w) - float(width)) <= WIDTH_TOLERANCE), None)


@dataclass
class ModelConfig:
    """What the network is: teacher backbone, split point, slimmable encoder and widths.

    With `teacher` set (an ONNX detector described by a teacher.yaml), the classes, input size,
    normalization, channel order and resize policy are the teacher's: `validate` fills them in from
    its teacher.yaml, the one place they are written, and pins the ONNX file by its SHA-256.
    """

    teacher: str = ""  # "" = the synthetic-shapes teacher (torchvision MobileNetV3 + SSDlite + LR-ASPP); else a
    # bundled teacher's name (split_perception/assets/teachers/<name>) or a teacher.yaml (or its folder)
    teacher_sha256: str = ""  # of the teacher's ONNX file, filled in by `validate`; a different file is refused
    class_names: list[str] = field(default_factory=lambda: list(DEFAULT_CLASSES))
    input_size: tuple[int, int] = (240, 320)  # (height, width) the network sees
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # RGB, on 0..1 values; torchvision SSDlite convention
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    channel_order: str = "RGB"  # of the network input, after normalization
    resize: str = "area"  # each axis to input_size by area averaging; an ONNX teacher's own: "letterbox" (keep
    # the aspect ratio, black border) or "stretch" (bilinear, edges replicated), as `teachers/letterbox.py`
    backbone_width_mult: float = 1.0  # 1.0 accepts torchvision's standard state dicts
    split_index: int = 7  # split after MobileNetV3 features[:k], k in SPLIT_STRIDES
    encoder: str = "conv"  # one of ENCODERS
    widths: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    encoder_channels: tuple[int, int] = (16, 48)  # "conv" encoder, at width 1.0
    bottleneck_channels: int = 16  # at width 1.0
    gdn: bool = False  # "conv" encoder: GDN in it and IGDN in the decoders (else batch norm + ReLU)
    decoder_channels: int = 96
    decoder_layers: int = 2  # 3x3 convolutions per offboard decoder
    decoder_linear: bool = False  # a 1x1 path beside each decoder's convolutions, started as the PCA reconstruction
    shared_decoder: bool = False  # one offboard decoder for every width (narrower bottlenecks zero-padded)
    # instead of one decoder per width
    coarse_widths: tuple[float, ...] = ()  # "front" encoder: widths whose bottleneck is averaged over 2x2 (a
    # quarter of the symbols, twice the split stride); their decoders upsample back
    seg_inter_channels: int = 64
    score_thresh: float = 0.3  # default detection score threshold at inference
    nms_thresh: float = 0.5
    detections_per_img: int = 50

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def split_stride(self) -> int:
        if self.teacher:
            return self.input_size[0] // self.teacher_spec().split.shape[2]
        return SPLIT_STRIDES[self.split_index]

    def teacher_spec(self):
        """The teacher's TeacherSpec (an ONNX teacher only), read once."""
        spec = getattr(self, "_spec", None)
        if spec is None:
            spec = load_teacher_spec(resolve_teacher(self.teacher))
            object.__setattr__(self, "_spec", spec)
        return spec

    def _apply_teacher(self) -> None:
        """Classes, input and normalization from the teacher's teacher.yaml; its ONNX file pinned."""
        from .model_files import file_sha256

        spec = self.teacher_spec()
        digest = file_sha256(spec.model_path)
        if self.teacher_sha256 and self.teacher_sha256 != digest:
            raise ConfigError(f"teacher {self.teacher}: {spec.model_path} has SHA-256 {digest[:12]}, this model was "
                              f"made with {self.teacher_sha256[:12]} (another teacher file)")
        inp = spec.input
        order = [2, 1, 0] if inp.channel_order == "BGR" else [0, 1, 2]  # teacher.yaml's values are in its order
        self.teacher_sha256 = digest
        self.class_names = list(spec.class_names)
        self.input_size = (inp.height, inp.width)
        self.image_mean = tuple(inp.mean[k] / 255.0 for k in order)
        self.image_std = tuple(inp.std[k] / 255.0 for k in order)
        self.channel_order, self.resize = inp.channel_order, inp.resize

    def latent_stride(self, width_index: int) -> int:
        """Stride of a width's bottleneck grid: the split's, or twice it for a coarse width."""
        coarse = find_width(self.coarse_widths, self.widths[width_index]) is not None
        return self.split_stride * (2 if coarse else 1)

    def validate(self) -> "ModelConfig":
        if self.teacher:
            if self.encoder != "front":
                raise ConfigError("a teacher from an ONNX file needs encoder: front (its own first layers onboard)")
            self._apply_teacher()
        if self.channel_order not in CHANNEL_ORDERS or self.resize not in RESIZE_POLICIES:
            raise ConfigError(f"channel_order must be one of {CHANNEL_ORDERS} and resize one of {RESIZE_POLICIES}, "
                              f"got {self.channel_order!r}, {self.resize!r}")
        if not self.class_names:
            raise ConfigError("class_names must not be empty")
        if len(self.input_size) != 2 or min(self.input_size) < 64 or max(self.input_size) > 2048:
            raise ConfigError(f"input_size must be (height, width) between 64 and 2048, got {self.input_size}")
        if any(s % 8 for s in self.input_size):
            raise ConfigError(f"input_size must be multiples of 8, got {self.input_size}")
        widths = list(self.widths)
        if not widths or widths != sorted(set(widths)) or widths[0] <= 0 or widths[-1] != 1.0:
            raise ConfigError(f"widths must be strictly increasing, positive and end at 1.0, got {widths}")
        if not self.teacher and self.split_index not in SPLIT_STRIDES:
            raise ConfigError(f"split_index must be one of {sorted(SPLIT_STRIDES)} (stride 4 or 8), "
                              f"got {self.split_index}")
        if self.encoder not in ENCODERS:
            raise ConfigError(f"encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        if self.coarse_widths:
            if any(find_width(widths, w) is None for w in self.coarse_widths):
                raise ConfigError(f"coarse_widths must be some of the widths {widths}, got {list(self.coarse_widths)}")
            if self.encoder != "front" or self.shared_decoder:
                raise ConfigError("coarse_widths needs the 'front' encoder and one decoder per width")
            if any(s % (2 * self.split_stride) for s in self.input_size):
                raise ConfigError(f"coarse_widths need input_size multiples of {2 * self.split_stride}, "
                                  f"got {self.input_size}")
        if self.decoder_layers < 1:
            raise ConfigError(f"decoder_layers must be at least 1, got {self.decoder_layers}")
        return self


@dataclass
class TrainConfig:
    """How to train: stage, data, optimisation and loss weights."""

    stage: str = "student"  # "teacher", "student" (synthetic scenes with labels) or "distill" (an ONNX
    # teacher's student on unlabelled footage: `training/distill.py`)
    train_data: str | list[str] = "data/synthetic/train"  # one dataset, or a list of them trained on together
    val_data: str = "data/synthetic/val"
    teacher_checkpoint: str = ""  # student stage: the trained teacher, or a student checkpoint (its frozen teacher)
    student_init: str = ""  # student stage, optional: start from this student checkpoint (fine-tuning)
    pca_init: int = 0  # "front" encoder: start the projection from PCA fitted on this many images of the first
    # training dataset (0 = random)
    pca_step: float = 2.0  # quantization step of that start, in RMS of the split-point features
    teacher_init: str = ""  # teacher stage, optional: torchvision ssdlite320_mobilenet_v3_large state dict
    output_dir: str = "runs/default"
    seed: int = 0
    epochs: int = 10
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    aux_lr: float = 1e-2
    entropy_lr: float = 0.0  # student: learning rate of the entropy models' densities (0 = lr); higher keeps
    # them fitted to a moving encoder, as `refit-entropy` does after training
    num_threads: int = 2
    num_workers: int = 0  # DataLoader worker processes
    device: str = "auto"  # auto = CUDA when available (then with mixed precision), else CPU
    kd_weight: float = 1.0  # feature MSE at the split point
    task_weight: float = 1.0  # detection + segmentation losses through the frozen tail
    seg_weight: float = 1.0  # segmentation loss relative to detection loss
    rate_weight: float | list[float] = 0.01  # lambda on bits per input pixel: one value, or one per width
    random_widths: int = 1  # sandwich rule: max + min + this many random widths per step
    decoder_input: str = "noise"  # distill: what the decoders train on, "noise" (the entropy model's
    # uniform noise, as CompressAI trains) or "rounded" (the rounded symbols packets carry, gradients passed
    # straight through), which keeps training and inference alike where the symbols are few levels wide
    train_widths: list[float] = field(default_factory=list)  # student, optional: train only these
    # widths' own gain, decoder and entropy model (the shared projection frozen, every other width unchanged)
    max_train_images: int = 0  # per training dataset (distill: training views in all); 0 = all
    frame_stride: int = 2  # distill: every n-th frame of a clip
    crops_per_photo: int = 4  # distill: random crops of each photo, besides the whole photo (each view also mirrored)
    eval_every: int = 1
    max_eval_images: int = 200

    def validate(self) -> "TrainConfig":
        if self.stage not in ("teacher", "student", "distill"):
            raise ConfigError(f"stage must be 'teacher', 'student' or 'distill', got {self.stage!r}")
        if self.frame_stride < 1 or self.crops_per_photo < 0:
            raise ConfigError(f"frame_stride must be >= 1 and crops_per_photo >= 0, got {self.frame_stride}, "
                              f"{self.crops_per_photo}")
        if self.stage == "student" and not self.teacher_checkpoint:
            raise ConfigError("the student stage needs teacher_checkpoint")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("epochs, batch_size and lr must be positive")
        if self.entropy_lr < 0:
            raise ConfigError(f"entropy_lr must be >= 0, got {self.entropy_lr}")
        if self.pca_init < 0 or self.pca_step <= 0:
            raise ConfigError(f"pca_init must be >= 0 and pca_step > 0, got {self.pca_init}, {self.pca_step}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if not self.train_roots() or any(not isinstance(r, str) or not r for r in self.train_roots()):
            raise ConfigError(f"train_data must be a dataset path or a non-empty list of them, got {self.train_data!r}")
        weights = self.rate_weight if isinstance(self.rate_weight, (list, tuple)) else [self.rate_weight]
        if not weights or any(not isinstance(v, (int, float)) or v < 0 for v in weights):
            raise ConfigError(f"rate_weight must be a non-negative number or a list of them, got {self.rate_weight!r}")
        if self.decoder_input not in ("noise", "rounded"):
            raise ConfigError(f"decoder_input must be 'noise' or 'rounded', got {self.decoder_input!r}")
        if not isinstance(self.train_widths, (list, tuple)) or any(
                not isinstance(w, (int, float)) or w <= 0 for w in self.train_widths):
            raise ConfigError(f"train_widths must be a list of the model's widths, got {self.train_widths!r}")
        return self

    def train_roots(self) -> list[str]:
        """The training datasets, as a list even when one path is given."""
        return list(self.train_data) if isinstance(self.train_data, (list, tuple)) else [self.train_data]

    def rate_weights(self, n_widths: int) -> list[float]:
        """Lambda for each of `n_widths` widths (narrowest first)."""
        if not isinstance(self.rate_weight, (list, tuple)):
            return [float(self.rate_weight)] * n_widths
        if len(self.rate_weight) != n_widths:
            raise ConfigError(f"rate_weight has {len(self.rate_weight)} values for {n_widths} widths")
        return [float(v) for v in self.rate_weight]


def _coerce(cls, data: dict[str, Any]):
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    kwargs = {}
    for key, value in data.items():
        default = getattr(cls(), key)
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    return _coerce(ModelConfig, data).validate()


def load_config(path: str | Path) -> tuple[ModelConfig, TrainConfig]:
    """Read a YAML file with optional `model:` and `train:` sections."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or set(data) - {"model", "train"}:
        raise ConfigError(f"{path}: expected top-level keys 'model' and/or 'train'")
    model = model_config_from_dict(data.get("model") or {})
    train = _coerce(TrainConfig, data.get("train") or {}).validate()
    return model, train


def to_dict(cfg) -> dict[str, Any]:
    """JSON/YAML-safe dict (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}

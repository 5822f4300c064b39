"""Typed errors: every way bad input can fail has its own class, so callers count and report it."""


class SplitPerceptionError(Exception):
    """Base class of every error this package raises on purpose."""


class PacketError(SplitPerceptionError, ValueError):
    """A packet is truncated, corrupt, oversized or of an unknown format version."""


class ModelMismatchError(SplitPerceptionError):
    """A packet was made by another model (fingerprint or width not ours)."""


class CheckpointError(SplitPerceptionError):
    """A checkpoint file is missing, unreadable, or not a split_perception model."""


class ConfigError(SplitPerceptionError, ValueError):
    """A configuration value is missing or out of range."""


class ImageError(SplitPerceptionError, ValueError):
    """An input image has an unsupported shape, dtype or encoding."""


class WidthError(SplitPerceptionError, ValueError):
    """A width that is not one of the model's widths."""


class ModelGraphError(SplitPerceptionError, ValueError):
    """An ONNX graph that cannot be used as asked: no tensor of the given name, no cut into two parts there,
    or an op, attribute or dynamic shape that the torch twin cannot reproduce."""


class FootageError(SplitPerceptionError, ValueError):
    """A footage source (image folder, video file, camera bag) that is missing, unreadable or empty."""


class MissingReferenceError(PacketError):
    """A temporally coded packet whose reference frame the decoder does not hold (or holds with other
    symbols): refused like any bad packet; the encoder is told, so it sends a keyframe."""

    def __init__(self, message: str, stream_id: int, ref_frame_id: int):
        super().__init__(message)
        self.stream_id, self.ref_frame_id = stream_id, ref_frame_id

"""Temporal coding onboard: each frame coded against the newest frame the decoder acknowledged.

Wraps either onboard runtime (`OnboardEncoder`): the runtime makes the frame's symbols, and
`codec/temporal.py` codes them as a version-3 packet, a residual to an acknowledged frame of the same
width or a keyframe. The ONNX and torch runtimes make the same symbols, so the same packets.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..codec.packet import VERSION
from ..codec.temporal import ReferenceHistory, encode_frame, new_stream_id


class TemporalEncoder:
    """`encode` as the runtime's, in version 3 with references; `acknowledge` what the decoder decoded.

    Args:
        runtime: an `EncoderRuntime` (`OnboardEncoder(...)`).
        stream_id: this run's id (default: random); frame ids must increase within a run.
    """

    def __init__(self, runtime, stream_id: int | None = None):
        self.runtime = runtime
        self.keyframes = self.deltas = 0
        self.history = ReferenceHistory(new_stream_id() if stream_id is None else stream_id)

    @property
    def stream_id(self) -> int:
        return self.history.stream_id

    def encode(self, rgb: np.ndarray, frame_id: int, stamp_ns: int = 0) -> bytes:
        """RGB uint8 HxWx3 -> one version-3 packet: a delta when an acknowledged frame of this width is
        among the last `HISTORY` frames (and the scene did not change too much), else a keyframe.
        Raises ImageError for a bad image."""
        packet, symbols = self.runtime.frame(rgb, frame_id, stamp_ns)
        packet = replace(packet, version=VERSION, stream_id=self.stream_id)
        packet = encode_frame(self.history, self.runtime.coder(packet.width_index), packet, symbols)
        self.keyframes += packet.ref_frame_id is None
        self.deltas += packet.ref_frame_id is not None
        return packet.to_bytes()

    def acknowledge(self, stream_id: int, frame_id: int, width_index: int, held: bool = True) -> bool:
        """The decoder decoded and holds that frame, or (`held` False) does not hold it nor any earlier
        one. False: ignored (another run's, or a frame no longer kept)."""
        if not held:
            return self.history.forget(stream_id, frame_id)
        return self.history.acknowledge(stream_id, frame_id, width_index)

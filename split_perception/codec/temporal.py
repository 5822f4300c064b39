"""Temporal coding: a frame's symbols coded as the residual to those of a frame the decoder holds.

On a fixed camera most symbols repeat from frame to frame, so the residual `symbols - reference` is
mostly zero, and the width's own context coder (`codec/context.py`, which escape-codes any value
outside its tables) codes it in far fewer bytes than the symbols themselves. The decoder adds the
residual back to the reference's symbols: exactly the symbols the encoder would have sent alone.

The encoder references only a frame the decoder has acknowledged (`ReferenceHistory`): a lost or
refused packet is never referenced, and with no acknowledgement of a frame of the current width among
the last `HISTORY` frames (after a width switch, or when acknowledgements stop) it sends a keyframe.
The decoder (`ReferenceStore`) keeps the symbols of the frames it decoded and refuses a packet whose
reference it does not hold or holds with another CRC32 than the packet names (`MissingReferenceError`),
or which is not newer than the last frame it decoded of that stream: it never decodes against wrong
symbols. The decoder node reports a missing reference to the encoder, which forgets that acknowledgement
and every earlier one, so a restarted decoder gets a keyframe on the next frame.
Numpy only: the onboard runtime uses it without torch.
"""

from __future__ import annotations

import os
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np

from ..errors import MissingReferenceError, PacketError
from .packet import Packet

HISTORY = 16  # frames the encoder keeps as candidate references, and the decoder keeps per stream
# A residual codes in fewer bytes than its frame while it has fewer than about half the frame's nonzero
# symbols (measured on the held-out moving-camera clip: bytes ratio 0.7-0.9 at a third, 1.3-1.5 at 0.8);
# counting them costs nothing, unlike coding the frame twice.
DELTA_NONZERO = 0.5
MAX_STREAMS = 64  # encoder runs the decoder keeps references of (least recently decoded dropped first)


def symbols_crc(symbols: np.ndarray) -> int:
    """CRC32 of int32 symbols in C order, little-endian: what a packet names its reference by."""
    return zlib.crc32(np.ascontiguousarray(symbols, "<i4").tobytes())


def new_stream_id() -> int:
    """A random nonzero 32-bit id for one encoder run (frame ids restart with every run)."""
    return int.from_bytes(os.urandom(4), "little") or 1


@dataclass(frozen=True)
class Reference:
    """One frame's decoded symbols, as both sides hold them."""

    frame_id: int
    width_index: int
    symbols: np.ndarray  # int32 [C, H, W]
    crc: int


class ReferenceHistory:
    """The encoder's side: the symbols of its last `HISTORY` frames, and which ones the decoder acknowledged."""

    def __init__(self, stream_id: int):
        self.stream_id = stream_id
        self._frames: OrderedDict[int, Reference] = OrderedDict()
        self._acked: set[int] = set()

    def add(self, frame_id: int, width_index: int, symbols: np.ndarray) -> None:
        """Remember a frame just sent (the oldest beyond `HISTORY` is forgotten)."""
        self._frames[frame_id] = Reference(frame_id, width_index, symbols, symbols_crc(symbols))
        while len(self._frames) > HISTORY:
            old, _ = self._frames.popitem(last=False)
            self._acked.discard(old)

    def acknowledge(self, stream_id: int, frame_id: int, width_index: int) -> bool:
        """The decoder decoded `frame_id`; False (ignored) for another run's or a forgotten frame."""
        ref = self._frames.get(frame_id)
        if stream_id != self.stream_id or ref is None or ref.width_index != width_index:
            return False
        self._acked.add(frame_id)
        return True

    def forget(self, stream_id: int, frame_id: int) -> bool:
        """The decoder does not hold `frame_id`: no frame up to it is referenced again (False: another run's)."""
        if stream_id != self.stream_id:
            return False
        self._acked = {k for k in self._acked if k > frame_id}
        return True

    def reference(self, width_index: int) -> Reference | None:
        """The newest acknowledged frame of this width still remembered, or None (send a keyframe)."""
        for frame_id in sorted(self._acked, reverse=True):
            ref = self._frames[frame_id]
            if ref.width_index == width_index:
                return ref
        return None


def encode_frame(history: ReferenceHistory, coder, packet: Packet, symbols: np.ndarray) -> Packet:
    """Code one frame's symbols into `packet` (a version-3 packet with its payload still empty): the
    residual to the history's reference when there is one and the residual has at most
    `DELTA_NONZERO` times the frame's nonzero symbols, else a keyframe. The frame joins the history."""
    ref = history.reference(packet.width_index)
    residual = None if ref is None else symbols - ref.symbols
    if residual is None or np.count_nonzero(residual) > DELTA_NONZERO * np.count_nonzero(symbols):
        packet = replace(packet, payload=coder.encode(symbols))
    else:
        packet = replace(packet, payload=coder.encode(residual), ref_frame_id=ref.frame_id, ref_crc=ref.crc)
    history.add(packet.frame_id, packet.width_index, symbols)
    return packet


class ReferenceStore:
    """The decoder's side: the symbols of the last `HISTORY` decoded frames of each stream. Thread-safe
    (a node screens arrivals in one thread and decodes in another)."""

    def __init__(self):
        self._streams: OrderedDict[int, OrderedDict[int, Reference]] = OrderedDict()
        self._lock = threading.Lock()

    def copy(self) -> ReferenceStore:
        """A store holding the same references (which are never changed in place)."""
        new = ReferenceStore()
        with self._lock:
            new._streams = OrderedDict((k, OrderedDict(v)) for k, v in self._streams.items())
        return new

    def check(self, packet: Packet) -> Reference | None:
        """The reference a version-3 packet needs (None for a keyframe); PacketError when it is not held,
        is of another width or other symbols, or the packet is not newer than the stream's last frame."""
        with self._lock:
            frames = self._streams.get(packet.stream_id)
            return self._check(packet, frames)

    @staticmethod
    def _check(packet: Packet, frames: OrderedDict[int, Reference] | None) -> Reference | None:
        if frames and packet.frame_id <= next(reversed(frames)):
            raise PacketError(f"frame {packet.frame_id} of stream {packet.stream_id:08x} arrived after frame "
                              f"{next(reversed(frames))}: stale or reordered")
        if packet.ref_frame_id is None:
            return None
        ref = frames.get(packet.ref_frame_id) if frames else None
        if ref is None:
            raise MissingReferenceError(f"frame {packet.frame_id} references frame {packet.ref_frame_id} of stream "
                                        f"{packet.stream_id:08x}, which this decoder does not hold",
                                        packet.stream_id, packet.ref_frame_id)
        if ref.width_index != packet.width_index or ref.crc != packet.ref_crc:
            raise MissingReferenceError(f"frame {packet.frame_id}: the held frame {packet.ref_frame_id} is not its "
                                        "reference (other width or other symbols)", packet.stream_id,
                                        packet.ref_frame_id)
        return ref

    def decode(self, packet: Packet, coder, padding: int = 0) -> np.ndarray:
        """A version-3 packet's symbols (its payload decoded by the width's `ContextCoder`, plus the reference's
        symbols for a delta); PacketError as `check`. The caller `add`s them once it has accepted the frame.
        `padding` zero bytes follow the payload (rANS reads past a forged one)."""
        ref = self.check(packet)
        symbols = coder.decode(packet.payload + bytes(padding), packet.latent_shape)
        return symbols if ref is None else symbols + ref.symbols

    def add(self, packet: Packet, symbols: np.ndarray) -> None:
        """Keep a decoded frame's symbols as a reference for the frames after it."""
        ref = Reference(packet.frame_id, packet.width_index, symbols, symbols_crc(symbols))
        with self._lock:
            frames = self._streams.pop(packet.stream_id, None) or OrderedDict()
            self._streams[packet.stream_id] = frames  # most recently decoded stream last
            frames[packet.frame_id] = ref
            while len(frames) > HISTORY:
                frames.popitem(last=False)
            while len(self._streams) > MAX_STREAMS:
                self._streams.popitem(last=False)

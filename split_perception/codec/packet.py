"""The wire format: one self-describing, versioned, CRC-protected packet per frame.

Version 2 (a frame that decodes on its own), little-endian, 58-byte header + payload + 4-byte CRC32
over everything before it:

    magic "SPFC" | version u8 | width_index u8 | width_milli u16 | fingerprint 16 bytes |
    frame_id u64 | stamp_ns i64 | image_h u16 | image_w u16 | channels u16 |
    latent_h u16 | latent_w u16 | payload_len u32 | payload | crc32 u32

Version 3 (temporal coding, `codec/temporal.py`) inserts 17 bytes before payload_len:

    ... latent_w u16 | stream_id u32 | flags u8 | ref_frame_id u64 | ref_crc u32 | payload_len u32 | ...

`stream_id` names the encoder run whose frames may reference each other; flag bit 0 says the payload
is the residual to the symbols of frame `ref_frame_id` of that stream, whose symbols have the CRC32
`ref_crc` (a decoder holding other symbols under that id refuses the packet). Without the flag
(a keyframe) the payload decodes on its own and both reference fields are 0.

`parse` never trusts a length it has not bounded, and raises `PacketError` with the reason for
anything malformed.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..errors import PacketError

MAGIC = b"SPFC"
INTRA_VERSION = 2  # 2: context-coded payload, decodable alone
VERSION = 3  # 3: + stream id and reference (temporal coding)
FLAG_DELTA = 1  # the payload is the residual to the reference's symbols
_PREFIX = struct.Struct("<4sB")
_HEADERS = {INTRA_VERSION: struct.Struct("<4sBBH16sQqHHHHHI"), VERSION: struct.Struct("<4sBBH16sQqHHHHHIBQII")}
HEADER_SIZE = _HEADERS[INTRA_VERSION].size  # the smallest header
MAX_HEADER_SIZE = _HEADERS[VERSION].size  # the largest
CRC_SIZE = 4
MAX_PAYLOAD = 4 * 1024 * 1024  # far above any real frame; bounds what a header may claim
MAX_DIM = 4096  # image and latent sides
MAX_CHANNELS = 1024
FINGERPRINT_BYTES = 16


@dataclass(frozen=True)
class Packet:
    """One encoded frame: entropy-coded bottleneck plus everything needed to decode it (with its
    reference, for a version-3 delta)."""

    fingerprint: bytes  # first 16 bytes of the model's SHA-256 fingerprint
    width_index: int
    width: float
    frame_id: int
    stamp_ns: int
    image_size: tuple[int, int]  # (h, w) of the source image
    latent_shape: tuple[int, int, int]  # (channels, h, w)
    payload: bytes
    version: int = INTRA_VERSION
    stream_id: int = 0  # version 3: the encoder run
    ref_frame_id: int | None = None  # version 3: the referenced frame, None for a keyframe
    ref_crc: int = 0  # version 3: CRC32 of the reference's symbols (`codec/temporal.py`)

    @property
    def temporal(self) -> bool:
        """Whether the frame belongs to a temporally coded stream (a decoder keeps its symbols)."""
        return self.version == VERSION

    def to_bytes(self) -> bytes:
        c, lh, lw = self.latent_shape
        ih, iw = self.image_size
        for name, value, hi in (("image height", ih, MAX_DIM), ("image width", iw, MAX_DIM),
                                ("latent height", lh, MAX_DIM), ("latent width", lw, MAX_DIM),
                                ("channels", c, MAX_CHANNELS)):
            if not 1 <= value <= hi:
                raise PacketError(f"{name} {value} outside 1..{hi}")
        if len(self.payload) > MAX_PAYLOAD:
            raise PacketError(f"payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD}")
        if len(self.fingerprint) != FINGERPRINT_BYTES:
            raise PacketError(f"fingerprint must be {FINGERPRINT_BYTES} bytes")
        if self.version not in _HEADERS:
            raise PacketError(f"packet format version {self.version}: only {sorted(_HEADERS)} exist")
        if self.version == INTRA_VERSION and (self.stream_id or self.ref_frame_id is not None):
            raise PacketError("a version-2 packet has no stream or reference")
        fields = [MAGIC, self.version, self.width_index, int(round(self.width * 1000)), self.fingerprint,
                  self.frame_id & 0xFFFFFFFFFFFFFFFF, self.stamp_ns, ih, iw, c, lh, lw]
        if self.version == VERSION:
            delta = self.ref_frame_id is not None
            fields += [self.stream_id & 0xFFFFFFFF, FLAG_DELTA if delta else 0,
                       self.ref_frame_id & 0xFFFFFFFFFFFFFFFF if delta else 0, self.ref_crc if delta else 0]
        body = _HEADERS[self.version].pack(*fields, len(self.payload)) + self.payload
        return body + struct.pack("<I", zlib.crc32(body))


def parse(data: bytes | bytearray | memoryview) -> Packet:
    """Bytes -> Packet (version 2 or 3), or PacketError saying what is wrong. Allocates at most len(data)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PacketError(f"packet must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_SIZE + CRC_SIZE:
        raise PacketError(f"truncated packet: {len(data)} bytes, the header alone needs {HEADER_SIZE + CRC_SIZE}")
    magic, version = _PREFIX.unpack_from(data, 0)
    if magic != MAGIC:
        raise PacketError(f"bad magic {magic!r}: not a split_perception packet")
    if version not in _HEADERS:
        raise PacketError(f"packet format version {version}, this decoder reads versions {sorted(_HEADERS)}")
    header = _HEADERS[version]
    if len(data) < header.size + CRC_SIZE:
        raise PacketError(f"truncated packet: {len(data)} bytes, a version-{version} header needs "
                          f"{header.size + CRC_SIZE}")
    (_, _, width_index, width_milli, fp, frame_id, stamp_ns, ih, iw, c, lh, lw, *extra) = header.unpack_from(data, 0)
    payload_len = extra[-1]
    if payload_len > MAX_PAYLOAD:
        raise PacketError(f"header claims a {payload_len}-byte payload, limit is {MAX_PAYLOAD}")
    expected = header.size + payload_len + CRC_SIZE
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "oversized"
        raise PacketError(f"{kind} packet: {len(data)} bytes, header says {expected}")
    (crc,) = struct.unpack_from("<I", data, expected - CRC_SIZE)
    if zlib.crc32(data[: expected - CRC_SIZE]) != crc:
        raise PacketError("CRC32 mismatch: packet corrupted in transit")
    if not (1 <= ih <= MAX_DIM and 1 <= iw <= MAX_DIM and 1 <= lh <= MAX_DIM and 1 <= lw <= MAX_DIM
            and 1 <= c <= MAX_CHANNELS):
        raise PacketError(f"implausible shapes: image {ih}x{iw}, latent {c}x{lh}x{lw}")
    stream = {}
    if version == VERSION:
        stream_id, flags, ref_frame_id, ref_crc, _ = extra
        if flags & ~FLAG_DELTA:
            raise PacketError(f"unknown flags {flags:#04x} in a version-3 header")
        if flags & FLAG_DELTA:
            if ref_frame_id >= frame_id:
                raise PacketError(f"frame {frame_id} references frame {ref_frame_id}, which is not an earlier one")
            stream = {"ref_frame_id": ref_frame_id, "ref_crc": ref_crc}
        elif ref_frame_id or ref_crc:
            raise PacketError("a keyframe names a reference")
        stream.update(version=version, stream_id=stream_id)
    return Packet(fp, width_index, width_milli / 1000.0, frame_id, stamp_ns, (ih, iw), (c, lh, lw),
                  data[header.size: header.size + payload_len], **stream)

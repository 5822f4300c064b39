"""The wire format: one self-describing, versioned, CRC-protected packet per frame.

Layout (little-endian), 58-byte header + payload + 4-byte CRC32 over everything before it:

    magic "SPFC" | version u8 | width_index u8 | width_milli u16 | fingerprint 16 bytes |
    frame_id u64 | stamp_ns i64 | image_h u16 | image_w u16 | channels u16 |
    latent_h u16 | latent_w u16 | payload_len u32 | payload | crc32 u32

Every frame decodes on its own (a lost message loses one frame). `parse` never trusts a length
it has not bounded, and raises `PacketError` with the reason for anything malformed.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..errors import PacketError

MAGIC = b"SPFC"
VERSION = 2  # 2: context-coded payload
_HEADER = struct.Struct("<4sBBH16sQqHHHHHI")
HEADER_SIZE = _HEADER.size
CRC_SIZE = 4
MAX_PAYLOAD = 4 * 1024 * 1024  # far above any real frame; bounds what a header may claim
MAX_DIM = 4096  # image and latent sides
MAX_CHANNELS = 1024
FINGERPRINT_BYTES = 16


@dataclass(frozen=True)
class Packet:
    """One encoded frame: entropy-coded bottleneck plus everything needed to decode it alone."""

    fingerprint: bytes  # first 16 bytes of the model's SHA-256 fingerprint
    width_index: int
    width: float
    frame_id: int
    stamp_ns: int
    image_size: tuple[int, int]  # (h, w) of the source image
    latent_shape: tuple[int, int, int]  # (channels, h, w)
    payload: bytes

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
        head = _HEADER.pack(MAGIC, VERSION, self.width_index, int(round(self.width * 1000)), self.fingerprint,
                            self.frame_id & 0xFFFFFFFFFFFFFFFF, self.stamp_ns, ih, iw, c, lh, lw, len(self.payload))
        body = head + self.payload
        return body + struct.pack("<I", zlib.crc32(body))


def parse(data: bytes | bytearray | memoryview) -> Packet:
    """Bytes -> Packet, or PacketError saying what is wrong. Allocates at most len(data)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PacketError(f"packet must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_SIZE + CRC_SIZE:
        raise PacketError(f"truncated packet: {len(data)} bytes, the header alone needs {HEADER_SIZE + CRC_SIZE}")
    (magic, version, width_index, width_milli, fp, frame_id, stamp_ns, ih, iw, c, lh, lw,
     payload_len) = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise PacketError(f"bad magic {magic!r}: not a split_perception packet")
    if version != VERSION:
        raise PacketError(f"packet format version {version}, this decoder reads version {VERSION}")
    if payload_len > MAX_PAYLOAD:
        raise PacketError(f"header claims a {payload_len}-byte payload, limit is {MAX_PAYLOAD}")
    expected = HEADER_SIZE + payload_len + CRC_SIZE
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "oversized"
        raise PacketError(f"{kind} packet: {len(data)} bytes, header says {expected}")
    (crc,) = struct.unpack_from("<I", data, expected - CRC_SIZE)
    if zlib.crc32(data[: expected - CRC_SIZE]) != crc:
        raise PacketError("CRC32 mismatch: packet corrupted in transit")
    if not (1 <= ih <= MAX_DIM and 1 <= iw <= MAX_DIM and 1 <= lh <= MAX_DIM and 1 <= lw <= MAX_DIM
            and 1 <= c <= MAX_CHANNELS):
        raise PacketError(f"implausible shapes: image {ih}x{iw}, latent {c}x{lh}x{lw}")
    return Packet(fp, width_index, width_milli / 1000.0, frame_id, stamp_ns, (ih, iw), (c, lh, lw),
                  data[HEADER_SIZE: HEADER_SIZE + payload_len])

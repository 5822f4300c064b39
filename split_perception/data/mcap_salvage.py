"""Messages of a damaged MCAP file, in file order, up to the first damaged record.

rosbags needs an intact footer and index; a bag cut short by a crash or a full disk has neither.
This scan reads the records from the start instead (inside uncompressed chunks too, so a cut
chunk keeps its first messages) and stops at the first record that does not fit, reporting where.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

MAGIC = b"\x89MCAP0\r\n"
OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK, OP_DATA_END, OP_FOOTER = 0x03, 0x04, 0x05, 0x06, 0x0F, 0x02


@dataclass
class McapMessage:
    topic: str
    msgtype: str  # ROS type name from the schema, e.g. sensor_msgs/msg/Image
    log_time_ns: int
    data: bytes  # CDR


class McapDamage(Exception):
    """Where the scan stopped: byte offset in the file and why."""

    def __init__(self, offset: int, reason: str):
        super().__init__(f"damaged at byte {offset}: {reason}")
        self.offset, self.reason = offset, reason


class _Cursor:
    def __init__(self, data: bytes | memoryview, base: int):
        self.data, self.pos, self.base = memoryview(data), 0, base  # base: file offset of data[0]

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise McapDamage(self.base + self.pos, f"record needs {n} bytes, {len(self.data) - self.pos} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def string(self) -> str:
        try:
            return bytes(self.take(self.u32())).decode("utf-8")
        except UnicodeDecodeError:
            raise McapDamage(self.base + self.pos, "string is not UTF-8") from None

    def done(self) -> bool:
        return self.pos >= len(self.data)


def salvage_messages(path: str | Path) -> Iterator[McapMessage]:
    """Yield every message before the first damage; then raise McapDamage (also for a missing
    footer, i.e. a truncated file). Returns normally only for an intact file."""
    data = Path(path).read_bytes()
    if data[:8] != MAGIC:
        raise McapDamage(0, "not an MCAP file (bad magic)")
    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str]] = {}
    complete = yield from _records(_Cursor(data, 0), 8, schemas, channels, top=True)
    if not complete:  # all records whole, but no data-end/footer record: cut at a record boundary
        raise McapDamage(len(data), "file ends without the MCAP footer (truncated)")


def _records(cur: _Cursor, start: int, schemas: dict, channels: dict, top: bool):
    """Generator of the messages in `cur`; returns True when it reached the data-end or footer."""
    cur.pos = start
    while not cur.done():
        at = cur.base + cur.pos
        op = cur.take(1)[0]
        length = cur.u64()
        left = len(cur.data) - cur.pos
        if length > left and not (top and op == OP_CHUNK):  # a cut chunk may still hold whole messages
            raise McapDamage(at, f"record (opcode 0x{op:02x}) of {length} bytes runs past the end ({left} left)")
        rec = _Cursor(cur.take(min(length, left)), cur.base + cur.pos - min(length, left))
        if op == OP_FOOTER and top:
            return True
        if op == OP_SCHEMA:
            key, name = rec.u16(), rec.string()
            schemas[key] = name
        elif op == OP_CHANNEL:
            key, schema_id, topic = rec.u16(), rec.u16(), rec.string()
            channels[key] = (topic, schemas.get(schema_id, ""))
        elif op == OP_MESSAGE:
            cid = rec.u16()
            rec.u32()  # sequence
            log_time = rec.u64()
            rec.u64()  # publish time
            if cid not in channels:
                raise McapDamage(at, f"message on unknown channel {cid}")
            topic, msgtype = channels[cid]
            yield McapMessage(topic, msgtype, log_time, bytes(rec.data[rec.pos:]))
        elif op == OP_CHUNK and top:
            yield from _chunk(rec, at, schemas, channels)
            if length > left:
                raise McapDamage(at, f"chunk of {length} bytes cut off after {left}")
        elif op == OP_DATA_END and top:
            return True
    return False


def _chunk(rec: _Cursor, at: int, schemas: dict, channels: dict) -> Iterator[McapMessage]:
    """Messages of one chunk record (`at`: its file offset); an uncompressed one may be cut short."""
    rec.u64(), rec.u64()  # message start/end time
    size = rec.u64()
    rec.u32()  # CRC of the uncompressed records (rosbags writes 0; decompress checks it where set)
    compression = rec.string()
    payload_len = rec.u64()
    if compression == "":
        inner = _Cursor(rec.data[rec.pos:rec.pos + payload_len], rec.base + rec.pos)
        yield from _records(inner, 0, schemas, channels, top=False)
        return
    from rosbags.rosbag2.storage_mcap import decompress

    try:
        raw = decompress(bytes(rec.take(payload_len)), compression, size, 0)
        messages = list(_records(_Cursor(raw, 0), 0, schemas, channels, top=False))
    except McapDamage as exc:
        raise McapDamage(at, f"inside the {compression} chunk: {exc.reason}") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is damage here
        raise McapDamage(at, f"{compression} chunk does not decompress ({exc})") from None
    yield from messages

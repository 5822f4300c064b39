"""Wire format: round trip, and typed errors for truncated, corrupt and foreign bytes."""

import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from split_perception.codec.packet import (
    HEADER_SIZE,
    INTRA_VERSION,
    MAX_CHANNELS,
    MAX_DIM,
    MAX_PAYLOAD,
    VERSION,
    Packet,
    parse,
)
from split_perception.errors import PacketError

FP = bytes(range(16))


def make(payload=b"\x01\x02\x03" * 10, **temporal) -> Packet:
    return Packet(FP, 2, 0.75, 42, 1_700_000_000_123_456_789, (480, 640), (12, 30, 40), payload, **temporal)


KINDS = {"v2": {}, "v3 keyframe": {"version": VERSION, "stream_id": 0xDEADBEEF},
         "v3 delta": {"version": VERSION, "stream_id": 7, "ref_frame_id": 41, "ref_crc": 0x12345678}}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_round_trip_keeps_every_field(kind):
    p = make(**KINDS[kind])
    assert parse(p.to_bytes()) == p


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_truncation_is_refused(kind):
    data = make(**KINDS[kind]).to_bytes()
    for n in range(len(data)):
        with pytest.raises(PacketError):
            parse(data[:n])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_single_bit_flip_is_refused(kind):
    data = bytearray(make(**KINDS[kind]).to_bytes())
    for i in range(len(data)):
        for bit in (0, 7):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            with pytest.raises(PacketError):
                parse(bytes(flipped))


@pytest.mark.parametrize("version", [1, 99])  # 1: factorized coding, which this decoder no longer reads
def test_other_version_is_refused_with_reason(version):
    data = bytearray(make().to_bytes())
    data[4] = version
    body = bytes(data[:-4])
    with pytest.raises(PacketError, match=f"version {version}"):
        parse(body + struct.pack("<I", zlib.crc32(body)))


def test_huge_claimed_payload_is_refused_before_allocation():
    data = bytearray(make().to_bytes()[:HEADER_SIZE])
    struct.pack_into("<I", data, HEADER_SIZE - 4, MAX_PAYLOAD + 1)
    with pytest.raises(PacketError, match="limit"):
        parse(bytes(data) + b"\x00" * 4)


def test_non_bytes_input_is_refused():
    with pytest.raises(PacketError):
        parse("not bytes")  # type: ignore[arg-type]


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data):
    try:
        parse(data)
    except PacketError:
        pass


sides = st.integers(0, MAX_DIM + 10)


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 255), st.integers(0, 2**16 - 1), st.binary(min_size=16, max_size=16), st.integers(0, 2**64 - 1),
       st.integers(-2**63, 2**63 - 1), sides, sides, st.integers(0, MAX_CHANNELS + 10), sides, sides,
       st.binary(max_size=200), st.one_of(st.none(), st.integers(0, 2**32 - 1)))
def test_header_with_valid_crc_is_accepted_exactly_when_length_and_shapes_hold(
        width_index, width_milli, fp, frame_id, stamp_ns, ih, iw, c, lh, lw, payload, claimed_len):
    """Any header (claimed payload length included: the true one or any u32) behind a valid CRC."""
    length = len(payload) if claimed_len is None else claimed_len
    body = struct.pack("<4sBBH16sQqHHHHHI", b"SPFC", INTRA_VERSION, width_index, width_milli, fp, frame_id, stamp_ns,
                       ih, iw, c, lh, lw, length) + payload
    data = body + struct.pack("<I", zlib.crc32(body))
    plausible = all(1 <= v <= MAX_DIM for v in (ih, iw, lh, lw)) and 1 <= c <= MAX_CHANNELS
    if length != len(payload) or not plausible:
        with pytest.raises(PacketError):
            parse(data)
        return
    p = parse(data)
    assert (p.fingerprint, p.width_index, p.frame_id, p.stamp_ns) == (fp, width_index, frame_id, stamp_ns)
    assert (p.image_size, p.latent_shape, p.payload) == ((ih, iw), (c, lh, lw), payload)
    assert p.to_bytes() == data


V3_HEADER = "<4sBBH16sQqHHHHHIBQII"


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 255), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
       st.integers(0, 2**32 - 1))
def test_v3_reference_fields_with_valid_crc_are_accepted_exactly_when_consistent(
        stream_id, flags, frame_id, ref_frame_id, ref_crc):
    """Any stream id, flags and reference behind a valid CRC: a delta must reference an earlier frame,
    a keyframe names no reference, and no unknown flag is accepted."""
    payload = b"\x05" * 9
    body = struct.pack(V3_HEADER, b"SPFC", VERSION, 1, 500, FP, frame_id, 0, 48, 64, 8, 6, 8, stream_id, flags,
                       ref_frame_id, ref_crc, len(payload)) + payload
    data = body + struct.pack("<I", zlib.crc32(body))
    delta = flags == 1 and ref_frame_id < frame_id
    keyframe = flags == 0 and ref_frame_id == 0 and ref_crc == 0
    if not (delta or keyframe):
        with pytest.raises(PacketError):
            parse(data)
        return
    p = parse(data)
    assert (p.version, p.stream_id, p.frame_id, p.payload) == (VERSION, stream_id, frame_id, payload)
    assert (p.ref_frame_id, p.ref_crc) == ((ref_frame_id, ref_crc) if delta else (None, 0))
    assert p.to_bytes() == data


def test_a_v2_packet_cannot_carry_a_reference():
    with pytest.raises(PacketError, match="version-2"):
        make(stream_id=3).to_bytes()

"""Hypothesis against the decoder node's own callbacks, in one process with real rclpy messages.

Not collected on its own (the messages need the ROS environment): test/test_callback_fuzz.py runs
it with that environment. Every message field is arbitrary, the packet is random or a mutated real
one; the node must refuse and count, never raise, and keep publishing valid LinkStatus messages.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import rclpy
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from split_perception.fuzz import corpus
from split_perception.msg import EncodedFeatures
from split_perception.onboard.encoder import OnboardEncoder
from split_perception.ros.decoder_node import DecoderNode

MODEL = os.environ["SPLIT_PERCEPTION_FUZZ_MODEL"]
CASES = int(os.environ.get("SPLIT_PERCEPTION_FUZZ_CASES", "500"))
SEEDS = corpus(OnboardEncoder(MODEL))


@pytest.fixture(scope="module")
def ros():
    rclpy.init(args=["--ros-args", "-p", f"model_path:={MODEL}", "-p", "publish_annotated:=true", "-p", "threads:=1"])
    yield
    rclpy.shutdown()


@pytest.fixture
def node(ros):
    """A decoder node of this test's own (counters at zero), its worker stopped: the test does the
    worker's step itself."""
    n = DecoderNode()
    n.close()
    yield n
    n.destroy_node()


def work(node) -> None:
    """What the node's worker does on waking: decode the frame waiting in the slot, if any."""
    batch = node.slots.take(timeout=0.0)
    if batch:
        node._decode(batch)


@st.composite
def packets(draw) -> bytes:
    kind = draw(st.sampled_from(["real", "mutated", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=4096))
    data = bytearray(draw(st.sampled_from(SEEDS)))
    if kind == "mutated":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def message(packet: bytes, frame_id: int) -> EncodedFeatures:
    m = EncodedFeatures()
    m.frame_id, m.width, m.packet = frame_id, 1.0, packet
    return m


@st.composite
def messages(draw) -> EncodedFeatures:
    m = EncodedFeatures()
    m.header.stamp.sec = draw(st.integers(-2**31, 2**31 - 1))
    m.header.stamp.nanosec = draw(st.integers(0, 2**32 - 1))
    m.header.frame_id = draw(st.text(max_size=20))
    m.model_fingerprint = draw(st.text(max_size=70))
    m.width = draw(st.floats(width=32))
    m.frame_id = draw(st.integers(0, 2**64 - 1))
    m.image_height, m.image_width = draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1))
    m.encode_ms = draw(st.floats(width=32))
    m.packet = draw(packets())
    return m


@settings(max_examples=CASES, deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])  # no explain: its tracer breaks here
@given(msgs=st.lists(messages(), min_size=1, max_size=3))
def test_any_message_is_decoded_or_refused_and_counted(node, msgs):
    stream = node.streams[""]
    counted = lambda: stream.decoded + stream.bad_packets + node.slots.dropped("")
    before = counted()
    for msg in msgs:
        stream._on_features(msg)  # the subscription callback: link statistics, bad packets refused
    work(node)
    assert counted() == before + len(msgs)  # each decoded, refused, or replaced by a newer one
    before = stream.decoded + stream.bad_packets
    node._decode([("", msg) for msg in msgs])  # the decode step alone, every message in one batch
    assert stream.decoded + stream.bad_packets == before + len(msgs)
    node._publish_status()  # LinkStatus from whatever arrived: must stay a valid message
    s = stream.stats.snapshot(0.0)
    assert 0.0 <= s.loss_rate <= 1.0 and np.isfinite([s.throughput_bps, s.fps, s.latency_ms]).all()


def test_real_packets_decoded_and_corrupt_ones_refused(node):
    """Every real packet is decoded and every corrupted copy (one byte changed, or cut short) refused,
    one at a time and all in one batch."""
    corrupt = [p[:-1] for p in SEEDS] + [p[:20] + bytes([p[20] ^ 0xFF]) + p[21:] for p in SEEDS]
    stream = node.streams[""]
    for i, packet in enumerate([*SEEDS, *corrupt]):
        stream._on_features(message(packet, i))
        work(node)
    assert (stream.decoded, stream.bad_packets) == (len(SEEDS), len(corrupt))
    s = stream.stats.snapshot(0.0)
    assert (s.frames_received, s.frames_lost) == (len(SEEDS) + len(corrupt), 0)
    node._decode([("", message(p, i)) for i, p in enumerate([*corrupt, *SEEDS])])
    assert (stream.decoded, stream.bad_packets) == (2 * len(SEEDS), 2 * len(corrupt))

"""What the decoder node keeps per robot: its topics, link statistics, counters and diagnostics."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image

from ..errors import ConfigError, MissingReferenceError, ModelMismatchError, PacketError
from ..health import Counters
from ..link.stats import LinkStats
from ..msg import Detection2D, Detection2DArray, EncodedFeatures, FrameAck, LinkStatus
from ..offboard.decoder import DecodedFrame, OffboardDecoder
from ..offboard.visualize import draw_detections
from ..stamps import stamp_ns
from .common import LatestSlots
from .diagnostics import Diagnostics
from .image_conversion import rgb_to_image

MAX_PLAUSIBLE_LATENCY_MS = 60_000.0
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*$")


def check_robot_names(robots: list[str]) -> list[str]:
    """Robot names as namespaces (`r1`, `fleet/r2`): valid ROS names, no duplicates."""
    names = [r.strip("/") for r in robots]
    bad = [r for r in names if not _NAME.match(r)]
    if bad:
        raise ConfigError(f"robots: {bad} are not valid ROS namespaces (letters, digits, _ and /)")
    if len(set(names)) != len(names):
        raise ConfigError(f"robots: duplicate names in {names}")
    return names


def to_detection_array(frame: DecodedFrame, header) -> Detection2DArray:
    out = Detection2DArray()
    out.header = header
    for d in frame.detections:
        x1, y1, x2, y2 = d.box
        m = Detection2D()
        m.id, m.class_id, m.score = d.label, int(d.label_id), float(d.score)
        m.center_x, m.center_y = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        m.size_x, m.size_y = x2 - x1, y2 - y1
        out.detections.append(m)
    return out


class RobotStream:
    """One robot's `features` in, its `detections`, `segmentation`, `annotated`, `link_status` and
    `features_ack` (temporally coded frames decoded, or references missing) out.

    `name` is the robot's namespace ("" = the node's own topics, a single robot). Arrivals are
    measured in the subscription callback; packets go to the node's shared slots under `name`.
    """

    def __init__(self, node: Node, name: str, slots: LatestSlots, qos, window_s: float, diagnostics_period: float,
                 decoder: OffboardDecoder):
        self.name, self._node, self._slots, self._decoder = name, node, slots, decoder
        prefix = f"{name}/" if name else ""
        self.stats = LinkStats(window_s)
        self._lock = threading.Lock()
        self.corrupt = self.mismatched = self.decoded = 0  # refused: corrupt / another model's
        self.decode_ms_total = 0.0
        self.width = 0.0  # of the latest decoded frame
        node.create_subscription(EncodedFeatures, prefix + "features", self._on_features, qos)
        self.det_pub = node.create_publisher(Detection2DArray, prefix + "detections", 10)
        self.mask_pub = node.create_publisher(Image, prefix + "segmentation", 5)
        self.vis_pub = node.create_publisher(Image, prefix + "annotated", 5)
        self.status_pub = node.create_publisher(LinkStatus, prefix + "link_status", 10)
        self.ack_pub = node.create_publisher(FrameAck, prefix + "features_ack", qos)
        self.worker_alive = lambda: True  # the node sets its worker's liveness
        self.diagnostics = Diagnostics(node, diagnostics_period, self._diagnostics, decoder.fingerprint[:12],
                                       suffix=name, input_name="packets", bad_name="bad packets",
                                       busy_key="decode_ms")

    @property
    def bad_packets(self) -> int:
        """Every refused packet, as LinkStatus.bad_packets counts them."""
        return self.corrupt + self.mismatched

    def _on_features(self, msg: EncodedFeatures) -> None:
        latency_ms = (time.time_ns() - stamp_ns(msg.header.stamp)) / 1e6
        if not 0.0 <= latency_ms < MAX_PLAUSIBLE_LATENCY_MS:
            latency_ms = None  # replayed stamps or unsynchronised clocks: not a link latency
        with self._lock:
            self.stats.add(time.monotonic(), int(msg.frame_id), len(msg.packet), latency_ms, float(msg.width))
        try:  # refused on arrival: a bad packet never takes the slot of a good frame waiting there
            self._decoder.screen(bytes(msg.packet))
        except (PacketError, ModelMismatchError) as exc:
            self.refused(exc)
            return
        self._slots.put(msg, self.name)

    def refused(self, exc: Exception) -> None:
        """Count a packet refused on arrival or by the decoder, and log it (throttled)."""
        with self._lock:
            if isinstance(exc, ModelMismatchError):
                self.mismatched += 1
            else:
                self.corrupt += 1
        if isinstance(exc, MissingReferenceError):  # the encoder must not reference it (or older) again
            ack = FrameAck(stream_id=exc.stream_id, frame_id=exc.ref_frame_id, held=False)
            ack.header.stamp = self._node.get_clock().now().to_msg()
            self.ack_pub.publish(ack)
        who = f"robot {self.name}: " if self.name else ""
        self._node.get_logger().error(f"{who}packet refused ({self.bad_packets} so far): {exc}",
                                      throttle_duration_sec=5.0)

    def publish(self, frame: DecodedFrame, header, decode_ms: float, mask: bool, annotated: bool) -> None:
        """Detections (+ mask, annotated image) of one decoded frame."""
        self.decode_ms_total += decode_ms
        self.decoded += 1
        self.width = frame.width
        self.det_pub.publish(to_detection_array(frame, header))
        if frame.temporal:  # the encoder may code later frames against this one
            self.ack_pub.publish(FrameAck(header=header, stream_id=frame.stream_id, frame_id=frame.frame_id,
                                          width_index=frame.width_index, held=True))
        if mask and frame.mask is not None:  # a model without a segmentation head publishes detections only
            self.mask_pub.publish(rgb_to_image(frame.mask, header, "mono8"))
        if annotated:
            canvas = np.full((*frame.image_size, 3), 40, np.uint8)
            self.vis_pub.publish(rgb_to_image(draw_detections(canvas, frame.detections, frame.mask), header))

    def publish_status(self) -> None:
        with self._lock:
            s = self.stats.snapshot(time.monotonic())
        m = LinkStatus()
        m.header.stamp = self._node.get_clock().now().to_msg()
        m.throughput_bps, m.latency_ms, m.loss_rate, m.fps = s.throughput_bps, s.latency_ms, s.loss_rate, s.fps
        m.bytes_per_frame, m.width = s.bytes_per_frame, s.width
        m.frames_received, m.frames_lost, m.bad_packets = s.frames_received, s.frames_lost, self.bad_packets
        self.status_pub.publish(m)

    def _diagnostics(self) -> tuple[Counters, dict[str, str]]:
        with self._lock:
            s = self.stats.snapshot(time.monotonic())
        counters = Counters(received=s.frames_received, done=self.decoded, dropped=self._slots.dropped(self.name),
                            bad=self.corrupt, mismatched=self.mismatched, busy_ms=self.decode_ms_total,
                            worker_alive=self.worker_alive())
        return counters, {
            "frames_decoded": str(self.decoded), "bad_packets": str(self.bad_packets),
            "model_mismatches": str(self.mismatched), "width": str(self.width),
            "model_fingerprint": self._decoder.fingerprint, "throughput_bps": f"{s.throughput_bps:.0f}",
            "loss_rate": f"{s.loss_rate:.3f}", "latency_ms": f"{s.latency_ms:.1f}",
            "frames_lost": str(s.frames_lost), "bytes_per_frame": f"{s.bytes_per_frame:.0f}"}

    def summary(self) -> str:
        who = f"robot {self.name}: " if self.name else ""
        return (f"{who}decoded {self.decoded} frames, refused {self.bad_packets} packets "
                f"({self.mismatched} from another model), dropped {self._slots.dropped(self.name)} (decoder busy)")

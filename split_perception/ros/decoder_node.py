"""Offboard decoder node: EncodedFeatures -> detections, segmentation mask, annotated image, LinkStatus.

Arrivals are measured in the subscription callback (bytes, frame-id gaps, latency); decoding runs
in a worker behind a drop-oldest slot. Bad packets are counted and logged (throttled), never fatal.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import Image

from ..errors import ModelMismatchError, PacketError
from ..health import Counters
from ..link.stats import LinkStats
from ..msg import Detection2D, Detection2DArray, EncodedFeatures, LinkStatus
from ..offboard import OffboardDecoder
from ..stamps import stamp_ns
from ..visualize import draw_detections
from .common import LatestSlot, qos_from, run_node
from .diagnostics import Diagnostics
from .image_conversion import rgb_to_image

MAX_PLAUSIBLE_LATENCY_MS = 60_000.0


def to_detection_array(frame, header) -> Detection2DArray:
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


class DecoderNode(Node):
    def __init__(self):
        super().__init__("decoder")
        desc = ParameterDescriptor
        model_path = self.declare_parameter("model_path", "", desc(
            description="checkpoint path; empty = bundled model (must be the encoder's)", read_only=True)).value
        score = self.declare_parameter("score_thresh", -1.0, desc(
            description="minimum detection score; < 0 = the model's default", read_only=True)).value
        self.publish_mask = self.declare_parameter("publish_mask", True, desc(
            description="publish `segmentation` (mono8 class ids)")).value
        self.publish_annotated = self.declare_parameter("publish_annotated", False, desc(
            description="publish `annotated` (rgb8 mask + boxes, for rviz/foxglove)")).value
        reliability = self.declare_parameter("reliability", "best_effort", desc(
            description="QoS reliability of `features`", read_only=True)).value
        period = self.declare_parameter("status_period_s", 1.0, desc(
            description="LinkStatus publishing period", read_only=True)).value
        window = self.declare_parameter("stats_window_s", 2.0, desc(
            description="window of the link statistics", read_only=True)).value
        threads = self.declare_parameter("threads", 2, desc(description="torch CPU threads", read_only=True)).value
        diagnostics_period = self.declare_parameter("diagnostics_period_s", 1.0, desc(
            description="period of the DiagnosticStatus on /diagnostics; 0 = off", read_only=True)).value
        import torch

        torch.set_num_threads(int(threads))
        self.decoder = OffboardDecoder(model_path or None, score_thresh=score if score >= 0 else None)
        self.stats = LinkStats(window)
        self.corrupt = self.mismatched = self.decoded = 0  # refused: corrupt / another model's
        self.decode_ms_total = 0.0
        self.width = 0.0  # of the latest decoded frame
        self.slot = LatestSlot()
        self.create_subscription(EncodedFeatures, "features", self._on_features, qos_from(reliability))
        self.det_pub = self.create_publisher(Detection2DArray, "detections", 10)
        self.mask_pub = self.create_publisher(Image, "segmentation", 5)
        self.vis_pub = self.create_publisher(Image, "annotated", 5)
        self.status_pub = self.create_publisher(LinkStatus, "link_status", 10)
        self.create_timer(period, self._publish_status)
        self._lock = threading.Lock()
        self._running = True
        self._worker = threading.Thread(target=self._work, daemon=True)
        self._worker.start()
        self.diagnostics = Diagnostics(self, diagnostics_period, self._diagnostics, self.decoder.fingerprint[:12],
                                       input_name="packets", bad_name="bad packets", busy_key="decode_ms")
        self.get_logger().info(f"decoder ready: model {self.decoder.fingerprint[:12]}")

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
        self.slot.put(msg)

    def _work(self) -> None:
        while self._running and rclpy.ok():
            msg = self.slot.get()
            if msg is None:
                continue
            try:
                self._decode_one(msg)
            except Exception as exc:  # noqa: BLE001 - keep decoding; shutdown races end here too
                if self._running and rclpy.ok():
                    self.get_logger().error(f"frame dropped: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)

    def _decode_one(self, msg: EncodedFeatures) -> None:
        """Decode one packet and publish detections (+ mask, annotated image); count refusals."""
        t0 = time.perf_counter()
        try:
            frame = self.decoder.decode(bytes(msg.packet), with_mask=self.publish_mask or self.publish_annotated)
        except (PacketError, ModelMismatchError) as exc:
            if isinstance(exc, ModelMismatchError):
                self.mismatched += 1
            else:
                self.corrupt += 1
            self.get_logger().error(f"packet refused ({self.bad_packets} so far): {exc}",
                                    throttle_duration_sec=5.0)
            return
        self.decode_ms_total += 1000.0 * (time.perf_counter() - t0)
        self.decoded += 1
        self.width = frame.width
        self.det_pub.publish(to_detection_array(frame, msg.header))
        if self.publish_mask:
            self.mask_pub.publish(rgb_to_image(frame.mask, msg.header, "mono8"))
        if self.publish_annotated:
            canvas = np.full((*frame.image_size, 3), 40, np.uint8)
            self.vis_pub.publish(rgb_to_image(draw_detections(canvas, frame.detections, frame.mask), msg.header))

    def _publish_status(self) -> None:
        with self._lock:
            s = self.stats.snapshot(time.monotonic())
        m = LinkStatus()
        m.header.stamp = self.get_clock().now().to_msg()
        m.throughput_bps, m.latency_ms, m.loss_rate, m.fps = s.throughput_bps, s.latency_ms, s.loss_rate, s.fps
        m.bytes_per_frame, m.width = s.bytes_per_frame, s.width
        m.frames_received, m.frames_lost, m.bad_packets = s.frames_received, s.frames_lost, self.bad_packets
        self.status_pub.publish(m)

    def _diagnostics(self) -> tuple[Counters, dict[str, str]]:
        with self._lock:
            s = self.stats.snapshot(time.monotonic())
        counters = Counters(received=s.frames_received, done=self.decoded, dropped=self.slot.dropped,
                            bad=self.corrupt, mismatched=self.mismatched, busy_ms=self.decode_ms_total,
                            worker_alive=self._worker.is_alive())
        return counters, {
            "frames_decoded": str(self.decoded), "bad_packets": str(self.bad_packets),
            "model_mismatches": str(self.mismatched), "width": str(self.width),
            "model_fingerprint": self.decoder.fingerprint, "throughput_bps": f"{s.throughput_bps:.0f}",
            "loss_rate": f"{s.loss_rate:.3f}", "latency_ms": f"{s.latency_ms:.1f}",
            "frames_lost": str(s.frames_lost), "bytes_per_frame": f"{s.bytes_per_frame:.0f}"}

    def close(self) -> None:
        self._running = False
        self.slot.close()
        self._worker.join(timeout=2.0)
        self.get_logger().info(f"decoded {self.decoded} frames, refused {self.bad_packets} packets "
                               f"({self.mismatched} from another model), dropped {self.slot.dropped} (decoder busy)")


def main(args=None) -> int:
    return run_node(DecoderNode, args)

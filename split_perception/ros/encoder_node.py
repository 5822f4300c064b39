"""Onboard encoder node: camera Image/CompressedImage -> EncodedFeatures at the current width.

A drop-oldest slot and a worker thread keep latency bounded when frames arrive faster than the
encoder runs. `width` is a dynamic parameter, validated in the on-set callback and applied to the
next frame without reloading anything (`ros2 param set /encoder width 0.5`). With `temporal` on, each
frame is coded against the newest frame the decoder acknowledged on `features_ack` (packet version 3,
`onboard/temporal.py`); without a recent acknowledgement, or after a width switch, a keyframe.
"""

from __future__ import annotations

import threading
import time

import rclpy
from rcl_interfaces.msg import (
    FloatingPointRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from ..config import find_width
from ..errors import ImageError
from ..health import Counters
from ..link.trace import TokenBucket
from ..model_files import MODEL_HELP
from ..msg import EncodedFeatures, FrameAck
from ..onboard.encoder import OnboardEncoder
from ..onboard.temporal import TemporalEncoder
from ..stamps import stamp_ns
from .common import LatestSlots, qos_from, run_node
from .diagnostics import Diagnostics
from .image_conversion import compressed_to_rgb, image_to_rgb


class EncoderNode(Node):
    def __init__(self):
        super().__init__("encoder")
        model_path = self.declare_parameter(
            "model_path", "", ParameterDescriptor(
                description=f"{MODEL_HELP}; empty = the default", read_only=True)).value
        runtime = self.declare_parameter("runtime", "auto", ParameterDescriptor(
            description="encoder runtime: onnx (the checkpoint's onboard export, no torch), torch, or auto "
                        "(onnx when an up-to-date export is there)", read_only=True)).value
        threads = self.declare_parameter("threads", 2, ParameterDescriptor(
            description="CPU threads of the encoder runtime", read_only=True)).value
        self.encoder = OnboardEncoder(model_path or None, runtime=runtime, threads=int(threads))
        self._model_lock = threading.Lock()  # a width switch must not land in the middle of an encode
        self.add_on_set_parameters_callback(self._validate)
        self.add_post_set_parameters_callback(self._apply)
        widths = list(self.encoder.widths)
        self.declare_parameter("width", widths[-1], ParameterDescriptor(
            description=f"encoder width, one of {widths}; takes effect on the next frame",
            floating_point_range=[FloatingPointRange(from_value=0.0, to_value=1.0)]))
        self.declare_parameter("max_rate_hz", 0.0, ParameterDescriptor(
            description="encode at most this many frames per second (0 = as fast as frames come)"))
        input_type = self.declare_parameter("input_type", "raw", ParameterDescriptor(
            description="'raw' (sensor_msgs/Image on `image`) or 'compressed' (CompressedImage on "
                        "`image/compressed`)", read_only=True)).value
        reliability = self.declare_parameter("reliability", "best_effort", ParameterDescriptor(
            description="QoS reliability of `features`: best_effort or reliable", read_only=True)).value
        diagnostics_period = self.declare_parameter("diagnostics_period_s", 1.0, ParameterDescriptor(
            description="period of the DiagnosticStatus on /diagnostics; 0 = off", read_only=True)).value
        temporal = self.declare_parameter("temporal", True, ParameterDescriptor(
            description="code each frame against the newest frame the decoder acknowledged on `features_ack` "
                        "(packet version 3; a keyframe when none is recent); false = every frame alone "
                        "(version 2)", read_only=True)).value
        self.encoder.set_width(self.get_parameter("width").value)
        self.pub = self.create_publisher(EncodedFeatures, "features", qos_from(reliability))
        self.temporal = TemporalEncoder(self.encoder) if temporal else None
        self.acks = 0
        if self.temporal:
            self.create_subscription(FrameAck, "features_ack", self._on_ack, qos_from(reliability))
        if input_type == "compressed":
            self.create_subscription(CompressedImage, "image/compressed", self._on_compressed,
                                     qos_profile_sensor_data)
        elif input_type == "raw":
            self.create_subscription(Image, "image", self._on_image, qos_profile_sensor_data)
        else:
            raise ValueError(f"input_type must be 'raw' or 'compressed', got {input_type!r}")
        self.slot = LatestSlots()
        self.frame_id = 0
        self.received = self.encoded = self.bad_images = self.skipped = 0
        self.encode_ms_total = 0.0
        self.input_type = input_type
        self._rate_bucket = TokenBucket(burst_bytes=2)  # max_rate_hz: one token per frame, bursts of 2 absorb jitter
        self._running = True
        self._worker = threading.Thread(target=self._work, daemon=True)
        self._worker.start()
        self.diagnostics = Diagnostics(self, diagnostics_period, self._diagnostics, self.encoder.fingerprint[:12],
                                       input_name="images", bad_name="bad images", busy_key="encode_ms")
        self.get_logger().info(f"encoder ready: model {self.encoder.fingerprint[:12]}, widths {widths}, "
                               f"width {self.encoder.width}, input {input_type}, runtime {self.encoder.runtime}, "
                               f"temporal {'on' if self.temporal else 'off'}")

    # ---- parameters -------------------------------------------------------------------
    def _validate(self, params) -> SetParametersResult:
        for p in params:
            if p.name == "width" and find_width(self.encoder.widths, p.value) is None:
                return SetParametersResult(successful=False,
                                           reason=f"width {p.value} is not one of {list(self.encoder.widths)}")
            if p.name == "max_rate_hz" and p.value < 0:
                return SetParametersResult(successful=False, reason="max_rate_hz must be >= 0")
        return SetParametersResult(successful=True)

    def _apply(self, params) -> None:
        for p in params:
            if p.name == "width":
                with self._model_lock:
                    self.encoder.set_width(p.value)
                self.get_logger().info(f"width -> {self.encoder.width}")

    # ---- frames -----------------------------------------------------------------------
    def _on_ack(self, msg: FrameAck) -> None:
        with self._model_lock:  # the reference history is read by the encode
            self.acks += self.temporal.acknowledge(msg.stream_id, msg.frame_id, msg.width_index, msg.held)

    def _on_image(self, msg: Image) -> None:
        self.received += 1
        self.slot.put((msg, image_to_rgb))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self.received += 1
        self.slot.put((msg, compressed_to_rgb))

    def _work(self) -> None:
        while self._running and rclpy.ok():
            for _, item in self.slot.take():
                try:
                    self._encode_one(*item)
                except Exception as exc:  # noqa: BLE001 - one bad frame must never stop the stream
                    if self._running and rclpy.ok():
                        self.get_logger().error(f"frame dropped: {type(exc).__name__}: {exc}",
                                                throttle_duration_sec=5.0)

    def _encode_one(self, msg, convert) -> None:
        """Convert, encode at the current width, publish one frame."""
        rate = self.get_parameter("max_rate_hz").value
        if rate > 0:
            self._rate_bucket.refill(time.monotonic(), 8.0 * rate)  # the bucket counts "bytes": 1 per frame
            if not self._rate_bucket.take(1):
                self.skipped += 1
                return  # over the rate limit: this frame is skipped
        try:
            rgb = convert(msg)
        except ImageError as exc:
            self.bad_images += 1
            self.get_logger().warning(f"frame refused ({self.bad_images} so far): {exc}",
                                      throttle_duration_sec=5.0)
            return
        self.frame_id += 1
        ns = stamp_ns(msg.header.stamp)
        t0 = time.perf_counter()
        with self._model_lock:
            width = self.encoder.width
            packet = (self.temporal or self.encoder).encode(rgb, frame_id=self.frame_id, stamp_ns=ns)
        out = EncodedFeatures()
        out.header = msg.header
        out.model_fingerprint = self.encoder.fingerprint
        out.width = float(width)
        out.frame_id = self.frame_id
        out.image_height, out.image_width = int(rgb.shape[0]), int(rgb.shape[1])
        out.encode_ms = 1000.0 * (time.perf_counter() - t0)
        out.packet = packet
        self.pub.publish(out)
        self.encoded += 1
        self.encode_ms_total += out.encode_ms

    def _diagnostics(self) -> tuple[Counters, dict[str, str]]:
        counters = Counters(received=self.received, done=self.encoded, dropped=self.slot.dropped(),
                            bad=self.bad_images, busy_ms=self.encode_ms_total, worker_alive=self._worker.is_alive())
        temporal = {} if self.temporal is None else {
            "keyframes": str(self.temporal.keyframes), "delta_frames": str(self.temporal.deltas),
            "acks_used": str(self.acks), "stream_id": f"{self.temporal.stream_id:08x}"}
        return counters, {**temporal, "frames_encoded": str(self.encoded), "bad_images": str(self.bad_images),
                          "skipped_max_rate": str(self.skipped), "width": str(self.encoder.width),
                          "input_type": self.input_type, "model_fingerprint": self.encoder.fingerprint}

    def close(self) -> None:
        self._running = False
        self.slot.close()
        self._worker.join(timeout=2.0)
        coded = "" if self.temporal is None else (f" ({self.temporal.keyframes} keyframes, "
                                                  f"{self.temporal.deltas} coded against acknowledged frames)")
        self.get_logger().info(f"encoded {self.encoded} frames{coded}, refused {self.bad_images} images, "
                               f"dropped {self.slot.dropped()} (encoder busy)")


def main(args=None) -> int:
    return run_node(EncoderNode, args)

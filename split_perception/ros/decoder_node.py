"""Offboard decoder node: EncodedFeatures -> detections, segmentation mask, annotated image, LinkStatus.

One node serves one robot (its own topics) or a fleet (`robots`: one set of topics per robot
namespace, one model in memory). Arrivals are measured and screened in the subscription callbacks
(a malformed or foreign packet is refused there, before it can displace a good frame); one worker
takes the newest packet of every robot that has one waiting (a drop-oldest slot per robot, so a
slow robot never stalls another) and decodes them as one batch. Bad packets are counted per robot
and logged (throttled), never fatal.
"""

from __future__ import annotations

import threading
import time

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter

from ..errors import ConfigError, SplitPerceptionError
from ..model_files import MODEL_HELP
from ..offboard.decoder import OffboardDecoder
from .common import LatestSlots, qos_from, run_node
from .robot_stream import RobotStream, check_robot_names

FEATURES_TYPE = "split_perception/msg/EncodedFeatures"


class DecoderNode(Node):
    def __init__(self):
        super().__init__("decoder")
        desc = ParameterDescriptor
        model_path = self.declare_parameter("model_path", "", desc(
            description=f"{MODEL_HELP}; empty = the default (must be the encoder's)", read_only=True)).value
        robots = self.declare_parameter("robots", Parameter.Type.STRING_ARRAY, desc(
            description="robot namespaces to serve (<robot>/features in, <robot>/detections ... out); "
                        "unset or empty = one robot on this node's own topics", read_only=True))
        score = self.declare_parameter("score_thresh", -1.0, desc(
            description="minimum detection score; < 0 = the model's default", read_only=True)).value
        self.publish_mask = self.declare_parameter("publish_mask", True, desc(
            description="publish `segmentation` (mono8 class ids), for a model with a segmentation head")).value
        self.publish_annotated = self.declare_parameter("publish_annotated", False, desc(
            description="publish `annotated` (rgb8 mask + boxes, for rviz/foxglove)")).value
        reliability = self.declare_parameter("reliability", "best_effort", desc(
            description="QoS reliability of `features`", read_only=True)).value
        self.max_batch = self.declare_parameter("max_batch", 16, desc(
            description="most frames decoded together (one per robot with a frame waiting)", read_only=True)).value
        period = self.declare_parameter("status_period_s", 1.0, desc(
            description="LinkStatus publishing period", read_only=True)).value
        window = self.declare_parameter("stats_window_s", 2.0, desc(
            description="window of the link statistics", read_only=True)).value
        threads = self.declare_parameter("threads", 2, desc(description="torch CPU threads", read_only=True)).value
        diagnostics_period = self.declare_parameter("diagnostics_period_s", 1.0, desc(
            description="period of the DiagnosticStatus on /diagnostics; 0 = off", read_only=True)).value
        if self.max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {self.max_batch}")
        names = check_robot_names(list(robots.value) if robots.type_ != Parameter.Type.NOT_SET else []) or [""]
        import torch

        torch.set_num_threads(int(threads))
        self.decoder = OffboardDecoder(model_path or None, score_thresh=score if score >= 0 else None)
        self.slots = LatestSlots()
        qos = qos_from(reliability)
        self.streams = {n: RobotStream(self, n, self.slots, qos, window, diagnostics_period, self.decoder)
                        for n in names}
        self.unserved: set[str] = set()
        # fleet: the robots' features topics, fixed for the node's life (checked against the graph)
        self.served = {self.resolve_topic_name(f"{n}/features") for n in names if n}
        self.create_timer(period, self._publish_status)
        self._running = True
        self._worker = threading.Thread(target=self._work, daemon=True)
        for s in self.streams.values():
            s.worker_alive = self._worker.is_alive
        self._worker.start()
        served = f", robots {names}" if names != [""] else ""
        self.get_logger().info(f"decoder ready: model {self.decoder.fingerprint[:12]}{served}")

    def _work(self) -> None:
        while self._running and rclpy.ok():
            pending = self.slots.take()
            for i in range(0, len(pending), self.max_batch):
                try:
                    self._decode(pending[i:i + self.max_batch])
                except Exception as exc:  # noqa: BLE001 - keep decoding; shutdown races end here too
                    if self._running and rclpy.ok():
                        self.get_logger().error(f"{len(pending[i:i + self.max_batch])} frames dropped: "
                                                f"{type(exc).__name__}: {exc}", throttle_duration_sec=5.0)

    def _decode(self, batch: list[tuple[str, object]]) -> None:
        """Decode one frame per robot as a batch; publish each robot's results, count its refusals."""
        t0 = time.perf_counter()
        with_mask = self.publish_mask or self.publish_annotated
        results = self.decoder.decode_batch([bytes(msg.packet) for _, msg in batch], with_mask=with_mask)
        ms = 1000.0 * (time.perf_counter() - t0) / len(batch)  # the batch's time, shared by its frames
        for (name, msg), result in zip(batch, results):
            stream = self.streams[name]
            if isinstance(result, SplitPerceptionError):
                stream.refused(result)
            else:
                stream.publish(result, msg.header, ms, self.publish_mask, self.publish_annotated)

    def _publish_status(self) -> None:
        for stream in self.streams.values():
            stream.publish_status()
        if self.served:
            self._check_unserved()

    def _check_unserved(self) -> None:
        """Fleet: warn once per robot's `features` topic that has publishers but is not served."""
        for topic, types in self.get_topic_names_and_types():
            if (FEATURES_TYPE in types and topic.endswith("/features") and topic not in self.served
                    and topic not in self.unserved and self.count_publishers(topic) > 0):
                self.unserved.add(topic)
                self.get_logger().warning(f"{topic} has EncodedFeatures publishers but is not served: add its "
                                          f"robot to `robots` (served: {sorted(self.served)})")

    def close(self) -> None:
        self._running = False
        self.slots.close()
        self._worker.join(timeout=2.0)
        for stream in self.streams.values():
            self.get_logger().info(stream.summary())


def main(args=None) -> int:
    return run_node(DecoderNode, args)

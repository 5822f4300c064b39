"""Link emulator node: relays EncodedFeatures through a token-bucket bandwidth limit that follows a
trace, plus fixed delay and random loss, and publishes the current bandwidth on `link_bandwidth`.

For demos and tests on one machine; `split_perception.harness.netns` gives a real rate-limited link.
"""

from __future__ import annotations

import random
import time
from collections import deque

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from std_msgs.msg import Float64

from ..link.trace import BandwidthTrace, TokenBucket
from ..msg import EncodedFeatures
from .common import qos_from, run_node


class LinkEmulatorNode(Node):
    def __init__(self):
        super().__init__("link_emulator")
        d = ParameterDescriptor
        self.trace = BandwidthTrace.parse(self.declare_parameter("bandwidth", "5e6", d(
            description="bits/s: '5e6', 'steps:20e6@0,2e6@10,...' (rate@second) or a CSV file "
                        "(seconds,bps)", read_only=True)).value)
        self.delay_s = self.declare_parameter("delay_ms", 0.0, d(
            description="one-way delay added to every message", read_only=True)).value / 1000.0
        self.loss = self.declare_parameter("loss", 0.0, d(description="random loss probability", read_only=True)).value
        self.max_queue_s = self.declare_parameter("max_queue_s", 0.2, d(
            description="drop a message that would wait longer than this in the queue (like tbf's latency)",
            read_only=True)).value
        burst = self.declare_parameter("burst_bytes", 16000, d(description="token bucket size", read_only=True)).value
        self.publish_bw = self.declare_parameter("publish_bandwidth", True, d(
            description="publish the current emulated bandwidth on `link_bandwidth` (an external link "
                        "quality report, as a radio modem would give)", read_only=True)).value
        seed = self.declare_parameter("seed", 0, d(description="seed of the loss process", read_only=True)).value
        self.start_on_first = self.declare_parameter("start_on_first_message", True, d(
            description="trace time starts with the first relayed message (else at node start)",
            read_only=True)).value
        self.rng = random.Random(seed)
        self.bucket = TokenBucket(int(burst))
        self.queue: deque[tuple[float, EncodedFeatures]] = deque()
        self.queued_bytes = 0
        self.t0 = time.monotonic()
        self._started = False
        self.sent = self.dropped_queue = self.dropped_loss = 0
        self.pub = self.create_publisher(EncodedFeatures, "features_out", qos_from("best_effort"))
        self.bw_pub = self.create_publisher(Float64, "link_bandwidth", 10)
        self.create_subscription(EncodedFeatures, "features_in", self._on_msg, qos_from("best_effort"))
        self.create_timer(0.005, self._drain)
        self.create_timer(0.5, self._report)
        self.get_logger().info(f"link emulator: trace {self.trace.points}, delay {1000 * self.delay_s:.0f} ms, "
                               f"loss {self.loss}")

    def rate(self) -> float:
        if self.start_on_first and not self._started:
            return self.trace.at(0.0)
        return self.trace.at(time.monotonic() - self.t0)

    def _on_msg(self, msg: EncodedFeatures) -> None:
        if self.start_on_first and not self._started:
            self._started, self.t0 = True, time.monotonic()
            self.get_logger().info("first message: trace starts now")
        size = len(msg.packet) + 64  # payload plus a rough per-message overhead
        rate = self.rate()
        if rate <= 0 or (self.queued_bytes + size) * 8.0 / rate > self.max_queue_s:
            self.dropped_queue += 1  # the queue would hold it too long: tail drop
            return
        self.queue.append((time.monotonic(), msg))
        self.queued_bytes += size

    def _drain(self) -> None:
        now = time.monotonic()
        self.bucket.refill(now, self.rate())
        while self.queue and now - self.queue[0][0] >= self.delay_s:
            msg = self.queue[0][1]
            size = len(msg.packet) + 64
            if not self.bucket.take(size):
                break
            self.queue.popleft()
            self.queued_bytes -= size
            if self.rng.random() < self.loss:
                self.dropped_loss += 1
                continue
            self.pub.publish(msg)
            self.sent += 1

    def _report(self) -> None:
        if self.publish_bw:
            self.bw_pub.publish(Float64(data=float(self.rate())))

    def close(self) -> None:
        self.get_logger().info(f"relayed {self.sent}, dropped {self.dropped_queue} (queue) + "
                               f"{self.dropped_loss} (random loss)")


def main(args=None) -> int:
    return run_node(LinkEmulatorNode, args)

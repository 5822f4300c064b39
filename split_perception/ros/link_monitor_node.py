"""Link monitor node: LinkStatus from the decoder (+ optional bandwidth reports, + the encoder's own
output rate) -> width and frame rate, set on the encoder through its standard parameter service,
exactly as `ros2 param set /encoder width W` / `max_rate_hz R` do.
"""

from __future__ import annotations

import time
from collections import deque

from rcl_interfaces.msg import (
    Parameter,
    ParameterDescriptor,
    ParameterType,
    ParameterValue,
)
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from std_msgs.msg import Float64

from ..codec.onboard_export import widths_and_bytes
from ..link.policy import LinkObservation, PolicyConfig, WidthPolicy
from ..msg import EncodedFeatures, LinkStatus
from .common import qos_from, run_node


class LinkMonitorNode(Node):
    def __init__(self):
        super().__init__("link_monitor")
        d = ParameterDescriptor
        model_path = self.declare_parameter("model_path", "", d(
            description="the encoder's checkpoint or onboard export (widths and their typical bytes/frame)",
            read_only=True)).value
        self.encoder_node = self.declare_parameter("encoder_node", "encoder", d(
            description="name of the encoder node whose `width` parameter is set", read_only=True)).value
        cfg = PolicyConfig()
        for name in vars(cfg):
            setattr(cfg, name, float(self.declare_parameter(name, getattr(cfg, name), d(
                description=f"policy: {name} (see split_perception/link/policy.py)", read_only=True)).value))
        period = self.declare_parameter("period_s", 0.5, d(description="decision period", read_only=True)).value
        self.capacity_timeout = self.declare_parameter("capacity_timeout_s", 3.0, d(
            description="forget a bandwidth report after this long", read_only=True)).value
        self.status_timeout = self.declare_parameter("status_timeout_s", 3.0, d(
            description="no LinkStatus for this long = the link is down", read_only=True)).value
        widths, sizes = self._model_table(model_path or None)
        self.policy = WidthPolicy(widths, sizes, cfg)
        self.client = self.create_client(SetParameters, f"{self.encoder_node}/set_parameters")
        self.create_subscription(LinkStatus, "link_status", self._on_status, 10)
        self.create_subscription(EncodedFeatures, "features", self._on_sent, qos_from("best_effort", 10))
        self.create_subscription(Float64, "link_bandwidth", self._on_bandwidth, 10)
        self.create_timer(period, self._tick)
        self.status: LinkStatus | None = None
        self.status_time = time.monotonic()
        self._judged: LinkStatus | None = None  # the report the last decision was made on
        self.sent: deque[float] = deque()  # when the encoder published (onboard, before the link)
        self.first_sent: float | None = None
        self.capacity: tuple[float, float] | None = None  # (bps, monotonic time)
        self.switches = 0
        self.get_logger().info(f"link monitor: widths {widths}, bytes/frame {[round(s) for s in sizes]}, "
                               f"target {cfg.target_fps} fps")

    @staticmethod
    def _model_table(model_path):
        widths, sizes = widths_and_bytes(model_path)  # from the onboard export when there is one: no torch
        return widths, [float(sizes.get(str(w), 1000.0 * w)) for w in widths]

    def _on_sent(self, msg: EncodedFeatures) -> None:
        self.sent.append(time.monotonic())
        if self.first_sent is None:
            self.first_sent = self.sent[-1]

    def _on_status(self, msg: LinkStatus) -> None:
        self.status, self.status_time = msg, time.monotonic()
        if msg.fps > 0:
            self.policy.observe_bytes(round(msg.width, 3), msg.bytes_per_frame)

    def _on_bandwidth(self, msg: Float64) -> None:
        self.capacity = (msg.data, time.monotonic())

    def observation(self, now: float) -> LinkObservation:
        cap = self.capacity[0] if self.capacity and now - self.capacity[1] < self.capacity_timeout else None
        window = 2.0
        while self.sent and self.sent[0] < now - window:
            self.sent.popleft()
        st = self.status
        warm = self.first_sent is not None and now - self.first_sent > 2 * window  # both rate windows full
        obs = LinkObservation(capacity_bps=cap, sent_fps=len(self.sent) / window if warm else None,
                              stale=st is not None and now - self.status_time > self.status_timeout)
        if st is not None and not obs.stale:
            obs.loss_rate, obs.delivered_fps, obs.throughput_bps = st.loss_rate, st.fps, st.throughput_bps
            obs.latency_ms = st.latency_ms or None
        return obs

    def _tick(self) -> None:
        now = time.monotonic()
        obs = self.observation(now)
        if self.status is self._judged and not obs.stale and obs.capacity_bps is None:
            return  # judge each link report once: the same congested report must not back off twice
        self._judged = self.status
        before = (self.policy.width, self.policy.rate_hz)
        d = self.policy.decide(now, obs)
        if (d.width, d.rate_hz) != before and not self._set(d.width, d.rate_hz, self.policy.last_reason):
            self.policy.width, self.policy.rate_hz = before  # not applied: decide again next tick

    def _set(self, width: float, rate_hz: float, why: str) -> bool:
        if not self.client.service_is_ready():
            self.get_logger().warning(f"{self.encoder_node}/set_parameters not available; width stays",
                                      throttle_duration_sec=5.0)
            return False
        throttle = 0.0 if rate_hz >= self.policy.cfg.target_fps else rate_hz  # 0 = every camera frame
        req = SetParameters.Request()
        req.parameters = [Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE,
                                                                    double_value=float(v)))
                          for name, v in (("width", width), ("max_rate_hz", throttle))]
        self.switches += 1
        self.get_logger().info(f"width -> {width}, max_rate_hz -> {throttle:g} ({why})")
        self.client.call_async(req).add_done_callback(self._on_result)
        return True

    def _on_result(self, future) -> None:
        result = future.result()
        for r in (result.results if result else []):
            if not r.successful:
                self.get_logger().error(f"encoder refused the setting: {r.reason}")
        if result is None:
            self.get_logger().error("encoder did not answer set_parameters")


def main(args=None) -> int:
    return run_node(LinkMonitorNode, args)

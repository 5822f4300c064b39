"""Link monitor node: LinkStatus (+ optional bandwidth reports) -> width, set on the encoder through
its standard parameter service, exactly as `ros2 param set /encoder width W` does.
"""

from __future__ import annotations

import time

from rcl_interfaces.msg import Parameter, ParameterDescriptor, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from std_msgs.msg import Float64

from ..codec.checkpoint import read_checkpoint
from ..link.policy import PolicyConfig, WidthPolicy
from ..msg import LinkStatus
from .common import run_node


class LinkMonitorNode(Node):
    def __init__(self):
        super().__init__("link_monitor")
        d = ParameterDescriptor
        model_path = self.declare_parameter("model_path", "", d(
            description="the encoder's checkpoint (widths and their typical bytes/frame)", read_only=True)).value
        self.encoder_node = self.declare_parameter("encoder_node", "encoder", d(
            description="name of the encoder node whose `width` parameter is set", read_only=True)).value
        cfg = PolicyConfig()
        for name in vars(cfg):
            setattr(cfg, name, float(self.declare_parameter(name, getattr(cfg, name), d(
                description=f"policy: {name} (see split_perception/link/policy.py)", read_only=True)).value))
        period = self.declare_parameter("period_s", 0.5, d(description="decision period", read_only=True)).value
        self.capacity_timeout = self.declare_parameter("capacity_timeout_s", 3.0, d(
            description="forget a bandwidth report after this long", read_only=True)).value
        widths, sizes = self._model_table(model_path or None)
        self.policy = WidthPolicy(widths, sizes, cfg)
        self.client = self.create_client(SetParameters, f"{self.encoder_node}/set_parameters")
        self.create_subscription(LinkStatus, "link_status", self._on_status, 10)
        self.create_subscription(Float64, "link_bandwidth", self._on_bandwidth, 10)
        self.create_timer(period, self._tick)
        self.status: LinkStatus | None = None
        self.capacity: tuple[float, float] | None = None  # (bps, monotonic time)
        self.switches = 0
        self.get_logger().info(f"link monitor: widths {widths}, bytes/frame {[round(s) for s in sizes]}, "
                               f"target {cfg.target_fps} fps")

    @staticmethod
    def _model_table(model_path):
        from ..codec.checkpoint import DEFAULT_MODEL

        ckpt = read_checkpoint(model_path or DEFAULT_MODEL)
        widths = list(ckpt["model_config"].widths)
        sizes = ckpt["extra"].get("bytes_per_width") or {}
        return widths, [float(sizes.get(str(w), 1000.0 * w)) for w in widths]

    def _on_status(self, msg: LinkStatus) -> None:
        self.status = msg
        if msg.fps > 0:
            self.policy.observe_bytes(round(msg.width, 3), msg.bytes_per_frame)

    def _on_bandwidth(self, msg: Float64) -> None:
        self.capacity = (msg.data, time.monotonic())

    def _tick(self) -> None:
        now = time.monotonic()
        cap = self.capacity[0] if self.capacity and now - self.capacity[1] < self.capacity_timeout else None
        loss = self.status.loss_rate if self.status else 0.0
        latency = self.status.latency_ms if self.status else 0.0
        if self.status is not None and self.status.fps == 0 and self.status.frames_received > 0:
            loss = 1.0  # frames flowed before and nothing arrives now: the link is down or congested
        before = self.policy.width
        width = self.policy.decide(now, cap, loss, latency)
        if width != before and not self._set_width(width, f"capacity {cap} bps, loss {loss:.2f}, "
                                                          f"latency {latency:.0f} ms"):
            self.policy.width = before  # not applied: decide again next tick

    def _set_width(self, width: float, why: str) -> bool:
        if not self.client.service_is_ready():
            self.get_logger().warning(f"{self.encoder_node}/set_parameters not available; width stays",
                                      throttle_duration_sec=5.0)
            return False
        req = SetParameters.Request()
        req.parameters = [Parameter(name="width", value=ParameterValue(
            type=ParameterType.PARAMETER_DOUBLE, double_value=float(width)))]
        self.switches += 1
        self.get_logger().info(f"width -> {width} ({why})")
        self.client.call_async(req).add_done_callback(self._on_result)
        return True

    def _on_result(self, future) -> None:
        result = future.result()
        if result is None or not result.results[0].successful:
            reason = result.results[0].reason if result else "no reply"
            self.get_logger().error(f"encoder refused width: {reason}")


def main(args=None) -> int:
    return run_node(LinkMonitorNode, args)

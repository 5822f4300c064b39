"""`/diagnostics` for a node (rqt_robot_monitor, Foxglove): one DiagnosticStatus per period."""

from __future__ import annotations

import time
from collections.abc import Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from ..errors import ConfigError
from ..health import Counters, HealthMonitor


class Diagnostics:
    """Every `period` s (0 = never), publishes what `sample()` returns (counters, extra values) on
    `/diagnostics`, named `split_perception: <node's fully qualified name>[/<suffix>]` (a suffix
    per robot where one node serves several)."""

    def __init__(self, node: Node, period: float, sample: Callable[[], tuple[Counters, dict[str, str]]],
                 hardware_id: str, suffix: str = "", **names):
        if period < 0:
            raise ConfigError(f"diagnostics_period_s must be >= 0, got {period}")
        self._node, self._sample, self.hardware_id = node, sample, hardware_id
        self.name = f"split_perception: {node.get_fully_qualified_name()}" + (f"/{suffix}" if suffix else "")
        self.monitor = HealthMonitor(time.monotonic(), **names)
        if period > 0:
            self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
            node.create_timer(period, self._publish)

    def _publish(self) -> None:
        counters, extra = self._sample()
        report = self.monitor.update(time.monotonic(), counters)
        status = DiagnosticStatus(level=bytes([report.level]), name=self.name, message=report.message,
                                  hardware_id=self.hardware_id)
        status.values = [KeyValue(key=k, value=v) for k, v in {**report.values, **extra}.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(msg)

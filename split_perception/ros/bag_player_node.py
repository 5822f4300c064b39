"""Bag player node: replays Image/CompressedImage topics of a rosbag2 (mcap or sqlite3) with
`rosbags`, at the recorded rate times `rate`, so replay works without `ros2 bag`.

With `restamp` (default) every header stamp is shifted by one constant so that the first frame
carries the wall-clock time of the start; the offset is logged (`replay offset_ns=...`), so an
evaluator can map stamps back to the bag's ground truth.
"""

from __future__ import annotations

import time

import numpy as np
from builtin_interfaces.msg import Time
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from ..data.bags import BagError, read_images
from ..stamps import split_ns, stamp_ns
from .common import run_node


def _stamp(ns: int) -> Time:
    sec, nanosec = split_ns(ns)
    return Time(sec=sec, nanosec=nanosec)


class BagPlayerNode(Node):
    def __init__(self):
        super().__init__("bag_player")
        d = ParameterDescriptor
        self.bag = self.declare_parameter("bag", "", d(description="rosbag2 folder or file", read_only=True)).value
        self.topic = self.declare_parameter("topic", "", d(
            description="camera topic in the bag; empty = the first Image/CompressedImage topic", read_only=True)).value
        self.rate = self.declare_parameter("rate", 1.0, d(description="playback speed factor", read_only=True)).value
        self.loop = self.declare_parameter("loop", False, d(description="start over at the end", read_only=True)).value
        self.restamp = self.declare_parameter("restamp", True, d(
            description="shift stamps so the first frame is 'now'", read_only=True)).value
        self.start_delay = self.declare_parameter("start_delay_s", 0.0, d(
            description="wait this long after the subscribers are there (lets the rest of the graph discover us)",
            read_only=True)).value
        self.wait_subs = self.declare_parameter("wait_for_subscribers", 0, d(
            description="start only once the image topic has this many subscribers", read_only=True)).value
        if not self.bag:
            raise BagError("parameter `bag` is required")
        if self.rate <= 0:
            raise BagError(f"rate must be > 0, got {self.rate}")
        self.raw_pub = self.create_publisher(Image, "image", qos_profile_sensor_data)
        self.compressed_pub = self.create_publisher(CompressedImage, "image/compressed", qos_profile_sensor_data)
        self.published = 0
        self.finished = False
        self._iter = None
        self._offset = 0
        self._t_first = self._wall_first = None
        self._next = None
        self._t_ready = None  # when enough subscribers were first seen
        self.create_timer(0.002, self._tick)

    def _open(self):
        self._iter = read_images(self.bag, self.topic or None)
        self._t_first = None

    def _tick(self) -> None:
        if self.finished:
            return
        if self._t_ready is None:
            if max(self.raw_pub.get_subscription_count(), self.compressed_pub.get_subscription_count()) < self.wait_subs:
                return
            self._t_ready = time.monotonic()
        if time.monotonic() - self._t_ready < self.start_delay:
            return
        try:
            if self._iter is None:
                self._open()
            if self._next is None:
                self._next = next(self._iter)
        except StopIteration:
            if self.loop and self.published:
                self._iter, self._next = None, None
                return
            self._finish("end of bag")
            return
        except BagError as exc:
            self.get_logger().error(str(exc))
            self._finish("bag error", code=2)
            return
        item = self._next
        if self._t_first is None:
            self._t_first, self._wall_first = item.timestamp_ns, time.monotonic()
            if self.restamp:
                self._offset = time.time_ns() - stamp_ns(item.msg.header.stamp)
                self.get_logger().info(f"replay offset_ns={self._offset}")
        due = self._wall_first + (item.timestamp_ns - self._t_first) / 1e9 / self.rate
        if time.monotonic() < due:
            return
        self._publish(item)
        self._next = None

    def _publish(self, item) -> None:
        src = item.msg
        ns = stamp_ns(src.header.stamp) + self._offset
        if item.msgtype.endswith("CompressedImage"):
            msg = CompressedImage()
            msg.format = src.format
            msg.data = np.asarray(src.data, np.uint8).tobytes()
            pub = self.compressed_pub
        else:
            msg = Image()
            msg.height, msg.width, msg.encoding = int(src.height), int(src.width), src.encoding
            msg.is_bigendian, msg.step = int(src.is_bigendian), int(src.step)
            msg.data = np.asarray(src.data, np.uint8).tobytes()
            pub = self.raw_pub
        msg.header.frame_id = src.header.frame_id
        msg.header.stamp = _stamp(ns)
        pub.publish(msg)
        self.published += 1

    def _finish(self, why: str, code: int = 0) -> None:
        """Stop the node: exit code 0 at the end of the bag, 2 on a damaged one."""
        self.finished = True
        self.get_logger().info(f"{why}: published {self.published} frames")
        raise SystemExit(code)

    def close(self) -> None:
        """Final statistics when stopped before the end of the bag (Ctrl-C, SIGTERM)."""
        if not self.finished:
            self.get_logger().info(f"stopped: published {self.published} frames")


def main(args=None) -> int:
    return run_node(BagPlayerNode, args)

"""Helpers shared by the nodes: QoS from a parameter, the drop-oldest frame slot, spin/shutdown."""

from __future__ import annotations

import threading

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..errors import ConfigError


def qos_from(reliability: str, depth: int = 5) -> QoSProfile:
    """'best_effort' (default for a lossy radio link) or 'reliable'."""
    policies = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}
    if reliability not in policies:
        raise ConfigError(f"reliability must be one of {sorted(policies)}, got {reliability!r}")
    return QoSProfile(reliability=policies[reliability], history=HistoryPolicy.KEEP_LAST, depth=depth)


class LatestSlot:
    """A queue of one that drops the oldest item: producers never block, latency never piles up."""

    def __init__(self):
        self._cv = threading.Condition()
        self._item = None
        self._closed = False
        self.dropped = 0

    def put(self, item) -> None:
        with self._cv:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cv.notify()

    def get(self, timeout: float = 0.2):
        """The newest item, or None after `timeout` or once closed."""
        with self._cv:
            if self._item is None and not self._closed:
                self._cv.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()


def run_node(node_factory, args=None) -> int:
    """Init rclpy, spin the node until Ctrl-C or shutdown, clean up; returns an exit code."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.impl.implementation_singleton import rclpy_implementation

    from ..errors import SplitPerceptionError

    RCLError = rclpy_implementation.RCLError  # what rcl raises (not exported under a public name)

    node = None
    try:
        rclpy.init(args=args)
        node = node_factory()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SplitPerceptionError as exc:  # bad parameter, model or bag: one clear line, exit 2
        print(f"[ERROR] {exc}", flush=True)
        return 2
    except RCLError as exc:  # rcl refused: SROS2 keystore/enclave, bad --ros-args, middleware
        print(f"[ERROR] rcl refused to run the node: {exc}", flush=True)
        return 2
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close:
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def exit_now(code: int) -> None:
    """Leave without interpreter teardown: torch's thread pools can stall it for seconds after
    a clean node shutdown (launch then escalates to SIGTERM/SIGKILL). Everything is flushed first."""
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

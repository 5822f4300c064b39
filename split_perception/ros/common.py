"""Helpers shared by the nodes: QoS from a parameter, the drop-oldest frame slots, spin/shutdown."""

from __future__ import annotations

import signal
import threading

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..errors import ConfigError

SIGNAL_POLL_S = 0.1  # the spin loop wakes this often to see a signal (rcl_wait does not return for one)


def qos_from(reliability: str, depth: int = 5) -> QoSProfile:
    """'best_effort' (default for a lossy radio link) or 'reliable'."""
    policies = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}
    if reliability not in policies:
        raise ConfigError(f"reliability must be one of {sorted(policies)}, got {reliability!r}")
    return QoSProfile(reliability=policies[reliability], history=HistoryPolicy.KEEP_LAST, depth=depth)


class LatestSlots:
    """One drop-oldest slot per source (a camera, a robot) under one lock: producers never block,
    latency never piles up, and the worker takes every source's newest item in one wake-up."""

    def __init__(self):
        self._cv = threading.Condition()
        self._items: dict = {}
        self._closed = False
        self._dropped: dict = {}

    def put(self, item, key=None) -> None:
        with self._cv:
            if key in self._items:
                self._dropped[key] = self._dropped.get(key, 0) + 1
            self._items[key] = item
            self._cv.notify()

    def take(self, timeout: float = 0.2) -> list[tuple]:
        """(key, newest item) of every source with one waiting, in arrival order of their first item;
        empty after `timeout` or once closed."""
        with self._cv:
            if not self._items and not self._closed:
                self._cv.wait(timeout)
            items, self._items = list(self._items.items()), {}
            return items

    def dropped(self, key=None) -> int:
        """Items of `key` replaced before the worker took them."""
        with self._cv:
            return self._dropped.get(key, 0)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()


def run_node(node_factory, args=None) -> int:
    """Init rclpy, spin the node until SIGINT/SIGTERM or shutdown, clean up; returns an exit code.

    rclpy's own signal handler would shut the context down before the node's `close()` runs (its
    final log lines then fail on rosout); here a signal only stops the spin loop, `close()` runs
    with the context valid, then the node is destroyed and rclpy shut down. A second signal
    interrupts a `close()` that hangs."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.impl.implementation_singleton import rclpy_implementation
    from rclpy.signals import SignalHandlerOptions

    from ..errors import SplitPerceptionError

    RCLError = rclpy_implementation.RCLError  # what rcl raises (not exported under a public name)

    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    node, code = None, 0
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        node = node_factory()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=SIGNAL_POLL_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SystemExit as exc:  # a node that is done (bag player at the end of its bag)
        code = exc.code if isinstance(exc.code, int) else 1
    except SplitPerceptionError as exc:  # bad parameter, model or bag: one clear line, exit 2
        print(f"[ERROR] {exc}", flush=True)
        code = 2
    except RCLError as exc:  # rcl refused: SROS2 keystore/enclave, bad --ros-args, middleware
        print(f"[ERROR] rcl refused to run the node: {exc}", flush=True)
        code = 2
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close:
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def exit_now(code: int) -> None:
    """Leave without interpreter teardown: torch's thread pools can stall it for seconds after
    a clean node shutdown (launch then escalates to SIGTERM/SIGKILL). Everything is flushed first."""
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

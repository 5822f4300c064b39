"""Message stamps as integer nanoseconds, and back.

Works on any stamp with `sec` and `nanosec` (builtin_interfaces/Time, rosbags' Time), so the core
needs no ROS import.
"""

from __future__ import annotations

NS_PER_S = 1_000_000_000


def stamp_ns(stamp) -> int:
    """Nanoseconds since the epoch of a `sec` + `nanosec` stamp."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def split_ns(ns: int) -> tuple[int, int]:
    """(sec, nanosec) of a nanosecond time."""
    return int(ns // NS_PER_S), int(ns % NS_PER_S)

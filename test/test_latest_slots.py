"""The drop-oldest slots of the nodes' workers: one per source, newest kept, drops counted per source."""

from __future__ import annotations

import threading

from split_perception.ros.common import LatestSlots


def test_newest_item_of_every_source_in_one_take():
    slots = LatestSlots()
    for k in range(3):
        slots.put(("r1", k), "r1")
    slots.put(("r2", 0), "r2")
    assert slots.take() == [("r1", ("r1", 2)), ("r2", ("r2", 0))]
    assert (slots.dropped("r1"), slots.dropped("r2"), slots.dropped()) == (2, 0, 0)
    assert slots.take(timeout=0.01) == []


def test_take_wakes_on_put_and_returns_empty_once_closed():
    slots = LatestSlots()
    threading.Timer(0.05, slots.put, args=("frame",)).start()
    assert slots.take(timeout=5.0) == [(None, "frame")]
    slots.close()
    assert slots.take(timeout=5.0) == []  # closed: no wait

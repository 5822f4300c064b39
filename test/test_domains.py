"""ROS_DOMAIN_ID picking: a domain held by another process is never picked."""

from __future__ import annotations

import subprocess
import sys

from split_perception.harness.domains import RANGES, pick_domain

PICK = ("from split_perception.harness.domains import pick_domain\n"
        "import sys\nprint(*[pick_domain('run') for _ in range({n})], flush=True)\nsys.stdin.read()\n")


def picker(n: int) -> subprocess.Popen:
    """A fresh process that picks `n` domains, prints them and holds them until its stdin closes."""
    return subprocess.Popen([sys.executable, "-c", PICK.format(n=n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)


def test_domains_held_by_another_process_are_not_picked():
    first, second = picker(20), None
    try:
        held = {int(x) for x in first.stdout.readline().split()}
        assert len(held) == 20 and held <= set(RANGES["run"])  # distinct domains while it lives
        second = picker(10)
        mine = {int(x) for x in second.stdout.readline().split()}
        assert len(mine) == 10 and not mine & held
    finally:
        for p in (first, second):
            if p is not None:
                p.communicate("")
    assert pick_domain("test") in RANGES["test"]

"""ROS_DOMAIN_ID picking: a domain held by another process is never picked."""

from __future__ import annotations

import subprocess
import sys

from split_perception.harness.domains import RANGES, pick_domain

HOLD = ("from split_perception.harness.domains import pick_domain\n"
        "import sys\nprint(*[pick_domain('run') for _ in range(50)], flush=True)\nsys.stdin.read()\n")


def test_domains_held_by_another_process_are_not_picked():
    child = subprocess.Popen([sys.executable, "-c", HOLD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        held = {int(x) for x in child.stdout.readline().split()}
        assert len(held) == 50 and held <= set(RANGES["run"])  # 50 distinct domains while it lives
        mine = {pick_domain("run") for _ in range(10)}
        assert not mine & held and len(mine) == 10
    finally:
        child.communicate("")
    assert pick_domain("test") in RANGES["test"]

"""ROS_DOMAIN_ID picking, one rule for tests, benchmarks and the demo.

Every run that starts nodes uses a domain of its own, so runs side by side on one machine never
hear each other's packets (seen as repeated frame ids): pytest picks in 1..100, benchmarks and
the demo in 101..160, and a picked domain is not picked again by the same process.
"""

from __future__ import annotations

import os
import random

RANGES = {"test": range(1, 101), "run": range(101, 161)}  # 0 stays free: other ROS software's default
_used: set[int] = set()
_rng = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "little"))


def pick_domain(kind: str = "test") -> int:
    """A domain in `kind`'s range that this process has not used yet (at random once all were)."""
    free = [d for d in RANGES[kind] if d not in _used] or list(RANGES[kind])
    domain = _rng.choice(free)
    _used.add(domain)
    return domain


def domain_from(args, kind: str = "run") -> int:
    """`--domain-id` when given, else a picked one."""
    return args.domain_id if getattr(args, "domain_id", None) is not None else pick_domain(kind)


DOMAIN_HELP = "ROS_DOMAIN_ID (default: picked in 101..160, apart from the tests' 1..100)"

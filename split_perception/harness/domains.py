"""ROS_DOMAIN_ID picking, one rule for tests, benchmarks and the demo.

Every run that starts nodes uses a domain of its own, so runs side by side on one machine never
hear each other's packets (seen as a second `/encoder`, or repeated frame ids): pytest picks in
1..100, benchmarks and the demo in 101..160. A picked domain is reserved with a lock file for as
long as the picking process lives, so other processes on the machine pick another one.
"""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
from pathlib import Path

RANGES = {"test": range(1, 101), "run": range(101, 161)}  # 0 stays free: other ROS software's default
LOCKS = Path(tempfile.gettempdir()) / "split_perception_domains"
_held: dict[int, int] = {}  # domain -> open lock file descriptor (released when the process ends)
_rng = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "little"))


def _reserve(domain: int) -> bool:
    LOCKS.mkdir(exist_ok=True)
    fd = os.open(LOCKS / f"{domain}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _held[domain] = fd
    return True


def pick_domain(kind: str = "test") -> int:
    """A domain in `kind`'s range that no other process holds and this one has not used yet
    (reused by this process, at random, once it has used every free one)."""
    candidates = [d for d in RANGES[kind] if d not in _held]
    _rng.shuffle(candidates)
    for domain in candidates:
        if _reserve(domain):
            return domain
    return _rng.choice([d for d in RANGES[kind] if d in _held] or list(RANGES[kind]))


def domain_from(args, kind: str = "run") -> int:
    """`--domain-id` when given, else a picked one."""
    return args.domain_id if getattr(args, "domain_id", None) is not None else pick_domain(kind)


DOMAIN_HELP = "ROS_DOMAIN_ID (default: picked in 101..160, apart from the tests' 1..100)"

"""A real constrained link on one machine: two network namespaces joined by a veth pair, with the
kernel's `tbf` bandwidth limit on the onboard (sending) side.

The kernel here has no `netem`, so delay and loss are not added; congestion comes from the
rate limit alone, which is what a radio link that drops to a fraction of its rate looks like to
DDS. Needs root and `ip`/`tc`; `available()` says why not. Every name is unique per instance
and `close()` (also on exit and on SIGTERM) removes both namespaces and the veth pair with them.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import uuid

from ..errors import SplitPerceptionError


class LinkError(SplitPerceptionError):
    """The namespaces or the rate limit could not be set up."""


_OPEN: set["NetnsLink"] = set()
_HOOKS: list[bool] = []  # exit and SIGTERM hooks installed once per process


def _close_all(*_) -> None:
    for link in list(_OPEN):
        link.close()


def _on_sigterm(*_) -> None:
    _close_all()
    os._exit(143)


def _run(cmd: list[str]) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    if res.returncode != 0:
        raise LinkError(f"`{' '.join(cmd)}` failed: {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout


def available() -> tuple[bool, str]:
    """Whether namespaces + tbf can be made here, and if not, why."""
    if os.geteuid() != 0:
        return False, "needs root (network namespaces)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return False, f"`{tool}` not found (Debian package iproute2)"
    try:
        with NetnsLink(rate_bps=1e6):
            pass
    except LinkError as exc:
        return False, str(exc)
    return True, ""


class NetnsLink:
    """`onboard` and `offboard` namespaces, 10.77.x.1 <-> 10.77.x.2, uplink limited by tbf."""

    def __init__(self, rate_bps: float = 20e6, burst_bytes: int = 32 * 1024, queue_ms: int = 200):
        tag = uuid.uuid4().hex[:6]
        self.onboard, self.offboard = f"sp{tag}on", f"sp{tag}off"
        self._veth = (f"sp{tag}a", f"sp{tag}b")  # interface names: at most 15 characters
        self.subnet = 1 + int(tag, 16) % 250
        self.burst_bytes, self.queue_ms = burst_bytes, queue_ms
        self.rate_bps = rate_bps
        self._up = False
        self._create()

    @property
    def onboard_ip(self) -> str:
        return f"10.77.{self.subnet}.1"

    @property
    def offboard_ip(self) -> str:
        return f"10.77.{self.subnet}.2"

    def _create(self) -> None:
        a, b = self._veth
        self._up = True
        if not _HOOKS:
            _HOOKS.append(True)
            atexit.register(_close_all)
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _on_sigterm)
        _OPEN.add(self)
        try:
            _run(["ip", "netns", "add", self.onboard])
            _run(["ip", "netns", "add", self.offboard])
            _run(["ip", "link", "add", a, "netns", self.onboard, "type", "veth", "peer", "name", b,
                  "netns", self.offboard])
            for ns, dev, ip in ((self.onboard, a, self.onboard_ip), (self.offboard, b, self.offboard_ip)):
                _run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev])
                _run(["ip", "-n", ns, "link", "set", dev, "up", "multicast", "on"])
                _run(["ip", "-n", ns, "link", "set", "lo", "up"])
                _run(["ip", "-n", ns, "route", "replace", "224.0.0.0/4", "dev", dev])  # DDS discovery multicast
            self.set_rate(self.rate_bps)
        except LinkError:
            self.close()
            raise

    def set_rate(self, bps: float) -> None:
        """Change the onboard->offboard limit now (queued packets beyond `queue_ms` are dropped)."""
        if bps <= 0:
            raise LinkError(f"link rate must be > 0 bit/s, got {bps}")
        _run(["tc", "-n", self.onboard, "qdisc", "replace", "dev", self._veth[0], "root", "tbf",
              "rate", f"{int(bps)}bit", "burst", str(self.burst_bytes), "latency", f"{self.queue_ms}ms"])
        self.rate_bps = bps

    def set_up(self, up: bool) -> None:
        """Take the link fully down (both directions) or bring it back, as a radio dropout does."""
        for ns, dev in ((self.onboard, self._veth[0]), (self.offboard, self._veth[1])):
            _run(["ip", "-n", ns, "link", "set", dev, "up" if up else "down"])
            if up:  # the kernel dropped the multicast route with the link
                _run(["ip", "-n", ns, "route", "replace", "224.0.0.0/4", "dev", dev])

    def sent_bytes(self) -> int:
        """Bytes the onboard side's qdisc has sent (proves traffic went over the link)."""
        out = _run(["tc", "-n", self.onboard, "-s", "qdisc", "show", "dev", self._veth[0]])
        for line in out.splitlines():
            parts = line.split()
            if parts[:1] == ["Sent"]:
                return int(parts[1])
        return 0

    def prefix(self, side: str) -> list[str]:
        """Command prefix that runs a program inside `side` ("onboard" or "offboard")."""
        return ["ip", "netns", "exec", {"onboard": self.onboard, "offboard": self.offboard}[side]]

    @staticmethod
    def ros_env() -> dict:
        """What DDS needs across the veth pair: discovery beyond localhost. Fast DDS's default
        transports stay: shared memory between processes of one namespace (camera -> encoder;
        UDP-only loses a third of 320x240 raw frames on loopback here), UDP across the link (the
        link test checks that the features really pass the onboard qdisc)."""
        return {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}

    def close(self) -> None:
        if not self._up:
            return
        self._up = False
        _OPEN.discard(self)
        for ns in (self.onboard, self.offboard):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)

    def __enter__(self) -> "NetnsLink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

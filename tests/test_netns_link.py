"""The real constrained link: namespaces + veth + tbf, DDS across it, always cleaned up."""

from __future__ import annotations

import os
import subprocess

import pytest

from split_perception.link.netns import LinkError, NetnsLink, available
from split_perception.ros.processes import run_probe, start_node, stop, wait_for_log

OK, WHY = available()
pytestmark = pytest.mark.skipif(not OK, reason=f"no namespaces here: {WHY}")


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_namespaces_are_removed_on_error_and_rate_is_validated():
    with pytest.raises(RuntimeError):
        with NetnsLink(rate_bps=5e6) as link:
            assert link.onboard in namespaces() and link.offboard in namespaces()
            with pytest.raises(LinkError, match="must be > 0"):
                link.set_rate(0)
            raise RuntimeError("test failure inside the block")
    assert link.onboard not in namespaces() and link.offboard not in namespaces()


def test_features_cross_the_rate_limited_link(tmp_path, tiny_model_path):
    domain = 1 + (os.getpid() * 11) % 100
    m = {"model_path": str(tiny_model_path)}
    with NetnsLink(rate_bps=5e6) as link:
        env = link.ros_env()
        procs = [start_node("encoder", domain, params=m, log_path=tmp_path / "encoder.log",
                            prefix=link.prefix("onboard"), env=env),
                 start_node("decoder", domain, params=m, log_path=tmp_path / "decoder.log",
                            prefix=link.prefix("offboard"), env=env)]
        try:
            wait_for_log(tmp_path / "encoder.log", "encoder ready", 120)
            wait_for_log(tmp_path / "decoder.log", "decoder ready", 120)
            rec = run_probe({"seconds": 10, "fps": 4}, tmp_path, domain, prefix=link.prefix("onboard"), env=env)
        finally:
            stop(procs)
        sent_over_link = link.sent_bytes()
    assert len(rec["detections"]) >= 5, (tmp_path / "decoder.log").read_text()[-2000:]
    decoded = {tuple(d["stamp"]) for d in rec["detections"]}
    payload = sum(f["bytes"] for f in rec["features"] if tuple(f["stamp"]) in decoded)
    assert sent_over_link >= payload  # the features went through the onboard qdisc, not shared memory
    assert all(p.returncode is not None for p in procs)

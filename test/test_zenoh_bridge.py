"""The Zenoh bridge: topic types, bad settings, and the loop across two DDS domains joined only by Zenoh."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

from split_perception.errors import ConfigError
from split_perception.harness.domains import pick_domain
from split_perception.harness.netns import NetnsLink, available
from split_perception.harness.processes import (
    ROS_LOCALHOST,
    finish_probe,
    start_node,
    start_probe,
    stop,
    wait_for_log,
)
from split_perception.ros.zenoh_bridge_node import parse_topic

ROBOT = {"to_zenoh": ["features"], "from_zenoh": ["link_status", "detections"]}
SERVER = {"to_zenoh": ["link_status", "detections"], "from_zenoh": ["features"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_topic_types_by_name_or_given():
    assert parse_topic("features") == ("features", "split_perception/msg/EncodedFeatures")
    assert parse_topic("/r1/link_status") == ("/r1/link_status", "split_perception/msg/LinkStatus")
    assert parse_topic("cam/image/compressed") == ("cam/image/compressed", "sensor_msgs/msg/CompressedImage")
    assert parse_topic("odom=nav_msgs/msg/Odometry") == ("odom", "nav_msgs/msg/Odometry")
    with pytest.raises(ConfigError, match="no message type known"):
        parse_topic("odom")


@pytest.mark.parametrize("params, message", [
    ({"mode": "router", **ROBOT}, "mode must be one of"),
    ({"mode": "client", **ROBOT}, "needs `connect`"),
    ({"to_zenoh": ["features"], "from_zenoh": ["features"]}, "would echo"),
    ({"to_zenoh": ["odom"]}, "no message type known"),
    ({**SERVER, "listen": ["tcp/203.0.113.7:7447"], "insecure": True},  # not this machine's
     "could not open the Zenoh session"),
    ({**SERVER, "listen": ["tcp/203.0.113.7:7447"]}, "refusing to listen"),  # plain beyond loopback
])
def test_bad_settings_exit_with_one_clear_line(tmp_path, params, message):
    log = tmp_path / "bridge.log"
    proc = start_node("zenoh_bridge", pick_domain(), params=params, log_path=log)
    assert proc.wait(timeout=60) == 2
    assert message in log.read_text()


def loop(tmp_path, robot_env: dict, server_env: dict, robot_prefix=None, server_prefix=None, listen: str = "",
         model: str = "", extra_robot=(), probe_cfg=None, during=None):
    """Robot: encoder (+ `extra_robot` nodes) + bridge in one DDS domain; server: decoder + bridge in
    another; the probe (camera) on the robot's side. Returns the probe's record."""
    robot_domain, server_domain = pick_domain(), pick_domain()
    m = {"model_path": model}
    procs = []
    try:
        server = {**SERVER, "listen": [listen], "insecure": True}  # plain TCP, between namespaces of this machine
        procs.append(start_node("zenoh_bridge", server_domain, params=server,
                                log_path=tmp_path / "bridge_server.log", prefix=server_prefix, env=server_env))
        procs.append(start_node("decoder", server_domain, params=m, log_path=tmp_path / "decoder.log",
                                prefix=server_prefix, env=server_env))
        procs.append(start_node("zenoh_bridge", robot_domain, params={**ROBOT, "mode": "client", "connect": [listen]},
                                log_path=tmp_path / "bridge_robot.log", prefix=robot_prefix, env=robot_env))
        procs.append(start_node("encoder", robot_domain, params=m, log_path=tmp_path / "encoder.log",
                                prefix=robot_prefix, env=robot_env))
        for exe, params in extra_robot:
            procs.append(start_node(exe, robot_domain, params=params, log_path=tmp_path / f"{exe}.log",
                                    prefix=robot_prefix, env=robot_env))
        for name in ("bridge_server", "bridge_robot"):
            wait_for_log(tmp_path / f"{name}.log", "zenoh_bridge ready", 120)
        wait_for_log(tmp_path / "encoder.log", "encoder ready", 180)
        wait_for_log(tmp_path / "decoder.log", "decoder ready", 180)
        probe = start_probe(probe_cfg, tmp_path, robot_domain, prefix=robot_prefix, env=robot_env)
        procs.append(probe)
        if during:
            during()
        rec = finish_probe(probe, probe_cfg, tmp_path)
    finally:
        stop(procs)
    return rec, procs


def logs(tmp_path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in sorted(tmp_path.glob("*.log")))


def put_garbage(endpoint: str, key: str, n: int) -> None:
    """What a stranger on the Zenoh network could send: payloads that are no ROS message."""
    import zenoh

    cfg = zenoh.Config()
    cfg.insert_json5("mode", '"peer"')
    cfg.insert_json5("connect/endpoints", json.dumps([endpoint]))
    cfg.insert_json5("scouting/multicast/enabled", "false")
    with zenoh.open(cfg) as session:
        time.sleep(2.0)  # connected and the bridge's subscription known
        for k in range(n):
            session.put(key, b"not a ROS message %d" % k)
            time.sleep(0.2)


def test_two_dds_domains_joined_only_by_zenoh(tmp_path):
    """With the nodes' default model (the NanoDet-g student), as a user's robot and server run it."""
    listen = f"tcp/127.0.0.1:{free_port()}"
    cfg = {"seconds": 14, "fps": 4, "await_publishers": ["detections"]}
    rec, procs = loop(tmp_path, {}, {}, listen=listen, probe_cfg=cfg,
                      during=lambda: put_garbage(listen, "split_perception/features", 3))
    sent = {s["stamp"] for s in rec["sent"]}
    got = [d["stamp"] for d in rec["detections"]]
    assert len(got) >= 5 and set(got) <= sent, logs(tmp_path)  # detections came back through Zenoh
    assert rec["link_status"] and max(s["received"] for s in rec["link_status"]) >= 5, logs(tmp_path)
    assert all(p.returncode == 0 for p in procs), logs(tmp_path)
    summary = re.search(r"forwarded (.*); 0 bad payloads", (tmp_path / "bridge_robot.log").read_text())
    counts = dict(re.findall(r"(/\w+): (\d+)", summary.group(1)))
    assert int(counts["/features"]) >= len(got) and int(counts["/detections"]) >= len(got), summary.group(0)
    assert "3 bad payloads" in (tmp_path / "bridge_server.log").read_text()  # refused by the bridge ...
    assert max(s["bad"] for s in rec["link_status"]) == 0  # ... so the decoder never saw them


@pytest.mark.skipif(not available()[0], reason=f"no namespaces here: {available()[1]}")
def test_across_a_real_link_only_zenoh_crosses(tmp_path, tiny_model_path):
    """Robot and server in two network namespaces joined by a veth pair; DDS limited to each host and
    in different domains, so features reach the server, detections and link_status come back, only
    through the bridges; the link monitor on the robot gets its link reports."""
    cfg = {"seconds": 16, "fps": 4, "await_publishers": ["detections"]}
    monitor = ("link_monitor", {"model_path": str(tiny_model_path), "target_fps": 4.0})
    with NetnsLink(rate_bps=5e6) as link:
        rec, procs = loop(tmp_path, ROS_LOCALHOST, ROS_LOCALHOST, robot_prefix=link.prefix("onboard"),
                          server_prefix=link.prefix("offboard"), listen=f"tcp/{link.offboard_ip}:7447",
                          model=str(tiny_model_path), extra_robot=[monitor], probe_cfg=cfg)
        crossed = link.sent_bytes()
    sent = {s["stamp"] for s in rec["sent"]}
    got = [d["stamp"] for d in rec["detections"]]
    assert len(got) >= 5 and set(got) <= sent, logs(tmp_path)
    assert rec["link_status"] and max(s["received"] for s in rec["link_status"]) >= 5, logs(tmp_path)
    payload = sum(f["bytes"] for f in rec["features"] if f["stamp"] in set(got))
    assert crossed >= payload  # the features went through the veth pair's qdisc, not around it
    monitor_log = (tmp_path / "link_monitor.log").read_text()
    assert "no link reports" not in monitor_log, monitor_log[-2000:]
    assert all(p.returncode == 0 for p in procs), logs(tmp_path)

"""Driver process for the Zenoh tests: what a peer of the bridge does on the wire, what the server's
ROS side sees, or one server of several on its own. Writes a JSON record when done.

Roles (`cfg["role"]`):
- `zenoh`: a Zenoh session configured as a bridge's would be (TLS files or none), connecting to
  `connect`; for `seconds` it puts EncodedFeatures messages on the keys of `put` (frame ids from
  each entry's `first`; `source_info` false leaves the sender unnamed, `garbage` sends bytes that
  are no ROS message), holds liveliness tokens on the keys of `tokens` and counts what arrives on
  the keys of `subscribe`.
- `server`: one server of several (link/failover.py), able to serve every robot of `robots`,
  listening on `listen` and connecting to `connect`, for `seconds` (or until killed); each change
  of what it serves is appended to `events` (a JSON line: wall time, robot, serving) at once, so a
  killed server's record survives it.
- `tcp`: opens `connections` TCP connections to `host:port` and holds them for `seconds`, sending
  nothing, or `send` bytes (hex) once.
- `ros`: a ROS node in the server's DDS domain: publishes Detection2DArray on `publish` topics at
  5 Hz and records the frame ids of the EncodedFeatures that arrive on `listen` topics.

Usage: python -m split_perception.harness.zenoh_peers CONFIG.json OUT.json
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path


def features(frame_id: int) -> bytes:
    from rclpy.serialization import serialize_message

    from split_perception.msg import EncodedFeatures

    msg = EncodedFeatures(frame_id=frame_id, width=1.0, image_height=480, image_width=640, packet=b"\0" * 64)
    return serialize_message(msg)


def run_zenoh(cfg: dict) -> dict:
    import zenoh

    from split_perception.security.zenoh_tls import tls_config

    conf = zenoh.Config()
    conf.insert_json5("mode", json.dumps(cfg.get("mode", "peer")))
    conf.insert_json5("connect/endpoints", json.dumps(cfg["connect"]))
    conf.insert_json5("scouting/multicast/enabled", "false")
    conf.insert_json5("connect/timeout_ms", "-1")
    conf.insert_json5("connect/exit_on_failure", "false")
    if cfg.get("tls"):
        conf.insert_json5("transport/link/tls", json.dumps(tls_config({k: Path(v) for k, v in cfg["tls"].items()})))
    got: dict[str, int] = {k: 0 for k in cfg.get("subscribe", [])}
    sent: dict[str, int] = {p["key"]: 0 for p in cfg.get("put", [])}
    with zenoh.open(conf) as session:
        subs = [session.declare_subscriber(k, lambda s, k=k: got.__setitem__(k, got[k] + 1)) for k in got]
        subs += [session.liveliness().declare_token(k) for k in cfg.get("tokens", [])]
        pubs = [(p, session.declare_publisher(p["key"])) for p in cfg.get("put", [])]
        end, n = time.monotonic() + cfg["seconds"], 0
        while time.monotonic() < end:
            for p, pub in pubs:
                data = b"not a ROS message %d" % n if p.get("garbage") else features(p.get("first", 0) + n)
                if p.get("source_info", True):
                    pub.put(data, source_info=zenoh.SourceInfo(pub.id, n))
                else:
                    pub.put(data)
                sent[p["key"]] += 1
            n += 1
            time.sleep(0.2)
        peers = [str(link.auth_identifier) for link in session.info.links()]
        del subs
    return {"received": got, "sent": sent, "peers": peers}


def run_server(cfg: dict) -> dict:
    import zenoh

    from split_perception.link.failover import Assignment, server_settings

    conf = zenoh.Config()
    conf.insert_json5("mode", '"peer"')
    conf.insert_json5("listen/endpoints", json.dumps(cfg["listen"]))
    conf.insert_json5("connect/endpoints", json.dumps(cfg["connect"]))
    conf.insert_json5("scouting/multicast/enabled", "false")
    conf.insert_json5("connect/timeout_ms", "-1")
    conf.insert_json5("connect/exit_on_failure", "false")
    server_settings(conf)
    warnings = []
    with open(cfg["events"], "a") as events, zenoh.open(conf) as session:
        def change(robot: str, serving: bool, note: str) -> None:
            events.write(json.dumps({"t": time.time(), "robot": robot, "serving": serving, "note": note}) + "\n")
            events.flush()

        fleet = Assignment(session, "split_perception", cfg["name"], cfg["servers"], cfg["robots"],
                           able=lambda robot: True, on_change=change, warn=warnings.append,
                           claim_delay_s=cfg.get("claim_delay_s", 2.0))
        time.sleep(cfg["seconds"])
        fleet.close()
    return {"ignored": fleet.ignored, "warnings": warnings[:5]}


def run_tcp(cfg: dict) -> dict:
    conns, opened = [], 0
    for _ in range(cfg.get("connections", 1)):
        try:
            s = socket.create_connection((cfg["host"], cfg["port"]), timeout=10)
            if cfg.get("send"):
                s.sendall(bytes.fromhex(cfg["send"]))
            conns.append(s)
            opened += 1
        except OSError:
            pass
    time.sleep(cfg["seconds"])
    for s in conns:
        s.close()
    return {"opened": opened}


def run_ros(cfg: dict) -> dict:
    import rclpy

    from split_perception.msg import Detection2DArray, EncodedFeatures
    from split_perception.ros.common import qos_from

    rclpy.init()
    node = rclpy.create_node("server_side")
    frames: dict[str, list[int]] = {t: [] for t in cfg.get("listen", [])}
    for t, got in frames.items():
        node.create_subscription(EncodedFeatures, t, lambda m, got=got: got.append(int(m.frame_id)),
                                 qos_from("best_effort", 50))
    pubs = [node.create_publisher(Detection2DArray, t, qos_from("reliable", 10)) for t in cfg.get("publish", [])]
    end, next_pub = time.monotonic() + cfg["seconds"], 0.0
    while time.monotonic() < end:
        if time.monotonic() >= next_pub:
            for p in pubs:
                p.publish(Detection2DArray())
            next_pub = time.monotonic() + 0.2
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.shutdown()
    return {"frames": frames}


def main() -> int:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    record = {"zenoh": run_zenoh, "server": run_server, "tcp": run_tcp, "ros": run_ros}[cfg["role"]](cfg)
    Path(sys.argv[2]).write_text(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The secured Zenoh bridge: the fleet's certificates, refusals at start, and, across two network
namespaces, that only the fleet's certificates get a session and each robot's certificate reaches
only its own keys."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from split_perception.errors import ConfigError
from split_perception.harness.domains import pick_domain
from split_perception.harness.netns import NetnsLink
from split_perception.harness.processes import (
    ROS_LOCALHOST,
    finish_probe,
    install_space,
    python_module,
    ros_env,
    start_node,
    start_probe,
    stop,
    wait_for_log,
)
from split_perception.security.certs import create_ca, issue
from split_perception.security.zenoh_tls import (
    access_control,
    check_endpoints,
    is_loopback,
)

from .test_user_commands import run
from .test_zenoh_bridge import logs

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
PORT = 7447
README_CERTS = "split-perception fleet-certs fleet --robots r1 r2 --server server --host 203.0.113.10"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tls(folder, name: str) -> dict:
    return {"tls_root_ca": folder / "ca.pem", "tls_certificate": folder / f"{name}.pem",
            "tls_private_key": folder / f"{name}.key"}


def make_fleet(where, host: str):
    """The README's command, the server's address replaced by `host`."""
    assert README_CERTS in README
    run(where, README_CERTS, **{"203.0.113.10": host})
    return where / "fleet"


def test_fleet_certs_as_in_the_readme(tmp_path):
    from cryptography import x509

    fleet = make_fleet(tmp_path, "203.0.113.10")
    ca = x509.load_pem_x509_certificate((fleet / "ca.pem").read_bytes())
    for name in ("server", "r1", "r2"):
        cert = x509.load_pem_x509_certificate((fleet / f"{name}.pem").read_bytes())
        cert.verify_directly_issued_by(ca)
        assert cert.subject.rfc4514_string() == f"CN={name}"
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert ("203.0.113.10" in {str(a) for a in alt.get_values_for_type(x509.IPAddress)}) == (name == "server")
    for key in ("ca", "server", "r1", "r2"):
        assert stat.S_IMODE((fleet / f"{key}.key").stat().st_mode) == 0o600, key
    # a robot added later gets the same CA; an identity already issued is refused, not replaced
    before = (fleet / "r1.key").read_bytes()
    run(tmp_path, "split-perception fleet-certs fleet --robots r1", expect=2)
    assert (fleet / "r1.key").read_bytes() == before
    run(tmp_path, "split-perception fleet-certs fleet --robots r3")
    x509.load_pem_x509_certificate((fleet / "r3.pem").read_bytes()).verify_directly_issued_by(ca)
    run(tmp_path, "split-perception fleet-certs fleet --server s2", expect=2)  # no --host
    run(tmp_path, "split-perception fleet-certs fleet --robots r-4", expect=2)  # not a ROS name


def test_endpoint_rules():
    assert is_loopback("tcp/127.0.0.1:7447") and is_loopback("tls/localhost:7447") and is_loopback("tcp/[::1]:7447")
    assert not is_loopback("tcp/0.0.0.0:7447") and not is_loopback("tls/server.example:7447")
    check_endpoints(["tcp/127.0.0.1:7447"], [], tls=False, insecure=False)
    check_endpoints(["tcp/0.0.0.0:7447"], [], tls=False, insecure=True)
    check_endpoints(["tls/0.0.0.0:7447"], ["tls/10.0.0.1:7447"], tls=True, insecure=False)
    with pytest.raises(ConfigError, match="refusing to listen"):
        check_endpoints(["tcp/0.0.0.0:7447"], [], tls=False, insecure=False)
    with pytest.raises(ConfigError, match="not tls/ endpoints"):
        check_endpoints(["tls/0.0.0.0:7447"], ["tcp/10.0.0.1:7447"], tls=True, insecure=False)


def test_access_control_gives_each_robot_its_own_keys():
    acl = access_control({"sp/r1/features": "r1", "sp/r2/features": "r2"},
                         {"sp/r1/detections": "r1", "sp/r2/detections": "r2", "sp/r1/link_status": "r1"})
    assert acl["default_permission"] == "deny"
    rules = {r["id"]: r for r in acl["rules"]}
    policy = {p["subjects"][0]: p["rules"] for p in acl["policies"]}
    assert {s["id"]: s["cert_common_names"] for s in acl["subjects"]} == {"r1": ["r1"], "r2": ["r2"]}
    egress = {r: [k for rule in policy[r] for k in rules[rule]["key_exprs"]
                  if rules[rule]["flows"] == ["egress"] and rules[rule]["messages"] == ["put"]] for r in policy}
    assert sorted(egress["r1"]) == ["sp/r1/detections", "sp/r1/link_status"] and egress["r2"] == ["sp/r2/detections"]


def one_error_line(log: str, message: str) -> None:
    errors = [line for line in log.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in log, log[-3000:]


@pytest.fixture(scope="module")
def local_fleet(tmp_path_factory):
    d = tmp_path_factory.mktemp("fleet")
    create_ca(d)
    issue(d, "server", ("localhost", "127.0.0.1"))
    issue(d, "r1")
    (d / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    return d


SERVES_R1 = {"from_zenoh": ["/r1/features"], "to_zenoh": ["/r1/link_status", "/r1/detections"]}


@pytest.mark.parametrize("case, message", [
    ("plain on all interfaces", "refusing to listen on ['tcp/0.0.0.0:"),
    ("certificate missing", "tls_certificate: cannot read"),
    ("key not set", "tls_private_key not set"),
    ("plain endpoint with TLS", "are not tls/ endpoints"),
    ("topic of no robot", "every topic must be under a robot's name"),
    ("garbage certificate", "could not open the Zenoh session"),
    ("certificate is a folder", "tls_certificate: cannot read"),
])
def test_refused_at_start_with_one_line(tmp_path, local_fleet, case, message):
    port = free_port()
    secure = {**tls(local_fleet, "server"), "listen": [f"tls/127.0.0.1:{port}"], **SERVES_R1}
    params = {
        "plain on all interfaces": {"listen": [f"tcp/0.0.0.0:{port}"], **SERVES_R1},
        "certificate missing": {**secure, "tls_certificate": local_fleet / "missing.pem"},
        "key not set": {**secure, "tls_private_key": ""},
        "plain endpoint with TLS": {**secure, "listen": [f"tcp/127.0.0.1:{port}"]},
        "topic of no robot": {**secure, "from_zenoh": ["features"]},
        "garbage certificate": {**secure, "tls_certificate": local_fleet / "garbage.pem"},
        "certificate is a folder": {**secure, "tls_certificate": local_fleet},
    }[case]
    log = tmp_path / "bridge.log"
    proc = start_node("zenoh_bridge", pick_domain(), params=params, log_path=log)
    assert proc.wait(timeout=120) == 2
    one_error_line(log.read_text(), message)


def test_insecure_listens_on_all_interfaces(tmp_path):
    """`insecure: true` is the one way to listen in plain TCP beyond loopback (tests, closed networks)."""
    log = tmp_path / "bridge.log"
    proc = start_node("zenoh_bridge", pick_domain(), log_path=log,
                      params={"listen": [f"tcp/0.0.0.0:{free_port()}"], "insecure": True, **SERVES_R1})
    try:
        wait_for_log(log, "zenoh_bridge ready: peer, no TLS", 120)
    finally:
        stop([proc])
    assert proc.returncode == 0, log.read_text()[-2000:]


def readme_block(start: str) -> list[str]:
    """The command lines of the README's code block from the line that holds `start` on (continued
    lines joined, comments left out)."""
    block = README[README.index(start):]
    block = block[:block.index("```")].replace("\\\n", " ")
    return [x for x in block.splitlines() if x.strip() and not x.startswith("#")]


def readme_bridges() -> dict[str, list[str]]:
    """The README's two `ros2 run ... zenoh_bridge` command lines (server, robot r1) as argv."""
    lines = [shlex.split(x) for x in readme_block(README_CERTS) if x.startswith("ros2 run split_perception zenoh_bridge")]
    assert len(lines) == 2, lines
    return {"server": lines[0], "robot": lines[1]}


def start_readme_bridge(argv: list[str], cwd, log, domain: int, prefix: list[str], host: str,
                        host2: str = "") -> subprocess.Popen:
    """`ros2 run split_perception zenoh_bridge ARGS` as ros2 runs it: the package's executable with
    ARGS as written, the example server addresses replaced by `host` (and the second by `host2`)."""
    assert argv[:3] == ["ros2", "run", "split_perception"]
    exe = install_space() / "lib" / "split_perception" / argv[3]
    cmd = [*prefix, sys.executable, str(exe),
           *(a.replace("203.0.113.10", host).replace("203.0.113.11", host2) for a in argv[4:])]
    with open(log, "w") as out:
        return subprocess.Popen(cmd, cwd=cwd, env={**ros_env(domain), **ROS_LOCALHOST}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def test_secured_loop_across_a_real_link(tmp_path, tiny_model_path):
    """The README's secure setup between two network namespaces: its fleet-certs command, its
    server and robot bridge commands, a decoder and an encoder of robot r1: features cross,
    detections and link status come back, and each side names the other's certificate."""
    cfg = {"seconds": 16, "fps": 4, "await_publishers": ["detections"], "namespace": "r1"}
    m = {"model_path": str(tiny_model_path)}
    robot_domain, server_domain = pick_domain(), pick_domain()
    bridges = readme_bridges()
    procs = []
    with NetnsLink(rate_bps=5e6) as link:
        make_fleet(tmp_path, link.offboard_ip)
        on, off = link.prefix("onboard"), link.prefix("offboard")
        try:
            procs.append(start_readme_bridge(bridges["server"], tmp_path, tmp_path / "bridge_server.log",
                                             server_domain, off, link.offboard_ip))
            procs.append(start_node("decoder", server_domain, params=m, log_path=tmp_path / "decoder.log",
                                    prefix=off, env=ROS_LOCALHOST, namespace="r1"))
            procs.append(start_readme_bridge(bridges["robot"], tmp_path, tmp_path / "bridge_robot.log",
                                             robot_domain, on, link.offboard_ip))
            procs.append(start_node("encoder", robot_domain, params=m, log_path=tmp_path / "encoder.log",
                                    prefix=on, env=ROS_LOCALHOST, namespace="r1"))
            for name in ("bridge_server", "bridge_robot"):
                wait_for_log(tmp_path / f"{name}.log", "zenoh_bridge ready", 120)
            wait_for_log(tmp_path / "encoder.log", "encoder ready", 180)
            wait_for_log(tmp_path / "decoder.log", "decoder ready", 180)
            probe = start_probe(cfg, tmp_path, robot_domain, prefix=on, env=ROS_LOCALHOST)
            procs.append(probe)
            rec = finish_probe(probe, cfg, tmp_path)
        finally:
            stop(procs)
    sent = {s["stamp"] for s in rec["sent"]}
    got = [d["stamp"] for d in rec["detections"]]
    assert len(got) >= 5 and set(got) <= sent, logs(tmp_path)
    assert rec["link_status"] and max(s["received"] for s in rec["link_status"]) >= 5, logs(tmp_path)
    assert all(p.returncode == 0 for p in procs), logs(tmp_path)
    server, robot = (tmp_path / "bridge_server.log").read_text(), (tmp_path / "bridge_robot.log").read_text()
    assert "mutual TLS, per-robot access control" in server and "certificate r1" in server, server[-2000:]
    assert "certificate server" in robot, robot[-2000:]
    assert "0 refused from a sender" in server, server[-2000:]


def start_helper(cfg: dict, work, name: str, domain: int, prefix: list[str]) -> subprocess.Popen:
    (work / f"{name}.json").write_text(json.dumps(cfg))
    cmd = [*prefix, *python_module("split_perception.harness.zenoh_peers"), str(work / f"{name}.json"),
           str(work / f"{name}_out.json")]
    with open(work / f"{name}.log", "w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, env={**ros_env(domain), **ROS_LOCALHOST}, cwd=work, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def test_only_the_fleet_gets_in_and_each_robot_reaches_only_its_keys(tmp_path):
    """Across a real link, a server bridge for robots r1 and r2; on the robot's side, at once:
    r1's certificate putting r1's features, r2's (named as itself, and unnamed), and garbage, and
    subscribing to both robots' detections; a certificate for `r2` from another CA; an expired r2
    certificate; no certificate at all; idle and garbage TCP connections. Only r1's own frames reach
    the server's ROS side, only r1's detections reach r1, the rest are refused and counted, and the
    bridge keeps running to exit 0."""
    seconds = 16
    domain = pick_domain()
    procs = []
    with NetnsLink(rate_bps=20e6) as link:
        fleet = make_fleet(tmp_path, link.offboard_ip)
        other = tmp_path / "other"
        create_ca(other)
        issue(other, "r2")
        expired = tmp_path / "expired"
        issue(fleet, "r2", out=expired, days=1, not_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10))
        endpoint = f"tls/{link.offboard_ip}:{PORT}"
        on, off = link.prefix("onboard"), link.prefix("offboard")
        key = "split_perception/{}/{}".format
        serves = {"from_zenoh": ["/r1/features", "/r2/features"],
                  "to_zenoh": ["/r1/detections", "/r2/detections"]}

        def files(folder, name, ca=fleet):
            return {"tls_root_ca": str(ca / "ca.pem"), "tls_certificate": str(folder / f"{name}.pem"),
                    "tls_private_key": str(folder / f"{name}.key")}

        peers = {
            "r1": {"tls": files(fleet, "r1"), "put": [
                {"key": key("r1", "features"), "first": 0},
                {"key": key("r2", "features"), "first": 5000},  # r1 naming itself on r2's key
                {"key": key("r2", "features"), "first": 6000, "source_info": False},  # unnamed
                {"key": key("r1", "features"), "garbage": True}],
                "subscribe": [key("r1", "detections"), key("r2", "detections"), "split_perception/**"]},
            "other_ca": {"tls": files(other, "r2"), "put": [{"key": key("r2", "features"), "first": 1000}],
                         "subscribe": [key("r2", "detections")]},
            "no_certificate": {"connect": [f"tcp/{link.offboard_ip}:{PORT}"],
                               "put": [{"key": key("r2", "features"), "first": 2000}],
                               "subscribe": [key("r2", "detections")]},
            "expired": {"tls": files(expired, "r2"), "put": [{"key": key("r2", "features"), "first": 3000}],
                        "subscribe": [key("r2", "detections")]},
        }
        try:
            procs.append(start_node("zenoh_bridge", domain, log_path=tmp_path / "bridge_server.log",
                                    params={**tls(fleet, "server"), "listen": [endpoint], **serves},
                                    prefix=off, env=ROS_LOCALHOST))
            wait_for_log(tmp_path / "bridge_server.log", "zenoh_bridge ready", 120)
            helpers = {"server_side": start_helper(
                {"role": "ros", "seconds": seconds + 6, "listen": ["/r1/features", "/r2/features"],
                 "publish": ["/r1/detections", "/r2/detections"]}, tmp_path, "server_side", domain, off)}
            for name, cfg in peers.items():
                helpers[name] = start_helper({"role": "zenoh", "seconds": seconds, "connect": [endpoint], **cfg},
                                             tmp_path, name, domain, on)
            helpers["idle_tcp"] = start_helper({"role": "tcp", "host": link.offboard_ip, "port": PORT,
                                                "connections": 3, "seconds": seconds}, tmp_path, "idle_tcp",
                                               domain, on)
            helpers["garbage_tcp"] = start_helper({"role": "tcp", "host": link.offboard_ip, "port": PORT,
                                                   "send": (b"\x16\x03\x01" + bytes(range(256)) * 4).hex(),
                                                   "seconds": 2}, tmp_path, "garbage_tcp", domain, on)
            procs += helpers.values()
            for p in helpers.values():
                assert p.wait(timeout=seconds + 120) == 0, logs(tmp_path)
            assert procs[0].poll() is None, logs(tmp_path)  # the bridge is still running
        finally:
            stop(procs)
    rec = {name: json.loads((tmp_path / f"{name}_out.json").read_text()) for name in helpers}
    frames = rec["server_side"]["frames"]
    r1 = rec["r1"]["received"]
    assert len(frames["/r1/features"]) >= 10 and max(frames["/r1/features"]) < 1000, frames  # only r1's own
    assert frames["/r2/features"] == [], frames  # nothing else crossed: not r1's, other CA, expired, no cert
    assert r1[key("r1", "detections")] >= 10 and r1[key("r2", "detections")] == 0, r1
    # the subscription to every key was refused: it saw only what r1 itself put and its own detections
    assert r1["split_perception/**"] == sum(rec["r1"]["sent"].values()) + r1[key("r1", "detections")], r1
    for name in ("other_ca", "no_certificate", "expired"):
        assert rec[name]["received"] == {key("r2", "detections"): 0} and rec[name]["peers"] == [], rec[name]
    assert rec["idle_tcp"]["opened"] == 3
    log = (tmp_path / "bridge_server.log").read_text()
    assert procs[0].returncode == 0, log[-3000:]
    summary = re.search(r"forwarded (.*); (\d+) bad payloads, (\d+) refused from a sender", log)
    assert summary, log[-3000:]
    r2_puts = rec["r1"]["sent"][key("r2", "features")]
    assert int(summary.group(2)) >= 5 and int(summary.group(3)) >= min(10, r2_puts), summary.group(0)
    assert "refused a message from r1" in log and "refused a message from an unknown sender" in log, log[-3000:]
    connected = set(re.findall(r"connected, certificate (\w+)", log))
    assert connected == {"r1"}, connected  # the other CA's `r2` and the expired r2 never had a session



README_SERVERS = "split-perception fleet-certs fleet --robots r1 r2 --server s1 --host 203.0.113.10"


def test_two_secured_servers_as_in_the_readme_share_robots_and_take_over(tmp_path, tiny_model_path):
    """The README's two-server setup across a real link: its certificate commands, s1's bridge and
    decoder on one side, s2's and robot r1's (encoder, bridge) on the other. The servers see each
    other through their access control; r1 is served by s1 (its first-ranked server), its frames
    reach s1 alone, and a session with r1's certificate declaring that s2 serves r1 changes nothing
    (a robot may not declare the fleet's tokens). When s1's bridge is killed, s2 takes r1 over and
    detections keep coming."""
    lines = readme_block(README_SERVERS)
    certs = [x for x in lines if x.startswith("split-perception")]
    bridges = [shlex.split(x) for x in lines if x.startswith("ros2 run split_perception zenoh_bridge")]
    assert len(certs) == 2 and len(bridges) == 3, lines
    cfg = {"seconds": 30, "fps": 4, "await_publishers": ["detections"], "namespace": "r1"}
    m = {"model_path": str(tiny_model_path), "robots": ["r1", "r2"]}
    domains = {k: pick_domain() for k in ("s1", "s2", "robot")}
    procs, fleet_keys = {}, "split_perception/_fleet"
    with NetnsLink(rate_bps=20e6) as link:
        on, off = link.prefix("onboard"), link.prefix("offboard")
        hosts = {"203.0.113.10": link.offboard_ip, "203.0.113.11": link.onboard_ip}
        for command in certs:
            run(tmp_path, command, **hosts)
        where = {"s1": (off, domains["s1"]), "s2": (on, domains["s2"]), "r1": (on, domains["robot"])}
        try:
            for (name, (prefix, domain)), argv in zip(where.items(), bridges):
                procs[f"bridge_{name}"] = start_readme_bridge(argv, tmp_path, tmp_path / f"bridge_{name}.log", domain,
                                                              prefix, link.offboard_ip, link.onboard_ip)
            for name in ("s1", "s2"):
                prefix, domain = where[name]
                procs[f"decoder_{name}"] = start_node("decoder", domain, params=m, prefix=prefix, env=ROS_LOCALHOST,
                                                      log_path=tmp_path / f"decoder_{name}.log")
            procs["encoder"] = start_node("encoder", domains["robot"], params={"model_path": m["model_path"]},
                                          prefix=on, env=ROS_LOCALHOST, namespace="r1",
                                          log_path=tmp_path / "encoder.log")
            procs["forger"] = start_helper({"role": "zenoh", "seconds": 900, "tls": {
                k: str(v) for k, v in tls(tmp_path / "fleet", "r1").items()},
                "connect": [f"tls/{link.offboard_ip}:{PORT}", f"tls/{link.onboard_ip}:{PORT}"],
                "tokens": [f"{fleet_keys}/serving/r1/s2", f"{fleet_keys}/candidate/r1/s2"]},
                tmp_path, "forger", domains["robot"], on)
            wait_for_log(tmp_path / "bridge_s1.log", "serving r1", 240)
            probe = start_probe(cfg, tmp_path, domains["robot"], prefix=on, env=ROS_LOCALHOST)
            procs["probe"] = probe
            time.sleep(cfg["seconds"] / 2)
            killed = time.time_ns()
            os.killpg(procs["bridge_s1"].pid, signal.SIGKILL)
            rec = finish_probe(probe, cfg, tmp_path)
        finally:
            stop(list(procs.values()))
    s1, s2 = (tmp_path / "bridge_s1.log").read_text(), (tmp_path / "bridge_s2.log").read_text()
    assert "server s1 of ['s1', 's2']" in s1 and "certificate s2" in s1 and "certificate s1" in s2, logs(tmp_path)
    before = [d["stamp"] for d in rec["detections"] if d["stamp"] < killed]
    after = [d["stamp"] for d in rec["detections"] if d["stamp"] > killed]
    assert len(before) >= 3 and len(after) >= 3, logs(tmp_path)
    assert "serving r1" in s2 and s2.index("serving r1") > s2.index("certificate s1"), s2[-3000:]
    assert "forwarded nothing" not in s2 and "/r1/features: " in s2, s2[-3000:]  # r1's frames after the kill
    assert "ignored the liveliness token" not in s1 + s2, logs(tmp_path)  # the forger's never arrived
    assert procs["bridge_s2"].returncode == 0, s2[-3000:]

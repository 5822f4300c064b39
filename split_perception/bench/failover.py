"""`bench failover`: two decoder servers for one fleet over DDS + Zenoh on this machine, one killed mid-run.

Robots: an encoder and a `zenoh_bridge` per robot (namespaces r1..rN, one DDS domain), connected
to both servers, the robots' cameras in one driver process. Servers s1 and s2: each a decoder
serving every robot and a bridge (`server_name`, `servers`), in a DDS domain of its own, the two
bridges connected to each other. Which server serves which robot is decided by Zenoh liveliness
tokens (link/failover.py): the k-th robot prefers s(k mod 2). At `--kill-at` s1's bridge and
decoder are SIGKILLed; at `--return-at` (0: never) s1 starts again, and the run lasts until it has
served its robots again for `AFTER_S` (at least `--seconds`).

Rows, one per robot: `moved` (served by s1 when it died); `takeover_s` (the kill to s2's bridge
serving it); `recovery_s` (the kill to the first detection of a frame sent after it, which only s2
can have decoded: the takeover plus the wait for the robot's next frame); `lost` (frames sent with no
detection back), of them `lost_in_outage` (in a gap of detections that spans the kill or a change
of the robot's server) and `lost_outside_outage` (the others: every loss of a robot that did not
move is one); `decoded_twice` (frames with two detections: two servers decoded them).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ..errors import ConfigError
from ..evaluation.report import command_line, machine_info, markdown_table, write_results
from ..harness.domains import domain_from, pick_domain
from ..link.failover import order
from .common import frames_source
from .fleet import WARMUP_S, camera_images

SERVERS = ("s1", "s2")
TARGET_S = 5.0  # a dead server's robots are served again within this
TAIL_S = 2.0  # frames of the last seconds are left out: their detections may still be on their way
AFTER_S = 10.0  # the run goes on this long after the returned server serves its robots again
RETURN_TIMEOUT_S = 300.0  # a loaded machine takes many times the ~10 s a decoder needs to start
ASSIGNMENT = re.compile(r"\[(\d+\.\d+)\] \[[^\]]*\]: (serving|handed) (\w+)")
COLUMNS = [("robot", "robot", ""), ("moved", "moved", ""), ("takeover_s", "taken over s", ".2f"),
           ("recovery_s", "recovery s", ".2f"),
           ("lost_outside_outage", "lost outside outage", "d"), ("lost_in_outage", "lost in outage", "d"),
           ("sent", "frames sent", "d"), ("decoded_twice", "decoded twice", "d"),
           ("lost_at_s", "lost frames sent at (s)", "")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assignments(log: Path) -> list[tuple[int, str, bool]]:
    """(wall time ns, robot, serving) for each change a server's bridge logged."""
    text = log.read_text() if log.exists() else ""
    return [(int(float(t) * 1e9), robot, what == "serving") for t, what, robot in ASSIGNMENT.findall(text)]


def served_at(log: Path) -> set[str]:
    """Robots a server's bridge serves at the end of its log so far."""
    serving: set[str] = set()
    for _, robot, on in assignments(log):
        (serving.add if on else serving.discard)(robot)
    return serving


def start_server(name: str, domain: int, endpoints: dict[str, str], robots: list[str], model: dict, args,
                 work: Path, tag: str) -> list:
    from ..harness.processes import start_node

    topics = {"from_zenoh": [f"/{r}/features" for r in robots],
              "to_zenoh": [f"/{r}/{t}" for r in robots for t in ("detections", "link_status")]}
    bridge = {"listen": [endpoints[name]], "connect": [e for s, e in endpoints.items() if s != name],
              "server_name": name, "servers": list(SERVERS), **topics}
    return [start_node("zenoh_bridge", domain, params=bridge, log_path=work / f"bridge_{name}{tag}.log"),
            start_node("decoder", domain, log_path=work / f"decoder_{name}{tag}.log",
                       params={**model, "robots": robots, "threads": args.threads, "publish_mask": False})]


def names(robots: set[str]) -> str:
    return ", ".join(sorted(robots)) or "none"


def kill(procs) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    for p in procs:
        p.wait()


def outage_gaps(sent: list[int], got: set[int], events: list[int]) -> tuple[list[int], list[int]]:
    """Lost frames (stamps) split into those in a gap of detections around one of `events` and the others."""
    inside, outside, gap = [], [], []
    last = None  # stamp of the last frame with a detection
    for s in sent + [None]:
        if s is None or s in got:
            end = s if s is not None else float("inf")
            spans = any((last is None or last < e) and e < end for e in events)
            (inside if spans else outside).extend(gap)
            gap, last = [], s
        else:
            gap.append(s)
    return inside, outside


def summarize(rec: dict, robots: list[str], moved: set[str], kill_ns: int, taken_ns: dict[str, int],
              events: dict[str, list[int]], start_ns: int, end_ns: int, first_ns: int = 0) -> list[dict]:
    """Rows per robot from the cameras' record, over the frames sent in [start_ns, end_ns);
    `taken_ns[robot]`: when another server took a moved robot; `events[robot]`: when its server
    died or changed; `lost_at_s` counts from `first_ns`."""
    rows = []
    for r in robots:
        sent = [s["stamp"] for s in rec[r]["sent"] if start_ns <= s["stamp"] < end_ns]
        got: dict[int, int] = {}
        for d in rec[r]["detections"]:
            got[d["stamp"]] = got.get(d["stamp"], 0) + 1
        after = [d["stamp"] + d["latency_ms"] * 1e6 for d in rec[r]["detections"] if d["stamp"] > kill_ns]
        recovery = (min(after) - kill_ns) / 1e9 if after and r in moved else None
        inside, outside = outage_gaps(sent, set(got), events.get(r, []))
        taken = taken_ns.get(r) if r in moved else None
        rows.append({"robot": r, "moved": r in moved,
                     "takeover_s": None if taken is None else round((taken - kill_ns) / 1e9, 3),
                     "recovery_s": None if recovery is None else round(recovery, 3),
                     "lost_outside_outage": len(outside), "lost_in_outage": len(inside),
                     "lost": len(inside) + len(outside), "sent": len(sent),
                     "decoded_twice": sum(1 for s in sent if got.get(s, 0) > 1),
                     "lost_at_s": " ".join(f"{(s - first_ns) / 1e9:.1f}" for s in sorted(inside + outside))})
    return rows


def headline(result: dict) -> str:
    """The run in one sentence, as README.md quotes it (a test holds the two together)."""
    rows = result["rows"]
    moved = [r for r in rows if r["moved"]]
    stayed = [r for r in rows if not r["moved"]]
    back = result.get("s1_serving_again_at_s")
    returned = (f"; the server started again took its robots back {back - result['return_at_s']:.0f} s after its "
                f"start" if back else "")
    return (f"{len(moved)} robots of the killed server taken over within "
            f"{max(r['takeover_s'] for r in moved):.2f} s, the detection of their next frame back within "
            f"{max(r['recovery_s'] for r in moved):.1f} s (one frame every {1 / result['fps']:g} s); "
            f"{sum(r['lost'] for r in stayed)} of {sum(r['sent'] for r in stayed)} frames lost on the "
            f"{len(stayed)} robots that stayed, {sum(r['decoded_twice'] for r in rows)} decoded twice; "
            f"{sum(r['lost'] for r in moved)} of {sum(r['sent'] for r in moved)} lost on the moved ones (frames in "
            f"flight at the kill or at the handback){returned}")


def run(args) -> int:
    from ..harness.processes import ROBOT_ENV, python_module, ros_env, start_node, stop, wait_for_log

    if not 0 < args.kill_at < args.seconds - TARGET_S - TAIL_S or args.fps <= 0 or args.robots < 2 or \
            (args.return_at and args.return_at <= args.kill_at + TARGET_S):
        raise ConfigError(f"need --robots >= 2, --fps > 0, 0 < --kill-at < --seconds - {TARGET_S + TAIL_S:g} and "
                          f"--return-at 0 or above --kill-at + {TARGET_S:g}")
    robots = [f"r{k + 1}" for k in range(args.robots)]
    model = {"model_path": args.model or ""}  # a bundled model's name, or a path the nodes take as the caller meant
    data = frames_source(args.model, args.data)
    robot_domain = domain_from(args)
    domains = {s: pick_domain("run") for s in SERVERS}
    endpoints = {s: f"tcp/127.0.0.1:{free_port()}" for s in SERVERS}
    print(f"failover: {len(robots)} robots at {args.fps:g} fps, model {args.model or 'nanodet_g (default)'}, "
          f"servers {list(SERVERS)}, s1 killed at {args.kill_at:g} s"
          f"{f', back at {args.return_at:g} s' if args.return_at else ''}, {args.seconds:g} s", flush=True)
    t_start = time.monotonic()
    procs, servers = [], {}
    with tempfile.TemporaryDirectory(prefix="sp_failover_") as tmp:
        work = Path(tmp)
        images = camera_images(data, 8, work / "frames")
        try:
            for s in SERVERS:
                servers[s] = start_server(s, domains[s], endpoints, robots, model, args, work, "")
                procs += servers[s]
            for r in robots:
                procs.append(start_node("encoder", robot_domain, namespace=r, log_path=work / f"encoder_{r}.log",
                                        params={**model, "threads": 1}, env=ROBOT_ENV))
                procs.append(start_node("zenoh_bridge", robot_domain, namespace=r, log_path=work / f"bridge_{r}.log",
                                        params={"connect": list(endpoints.values()), "to_zenoh": ["features"],
                                                "from_zenoh": ["detections", "link_status"]}, env=ROBOT_ENV))
            for log in sorted(work.glob("*.log")):
                wait_for_log(log, "ready", 300)
            # each server serves its own robots (the first one ready serves all until the other can)
            own = {s: {r for k, r in enumerate(robots) if order(k, list(SERVERS))[0] == s} for s in SERVERS}
            deadline = time.monotonic() + 120
            while (served := {s: served_at(work / f"bridge_{s}.log") for s in SERVERS}) != own:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the servers did not settle on {own}: they serve {served}")
                time.sleep(0.5)
            print(f"  serving before the kill: { {s: sorted(v) for s, v in served.items()} }", flush=True)
            cfg = {"robots": robots, "fps": args.fps, "seconds": args.seconds + RETURN_TIMEOUT_S + AFTER_S,
                   "images": images}  # stopped by SIGINT at the end of the run
            (work / "camera.json").write_text(json.dumps(cfg))
            cam = subprocess.Popen([*python_module("split_perception.harness.fleet_camera"), str(work / "camera.json"),
                                    str(work / "camera_out.json")], env={**ros_env(robot_domain), **ROBOT_ENV}, cwd=work,
                                   start_new_session=True)
            procs.append(cam)
            start_ns, t0 = time.time_ns(), time.monotonic()
            time.sleep(args.kill_at)
            moved = served_at(work / "bridge_s1.log")
            kill_ns = time.time_ns()
            kill(servers["s1"])
            print(f"  killed s1 at {time.monotonic() - t0:.1f} s (it served {sorted(moved)})", flush=True)
            serving_again = None  # seconds into the run when the returned s1 serves its robots again
            if args.return_at:
                time.sleep(max(0.0, args.return_at - (time.monotonic() - t0)))
                procs += start_server("s1", domains["s1"], endpoints, robots, model, args, work, "_back")
                print(f"  s1 started again at {time.monotonic() - t0:.1f} s", flush=True)
                deadline = time.monotonic() + RETURN_TIMEOUT_S
                while served_at(work / "bridge_s1_back.log") != moved and time.monotonic() < deadline:
                    time.sleep(0.2)
                if served_at(work / "bridge_s1_back.log") == moved:
                    serving_again = time.monotonic() - t0
                    print(f"  s1 serves {sorted(moved)} again at {serving_again:.1f} s", flush=True)
            seconds = max(args.seconds, (serving_again or 0.0) + AFTER_S)
            time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
            cam.send_signal(signal.SIGINT)
            if cam.wait(timeout=120) != 0:
                raise RuntimeError(f"the fleet camera failed (exit {cam.returncode})")
            rec = json.loads((work / "camera_out.json").read_text())
            back = served_at(work / "bridge_s1_back.log")
            changes = {log.stem: [c for c in assignments(log) if c[0] > start_ns] for log in work.glob("bridge_s*.log")}
        except BaseException:
            for log in sorted(work.glob("bridge_s*.log")):
                print(f"--- {log.name}\n{log.read_text()[-1500:]}")
            raise
        finally:
            stop(procs)
    events = {r: [t for log in changes.values() for t, who, _ in log if who == r] + ([kill_ns] if r in moved else [])
              for r in robots}
    taken = {}
    for t, who, on in changes["bridge_s2"]:
        if on and t > kill_ns:
            taken.setdefault(who, t)
    rows = summarize(rec, robots, moved, kill_ns, taken, events, start_ns + int(WARMUP_S * 1e9),
                     start_ns + int((seconds - TAIL_S) * 1e9), first_ns=start_ns)
    ok = bool(moved) and all(r["recovery_s"] is not None and r["recovery_s"] <= TARGET_S for r in rows if r["moved"]) \
        and all(r["lost_outside_outage"] == 0 and r["decoded_twice"] == 0 for r in rows) \
        and (not args.return_at or back == moved)
    returned = (f", started again at {args.return_at:g} s and serving {names(back)} from {serving_again:.1f} s"
                if serving_again else f", started again at {args.return_at:g} s but serving {names(back)}"
                if args.return_at else "")
    note = (f"{len(robots)} robots at {args.fps:g} fps each (model {args.model or 'nanodet_g, the default'}: at this "
            f"rate one server decodes the whole fleet alone on this shared 2-core machine), frames from "
            f"{WARMUP_S:g} s to {seconds - TAIL_S:.0f} s of a {seconds:.0f} s run; s1 (serving {names(moved)}) "
            f"SIGKILLed at {args.kill_at:g} s{returned}. Taken over: the kill to s2's bridge serving the robot; "
            f"recovery: the kill to the first detection of a frame sent after it (one frame every "
            f"{1 / args.fps:g} s); lost in outage: frames in a gap of detections spanning the kill or a change of "
            f"the robot's server.")
    table = markdown_table(rows, COLUMNS)
    print(f"{note}\n\n{table}")
    out = Path(args.out)
    write_results(out, "failover", {"command": command_line(args), "machine": machine_info(args.threads),
                                    "fps": args.fps, "seconds": round(seconds, 1), "kill_at_s": args.kill_at,
                                    "return_at_s": args.return_at, "served_by_s1_after_return": sorted(back),
                                    "s1_serving_again_at_s": serving_again and round(serving_again, 1),
                                    "target_s": TARGET_S, "meets_target": ok,
                                    "wall_s": round(time.monotonic() - t_start, 1)}, rows)
    (out / "table.md").write_text(f"{note}\n\n{table}\n")
    if moved and all(r["takeover_s"] is not None and r["recovery_s"] is not None for r in rows if r["moved"]):
        print(headline(json.loads((out / "failover.json").read_text())))
    print(f"{'meets' if ok else 'MISSES'} the target: moved robots served again within {TARGET_S:g} s, no frame "
          f"lost on the others, none decoded twice; wrote {out}/failover.json", flush=True)
    return 0 if ok else 1

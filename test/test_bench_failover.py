"""More than one server: the robots' ranking of the servers, the liveliness-based assignment between
server processes (killed, frozen, restarted, beside a peer with tokens of no server of the fleet),
and `bench failover` over DDS + Zenoh."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from split_perception.bench.failover import headline, summarize
from split_perception.cli import main
from split_perception.errors import ConfigError
from split_perception.harness.domains import pick_domain
from split_perception.harness.processes import python_module, ros_env, start_node
from split_perception.link.failover import check_servers, order

REPO = Path(__file__).resolve().parents[1]
ROBOTS = ["r1", "r2", "r3", "r4"]
SERVERS = ["s1", "s2"]
ZENOH_DEFAULT_LEASE_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_each_robot_ranks_the_servers_in_turn():
    assert [order(k, SERVERS) for k in range(3)] == [["s1", "s2"], ["s2", "s1"], ["s1", "s2"]]
    assert order(4, ["a", "b", "c"]) == ["b", "c", "a"]


@pytest.mark.parametrize("me, servers, message", [
    ("s3", SERVERS, "not one of servers"),
    ("s1", ["s1", "s1"], "twice"),
    ("s1", ["s1", "a/b"], "bad server name"),
    ("s1", ["s1", ""], "bad server name"),
])
def test_bad_server_lists_are_refused(me, servers, message):
    with pytest.raises(ConfigError, match=message):
        check_servers(me, servers)


@pytest.mark.parametrize("params, message", [
    ({"server_name": "s3", "servers": SERVERS}, "not one of servers"),
    ({"servers": SERVERS}, "without server_name"),
    ({"server_name": "s1", "servers": SERVERS, "to_zenoh": ["/r1/detections"],
      "from_zenoh": ["/r1/features", "/r2/features"]}, "['r2'] have none"),
    ({"server_name": "s1", "servers": SERVERS, "from_zenoh": ["features"], "to_zenoh": ["detections"]},
     "under a robot's name"),
])
def test_bad_server_settings_exit_with_one_clear_line(tmp_path, params, message):
    params = {"from_zenoh": ["/r1/features"], "to_zenoh": ["/r1/detections"], **params}
    log = tmp_path / "bridge.log"
    proc = start_node("zenoh_bridge", pick_domain(), params=params, log_path=log)
    assert proc.wait(timeout=60) == 2
    errors = [line for line in log.read_text().splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and message in errors[0], log.read_text()[-2000:]


def test_summarize_counts_outages_losses_and_doubles():
    s = int(1e9)
    rec = {"r1": {"sent": [{"stamp": k * s} for k in range(12)],
                  "detections": [{"stamp": k * s, "latency_ms": 100.0} for k in (0, 1, 2, 6, 7, 9, 10, 11)]},
           "r2": {"sent": [{"stamp": k * s} for k in range(12)],
                  "detections": [{"stamp": k * s, "latency_ms": 50.0} for k in (0, 1, 2, 3, 3, 5, 6, 7, 8, 9, 10, 11)]}}
    rows = {r["robot"]: r for r in summarize(rec, ["r1", "r2"], {"r1"}, kill_ns=int(3.5 * s),
                                             taken_ns={"r1": int(3.6 * s)}, events={"r1": [int(3.5 * s)], "r2": []},
                                             start_ns=0, end_ns=12 * s)}
    r1, r2 = rows["r1"], rows["r2"]
    assert r1["moved"] and r1["takeover_s"] == 0.1 and r1["recovery_s"] == 2.6  # frame 6 back at 6.1 s
    assert r1["lost"] == 4 and r1["lost_in_outage"] == 3 and r1["lost_outside_outage"] == 1  # frame 8: no event
    assert not r2["moved"] and r2["recovery_s"] is None and r2["takeover_s"] is None
    assert r2["lost_outside_outage"] == 1 and r2["decoded_twice"] == 1 and r2["lost_at_s"] == "4.0"


def test_readme_quotes_the_committed_run():
    """The README's sentence on `bench failover` is the committed run's, which met the target."""
    res = json.loads((REPO / "results" / "bench" / "failover" / "failover.json").read_text())
    assert res["meets_target"] and res["command"].startswith("split-perception bench failover"), res
    assert headline(res) in " ".join((REPO / "README.md").read_text().split())


def start_server(tmp_path: Path, name: str, endpoints: dict, tag: str, seconds: float = 300) -> subprocess.Popen:
    cfg = {"role": "server", "name": name, "servers": SERVERS, "robots": ROBOTS, "claim_delay_s": 1.0,
           "listen": [endpoints[name]], "connect": [e for s, e in endpoints.items() if s != name],
           "seconds": seconds, "events": str(tmp_path / f"events_{name}{tag}.jsonl")}
    return start_helper(tmp_path, f"{name}{tag}", cfg)


def start_helper(tmp_path: Path, name: str, cfg: dict) -> subprocess.Popen:
    (tmp_path / f"{name}.json").write_text(json.dumps(cfg))
    with open(tmp_path / f"{name}.log", "w") as out:
        return subprocess.Popen([*python_module("split_perception.harness.zenoh_peers"), str(tmp_path / f"{name}.json"),
                                 str(tmp_path / f"{name}_out.json")], env=ros_env(pick_domain()), cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


class Timeline:
    """What each server (incarnation) served when, from its event files; a killed or frozen
    incarnation serves nothing from that moment on (it carries nothing)."""

    def __init__(self, tmp_path: Path):
        self.tmp_path, self.ended = tmp_path, {}

    def intervals(self) -> dict[str, list[tuple[float, float, str]]]:
        """robot -> [(start, end, incarnation)]"""
        out: dict[str, list] = {r: [] for r in ROBOTS}
        for f in sorted(self.tmp_path.glob("events_*.jsonl")):
            who = f.stem.removeprefix("events_")
            since: dict[str, float] = {}
            for line in f.read_text().splitlines():
                e = json.loads(line)
                if e["serving"]:
                    since[e["robot"]] = e["t"]
                elif e["robot"] in since:
                    out[e["robot"]].append((since.pop(e["robot"]), e["t"], who))
            for robot, t in since.items():
                out[robot].append((t, self.ended.get(who, float("inf")), who))
        return out

    def serving(self, who: str) -> set[str]:
        now = time.time()
        return {r for r, spans in self.intervals().items() for a, b, w in spans if w == who and a <= now < b}

    def first_start(self, who: str, robot: str, after: float) -> float:
        return min(a for a, _, w in self.intervals()[robot] if w == who and a >= after)

    def wait(self, want: dict[str, set[str]], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.serving(w) == robots for w, robots in want.items()):
                return
            time.sleep(0.1)
        raise AssertionError(f"wanted {want}, have {{w: self.serving(w) for w in want}}: {self.intervals()}")

    def overlaps(self) -> list:
        found = []
        for robot, spans in self.intervals().items():
            end, who = float("-inf"), None
            for a, b, w in sorted(spans):
                if a < end:
                    found.append((robot, who, w, round(end - a, 3)))
                if b > end:
                    end, who = b, w
        return found


def test_servers_take_over_hand_back_and_never_share_a_robot(tmp_path):
    """Two server processes for r1..r4: s1 serves r1, r3 and s2 r2, r4; a peer's liveliness tokens
    that name no robot or server of the fleet change nothing and are counted; s1 SIGKILLed: s2
    takes r1, r3; s1 restarted: it takes them back; s2 frozen (SIGSTOP: its links stay open,
    silent): s1 takes r2, r4 once s2's lease runs out, well before Zenoh's default lease. At no
    moment do two servers serve one robot."""
    endpoints = {s: f"tcp/127.0.0.1:{free_port()}" for s in SERVERS}
    timeline, procs = Timeline(tmp_path), {}
    fleet = "split_perception/_fleet"
    try:
        procs["s1"] = start_server(tmp_path, "s1", endpoints, "")
        procs["s2"] = start_server(tmp_path, "s2", endpoints, "")
        timeline.wait({"s1": {"r1", "r3"}, "s2": {"r2", "r4"}})
        procs["stranger"] = start_helper(tmp_path, "stranger", {
            "role": "zenoh", "connect": list(endpoints.values()), "seconds": 300,
            "tokens": [f"{fleet}/serving/r2/intruder", f"{fleet}/candidate/r9/s1", f"{fleet}/serving/r1",
                       f"{fleet}/junk/r1/s2", "split_perception/_fleet"]})
        time.sleep(5.0)
        assert timeline.serving("s1") == {"r1", "r3"} and timeline.serving("s2") == {"r2", "r4"}

        killed = time.time()
        os.killpg(procs["s1"].pid, signal.SIGKILL)
        timeline.ended["s1"] = killed
        timeline.wait({"s2": set(ROBOTS)})
        takeover = max(timeline.first_start("s2", r, killed) for r in ("r1", "r3")) - killed

        procs["s1_back"] = start_server(tmp_path, "s1", endpoints, "_back", seconds=15)
        timeline.wait({"s1_back": {"r1", "r3"}, "s2": {"r2", "r4"}})

        frozen = time.time()
        os.killpg(procs["s2"].pid, signal.SIGSTOP)
        timeline.ended["s2"] = frozen
        timeline.wait({"s1_back": set(ROBOTS)})
        frozen_takeover = max(timeline.first_start("s1_back", r, frozen) for r in ("r2", "r4")) - frozen
        assert procs["s1_back"].wait(timeout=120) == 0, (tmp_path / "s1_back.log").read_text()[-2000:]
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    assert timeline.overlaps() == [], timeline.intervals()
    assert takeover < ZENOH_DEFAULT_LEASE_S and frozen_takeover < ZENOH_DEFAULT_LEASE_S - 1, (takeover, frozen_takeover)
    back = json.loads((tmp_path / "s1_back_out.json").read_text())
    assert back["ignored"] >= 3, back  # the stranger's tokens, each counted with one line
    assert "ignored the liveliness token" in back["warnings"][0], back


def test_failover_short_run(tmp_path, tiny_data, tiny_model_path):
    """`bench failover` with 2 robots: r1 (s1's) moves to s2 when s1 is killed and back when it
    returns; r2 stays on s2 and loses nothing; no frame is decoded twice."""
    out = tmp_path / "out"
    main(["bench", "failover", "--robots", "2", "--seconds", "20", "--fps", "2", "--kill-at", "6",
          "--return-at", "12", "--model", str(tiny_model_path), "--data", str(tiny_data), "--out", str(out),
          "--domain-id", str(pick_domain())])
    res = json.loads((out / "failover.json").read_text())
    rows = {r["robot"]: r for r in res["rows"]}
    assert set(rows) == {"r1", "r2"} and rows["r1"]["moved"] and not rows["r2"]["moved"], res
    assert rows["r1"]["takeover_s"] is not None and rows["r1"]["recovery_s"] is not None, res  # served again
    assert all(r["decoded_twice"] == 0 and r["lost_outside_outage"] == 0 for r in rows.values()), res
    assert res["served_by_s1_after_return"] == ["r1"], res
    assert (out / "failover.csv").is_file() and (out / "table.md").is_file()


@pytest.mark.slow
def test_failover_default_run(tmp_path):
    """The documented run: 2 servers, 4 robots, the default model; s1 killed and back."""
    out = tmp_path / "out"
    code = main(["bench", "failover", "--out", str(out), "--domain-id", str(pick_domain())])
    res = json.loads((out / "failover.json").read_text())
    assert code == 0 and res["meets_target"], res
    assert sorted(r["robot"] for r in res["rows"] if r["moved"]) == ["r1", "r3"], res

"""`bench restart`: how soon decoding resumes after a node is killed and relaunched mid-stream.

Encoder + decoder + camera probe over real DDS, each in its own process; the victim is SIGKILLed
and relaunched (the fault tests' scenario, `harness/restarts.py`), `--runs` times per victim, on an
otherwise quiet machine and with `--cpu-load` busy processes beside it (a robot's or a server's
other work). Two figures per run: from the relaunched node's "ready" line to the first detection
(DDS discovery and the first decode) and from the relaunch itself (Python, the runtime, model load
too). The encoder runs on the runtime its node picks (ONNX Runtime when the model has an onboard
export); what each runtime costs to start outside ROS is `bench onboard`'s. Each condition runs with Fast DDS's default discovery and with `--dds-profile` (default:
config/fastdds_rediscovery.xml, participant announcements every 0.5 s instead of 3 s).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError
from ..evaluation.report import command_line, machine_info, markdown_table, write_results
from ..harness.domains import domain_from


@contextmanager
def cpu_hogs(n: int):
    """`n` processes that spin on a core each until the block ends."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def one_run(model: str, victim: str, runtime: str, load: int, profile: Path | None, domain: int, args) -> dict:
    """One kill-and-restart with the encoder on `runtime` (the one its node picks), `load` busy processes
    beside it, every process on the Fast DDS `profile` (None: Fast DDS defaults); its timings as a row."""
    from ..harness.restarts import kill_and_restart

    env = {"FASTDDS_DEFAULT_PROFILES_FILE": str(profile)} if profile else None
    with tempfile.TemporaryDirectory(prefix="sp_restart_") as tmp, cpu_hogs(load):
        r = kill_and_restart(Path(tmp), domain, model, victim, args.down_s, args.seconds, fps=args.fps,
                             threads=args.threads, env=env, encoder_runtime=runtime)
    resume = r.resume_s()
    row = {"victim": victim, "encoder_runtime": runtime, "cpu_load": load,
           "discovery": profile.name if profile else "Fast DDS default",
           "ready_after_launch_s": r.t_ready - r.t_launch,
           "resume_after_ready_s": resume,
           "resume_after_launch_s": None if resume is None else r.t_ready + resume - r.t_launch,
           "other_alive": r.other_alive}
    if victim == "decoder":  # what the encoder did while nobody decoded
        during = r.outage_features()
        row["outage_publish_fps"] = len(during) / max(r.t_ready - r.t_kill, 1e-9)
        row["outage_max_latency_ms"] = max((f["latency_ms"] for f in during), default=None)
    return row


def summarize(rows: list[dict], within_s: float) -> list[dict]:
    """Per (victim, CPU load, discovery): median and worst resume times, share of runs within `within_s`."""
    out = []
    key_of = lambda r: (r["victim"], r["cpu_load"], r["discovery"])  # noqa: E731
    for key in dict.fromkeys(map(key_of, rows)):
        group = [r for r in rows if key_of(r) == key]
        resumed = [r["resume_after_ready_s"] for r in group if r["resume_after_ready_s"] is not None]
        launch = [r["resume_after_launch_s"] for r in group if r["resume_after_launch_s"] is not None]
        pub = [r["outage_publish_fps"] for r in group if r.get("outage_publish_fps") is not None]
        lat = [r["outage_max_latency_ms"] for r in group if r.get("outage_max_latency_ms") is not None]
        out.append({
            "victim": key[0], "encoder_runtime": group[0]["encoder_runtime"], "cpu_load": key[1],
            "discovery": key[2], "runs": len(group),
            "resumed": len(resumed),
            "ready_median_s": statistics.median(r["ready_after_launch_s"] for r in group),
            "resume_median_s": statistics.median(resumed) if resumed else None,
            "resume_max_s": max(resumed) if resumed else None,
            "within": f"{sum(v < within_s for v in resumed)}/{len(group)}",
            "launch_median_s": statistics.median(launch) if launch else None,
            "outage_publish_fps": min(pub) if pub else None,
            "outage_max_latency_ms": max(lat) if lat else None,
            "other_alive": all(r["other_alive"] for r in group)})
    return out


COLUMNS = [("victim", "killed", ""), ("encoder_runtime", "encoder runtime", ""),
           ("cpu_load", "busy processes beside", "d"), ("discovery", "DDS discovery", ""),
           ("runs", "runs", "d"),
           ("resumed", "resumed", "d"), ("ready_median_s", "relaunch -> ready s (median)", ".1f"),
           ("resume_median_s", "ready -> first detection s (median)", ".2f"), ("resume_max_s", "max", ".2f"),
           ("within", "within 1 s", ""), ("launch_median_s", "relaunch -> first detection s (median)", ".1f"),
           ("outage_publish_fps", "encoder fps while decoder down (min)", ".1f"),
           ("outage_max_latency_ms", "max feature latency then ms", ".0f"), ("other_alive", "other node alive", "")]


def _progress(row: dict, i: int, runs: int) -> None:
    resume = row["resume_after_ready_s"]
    print(f"{row['victim']} killed (encoder on {row['encoder_runtime']}), {row['cpu_load']} busy processes, "
          f"{row['discovery']}, run {i + 1}/{runs}: ready {row['ready_after_launch_s']:.1f} s after relaunch, "
          f"first detection {'never' if resume is None else f'{resume:.2f} s'} after ready", flush=True)


def _ints(text: str, what: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 0:
        raise ConfigError(f"{what} must list integers >= 0, got {text!r}")
    return vals


def run(args) -> int:
    from ..harness.processes import CONFIG
    from ..harness.restarts import KILL_AT_S
    from ..model_files import model_file
    from ..onboard.export_files import find_export

    victims = [v for v in args.victims.split(",") if v]
    if not victims or set(victims) - {"encoder", "decoder"}:
        raise ConfigError(f"--victims must list encoder and/or decoder, got {args.victims!r}")
    loads = _ints(args.cpu_load, "--cpu-load")
    model = str(model_file(args.model))
    runtime = "onnx" if find_export(model) else "torch"  # what the encoder node's `runtime: auto` picks
    if args.runs < 1 or args.fps <= 0 or args.seconds < KILL_AT_S + args.down_s + 8.0:
        raise ConfigError(f"--runs must be >= 1, --fps > 0 and --seconds >= {KILL_AT_S + 8:g} + --down-s "
                          f"({KILL_AT_S:g} s before the kill, 8 s to relaunch and resume)")
    profiles: list[Path | None] = [None]
    if args.dds_profile != "":
        profile = Path(args.dds_profile).resolve() if args.dds_profile else CONFIG / "fastdds_rediscovery.xml"
        if not profile.is_file():
            raise ConfigError(f"--dds-profile {profile}: no such file")
        profiles.append(profile)
    domain = domain_from(args)
    rows = []
    for victim in victims:
        for load in loads:
            for i in range(args.runs):
                for profile in profiles:  # alternated, so both see the same machine
                    rows.append(row := one_run(model, victim, runtime, load, profile, domain, args))
                    _progress(row, i, args.runs)
    summary = summarize(rows, 1.0)
    table = markdown_table(summary, COLUMNS)
    print(table)
    payload = {"command": command_line(args), "machine": machine_info(args.threads), "summary": summary}
    write_results(args.out, "restart", payload, rows)
    note = (f"Camera at {args.fps:g} fps; the victim is SIGKILLed {KILL_AT_S:g} s into the stream and "
            f"relaunched {args.down_s:g} s later; the encoder runs on {runtime}. "
            f"'ready' is the node's own log line (model loaded, topics "
            f"created). DDS discovery: Fast DDS defaults (participant announcements every 3 s) or the "
            f"XML profile named (config/fastdds_rediscovery.xml: every 0.5 s).")
    (Path(args.out) / "table.md").write_text(f"{table}\n\n{note}\n")
    print(f"wrote {args.out}/restart.json, .csv, table.md")
    return 0 if all(r["resumed"] == r["runs"] and r["other_alive"] for r in summary) else 1

"""`bench link`: the same frames through a real rate-limited link whose rate changes by phase.

Onboard namespace: the camera (probe) and, for our modes, the encoder (+ link monitor when
adaptive); offboard namespace: the decoder and a receiving probe. The link is a veth pair with
`tbf` on the onboard side (harness/netns.py). Modes compared side by side, each on a fresh link with
the same schedule and frames: raw `Image`, JPEG `CompressedImage` at quality 95 and 75 (what
compressed_image_transport sends), our features at each fixed width, and the adaptive loop.

`--transport zenoh` carries the same modes across the link over Zenoh instead of DDS: each side
runs its nodes in a DDS domain of its own, discovery limited to its own host, and a `zenoh_bridge`
on each side forwards what must cross (the images, or the features out and `link_status` and
`detections` back), the robot's bridge connecting to the server's over TCP.

Accuracy is measured on the frames each mode delivered: from the decoder's detections for our
modes (score threshold lowered to the COCO evaluation's), and for raw/JPEG from the teacher run on
exactly the bytes that crossed the link (computed after the run; the images are deterministic).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..evaluation.report import command_line, machine_info, markdown_table, write_results
from ..harness.domains import domain_from
from .common import dataset

DISCOVERY_S = 3.0  # the receiver starts this long before the camera
WARMUP_S = 3.0  # the camera runs this long at the first rate before the first phase is counted


def parse_schedule(text: str, phase_s: float) -> list[tuple[float, float]]:
    """"20,2,0.5,5" (Mbit/s) -> [(bps, seconds), ...]."""
    try:
        rates = [float(x) * 1e6 for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--schedule must be comma-separated Mbit/s values, got {text!r}") from None
    if not rates or any(r <= 0 for r in rates) or phase_s <= 0:
        raise ConfigError(f"--schedule needs positive rates and --phase-seconds > 0, got {text!r}, {phase_s}")
    return [(r, phase_s) for r in rates]


def parse_mode(mode: str, widths: list[float]) -> tuple[str, float | None]:
    """"raw" | "jpeg<q>" | "width<w>" | "adaptive" -> (kind, value)."""
    if mode in ("raw", "adaptive"):
        return mode, None
    try:
        if mode.startswith("jpeg") and 1 <= int(mode[4:]) <= 100:
            return "jpeg", int(mode[4:])
        if mode.startswith("width") and float(mode[5:]) in widths:
            return "width", float(mode[5:])
    except ValueError:
        pass
    raise ConfigError(f"unknown mode {mode!r}: use raw, jpeg<quality>, width<one of {widths}> or adaptive")


TRANSPORTS = ("dds", "zenoh")
ZENOH_PORT = 7447


def crossing_topics(kind: str) -> tuple[list[str], list[str]]:
    """What must cross the link per mode: (robot -> server, server -> robot)."""
    if kind == "raw":
        return ["image"], []
    if kind == "jpeg":
        return ["image/compressed"], []
    return ["features"], ["link_status", "detections"]


def start_bridges(kind: str, link, domains: tuple[int, int], work: Path) -> list:
    """A zenoh_bridge on each side: the server's listens on its link address (plain TCP: `insecure`, the
    link is between two namespaces of this machine), the robot's connects.
    (The caller waits for them and stops them.)"""
    from ..harness.processes import ROS_LOCALHOST, start_node

    up, down = crossing_topics(kind)
    endpoint = f"tcp/{link.offboard_ip}:{ZENOH_PORT}"

    def topics(out: list[str], into: list[str]) -> dict:
        return {**({"to_zenoh": out} if out else {}), **({"from_zenoh": into} if into else {})}

    server = {"listen": [endpoint], "insecure": True, **topics(down, up)}
    procs = [start_node("zenoh_bridge", domains[1], params=server,
                        log_path=work / "bridge_server.log", prefix=link.prefix("offboard"), env=ROS_LOCALHOST),
             start_node("zenoh_bridge", domains[0], params={"connect": [endpoint], **topics(up, down)},
                        log_path=work / "bridge_robot.log", prefix=link.prefix("onboard"), env=ROS_LOCALHOST)]
    return procs


def run_mode(mode: str, widths: list[float], schedule, images: list[str], args, work: Path,
             transport: str = "dds") -> dict:
    """One mode on a fresh link: start the nodes, play the camera, step the rate; raw records."""
    from ..harness.domains import pick_domain
    from ..harness.netns import NetnsLink
    from ..harness.processes import (
        ROS_LOCALHOST,
        finish_probe,
        start_node,
        start_probe,
        stop,
        wait_for_log,
    )

    kind, value = parse_mode(mode, widths)
    work.mkdir(parents=True, exist_ok=True)
    domain = domain_from(args)
    # over Zenoh each side is a DDS domain of its own, limited to its host: only the bridges cross
    off_domain = pick_domain("run") if transport == "zenoh" else domain
    total = sum(s for _, s in schedule)
    model = {"model_path": args.model or "", "threads": args.threads}
    with NetnsLink(rate_bps=schedule[0][0]) as link:
        env = ROS_LOCALHOST if transport == "zenoh" else link.ros_env()
        on, off = link.prefix("onboard"), link.prefix("offboard")
        procs = []  # nodes and probes: all stopped on the way out, whatever happens
        try:
            if transport == "zenoh":
                procs += start_bridges(kind, link, (domain, off_domain), work)
                for name in ("bridge_server", "bridge_robot"):
                    wait_for_log(work / f"{name}.log", "zenoh_bridge ready", 120)
            if kind in ("width", "adaptive"):
                start_w = value if kind == "width" else widths[-1]
                procs.append(start_node("encoder", domain, params={**model, "width": start_w},
                                        log_path=work / "encoder.log", prefix=on, env=env))
                procs.append(start_node("decoder", off_domain, params={**model, "score_thresh": 0.01,
                                                                   "publish_mask": False},
                                        log_path=work / "decoder.log", prefix=off, env=env))
                if kind == "adaptive":
                    procs.append(start_node("link_monitor", domain, params={
                        "model_path": args.model or "", "target_fps": float(args.fps)},
                        log_path=work / "link_monitor.log", prefix=on, env=env))
                wait_for_log(work / "encoder.log", "encoder ready", 120)
                wait_for_log(work / "decoder.log", "decoder ready", 120)
            rx_cfg = {"seconds": total + WARMUP_S + DISCOVERY_S + 2, "publish": "none", "record_boxes": True,
                      "features_topic": "",
                      "listen_images": kind == "raw", "listen_compressed": kind == "jpeg"}
            rx = start_probe(rx_cfg, work, off_domain, prefix=off, env=env, name="receiver")
            procs.append(rx)
            time.sleep(DISCOVERY_S)
            tx_cfg = {"seconds": total + WARMUP_S, "fps": args.fps, "images": images,
                      "publish": "jpeg" if kind == "jpeg" else "raw", "jpeg_quality": value or 95}
            tx = start_probe(tx_cfg, work, domain, prefix=on, env=env, name="sender")
            procs.append(tx)
            time.sleep(WARMUP_S)  # discovery between the camera and the nodes
            phases = []
            t_start = time.time_ns()
            for bps, seconds in schedule:
                link.set_rate(bps)
                b0, t0 = link.sent_bytes(), time.time_ns()
                time.sleep(seconds)
                phases.append({"bps": bps, "t0_ns": t0, "t1_ns": time.time_ns(), "wire_bytes": link.sent_bytes() - b0})
            sender = finish_probe(tx, tx_cfg, work, "sender")
            receiver = finish_probe(rx, rx_cfg, work, "receiver")
        finally:
            stop(procs)
    return {"mode": mode, "transport": transport, "kind": kind, "value": value, "t_start_ns": t_start, "phases": phases,
            "sender": sender, "receiver": receiver}


def policy_trace(run: dict, window_s: float = 2.0) -> dict:
    """What the link monitor saw in one run, as replayable observations (test/data/link_traces).

    Times are seconds since the first phase began, on the sender's clock (its wall-clock offset is
    estimated from the stamps of the features it recorded onboard, where arrival ~ sending).
    """
    s = run["sender"]
    if not s["features"]:
        return {"mode": run["mode"], "phases": [], "observations": []}
    offset = float(np.median([f["stamp"] / 1e9 - f["t"] for f in s["features"]]))
    t0 = run["phases"][0]["t0_ns"] / 1e9 - offset
    sent = np.array([f["t"] for f in s["features"]])
    obs = [{"t": round(st["t"] - t0, 3), "loss_rate": st["loss"], "latency_ms": st.get("latency_ms"),
            "delivered_fps": st["fps"], "throughput_bps": st.get("throughput_bps"), "width": st["width"],
            "sent_fps": float(((sent > st["t"] - window_s) & (sent <= st["t"])).sum() / window_s)}
           for st in s["link_status"]]
    phases = [{"bps": p["bps"], "start": round(p["t0_ns"] / 1e9 - offset - t0, 3),
               "end": round(p["t1_ns"] / 1e9 - offset - t0, 3)} for p in run["phases"]]
    return {"mode": run["mode"], "phases": phases, "observations": obs}


def teacher_results(model_path, images: list[str], ids: list[int], cat_ids: list[int],
                    quality: int | None) -> dict[int, list[dict]]:
    """COCO results of the teacher on each frame as it arrives offboard (raw, or JPEG at `quality`)."""
    import cv2

    from ..data.image_codecs import decode_image, encode_image
    from ..evaluation.evaluate import EVAL_SCORE_THRESH
    from ..evaluation.metrics import coco_results
    from ..offboard.decoder import OffboardDecoder

    dec = OffboardDecoder(model_path, score_thresh=EVAL_SCORE_THRESH)
    out = {}
    for path, image_id in zip(images, ids):
        rgb = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        if quality is not None:
            rgb = decode_image(encode_image(rgb, "jpeg", quality))
        dets, _ = dec.teacher(rgb)
        out[image_id] = coco_results(image_id, dets, cat_ids)
    return out


def summarize(run: dict, coco, ids: list[int], offline: dict[int, list[dict]] | None, target_fps: float) -> list[dict]:
    """Per phase: offered and delivered fps, latency p50/p95, wire bytes/s, mAP on delivered frames."""
    cat_ids = sorted(coco.getCatIds())
    from ..evaluation.metrics import coco_map

    sent = {s["stamp"]: s["frame"] for s in run["sender"]["sent"]}
    arrivals = run["receiver"]["images"] if run["kind"] in ("raw", "jpeg") else run["receiver"]["detections"]
    widths = sorted((f["stamp"], f["width"]) for f in run["sender"]["features"])
    rows = []
    for k, ph in enumerate(run["phases"]):
        span = (ph["t1_ns"] - ph["t0_ns"]) / 1e9
        inside = lambda ns: ph["t0_ns"] <= ns < ph["t1_ns"]  # noqa: E731 - by the frame's send time
        got = [a for a in arrivals if inside(a["stamp"]) and a["stamp"] in sent]
        lat = [a["latency_ms"] for a in got]
        seen, res = set(), []
        for a in got:
            image_id = ids[sent[a["stamp"]]]
            if image_id in seen:
                continue
            seen.add(image_id)
            if offline is not None:
                res += offline[image_id]
            else:
                res += [{"image_id": image_id, "category_id": cat_ids[int(c) - 1], "score": float(s),
                         "bbox": [x, y, w, h]}
                        for c, s, x, y, w, h in a["boxes"]]
        acc = coco_map(coco, res, sorted(seen)) if seen else {"map": None, "map50": None}
        ws = [w for ns, w in widths if inside(ns)]
        rows.append({"transport": run["transport"], "mode": run["mode"], "phase": k, "link_mbps": ph["bps"] / 1e6,
                     "offered_fps": sum(1 for ns in sent if inside(ns)) / span, "delivered_fps": len(got) / span,
                     "delivered_ratio": len(got) / max(1, sum(1 for ns in sent if inside(ns))),
                     "latency_p50_ms": float(np.percentile(lat, 50)) if lat else None,
                     "latency_p95_ms": float(np.percentile(lat, 95)) if lat else None,
                     "wire_kbps": 8 * ph["wire_bytes"] / span / 1000, "mean_width": float(np.mean(ws)) if ws else None,
                     "map": acc["map"], "map50": acc["map50"], "meets_90pct": len(got) / span >= 0.9 * target_fps})
    return rows


def plot(runs: list[dict], rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    phases = runs[0]["phases"]
    edges = np.cumsum([0] + [(p["t1_ns"] - p["t0_ns"]) / 1e9 for p in phases])
    ax[0].step(edges, [p["bps"] / 1e6 for p in phases] + [phases[-1]["bps"] / 1e6], where="post", color="k")
    ax[0].set_yscale("log")
    ax[0].set_ylabel("link Mbit/s")
    for run in runs:
        t0 = run["phases"][0]["t0_ns"]
        f = run["sender"]["features"]
        if run["kind"] == "adaptive" and f:
            ax[1].step([(x["stamp"] - t0) / 1e9 for x in f], [x["width"] for x in f], where="post")
    ax[1].set_ylabel("adaptive width")
    for key in dict.fromkeys((r["transport"], r["mode"]) for r in rows):
        rs = [r for r in rows if (r["transport"], r["mode"]) == key]
        label = key[1] if key[0] == "dds" else " ".join(key)
        ax[2].step(edges, [r["delivered_fps"] for r in rs] + [rs[-1]["delivered_fps"]], where="post", label=label)
    ax[2].set_ylabel("delivered fps")
    ax[2].set_xlabel("seconds")
    ax[2].legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


COLUMNS = [("transport", "transport", ""), ("mode", "mode", ""), ("link_mbps", "link Mbit/s", ".1f"), ("offered_fps", "offered fps", ".1f"),
           ("delivered_fps", "delivered fps", ".1f"), ("latency_p50_ms", "latency p50 ms", ".0f"),
           ("latency_p95_ms", "p95", ".0f"), ("wire_kbps", "wire kbit/s", ".0f"), ("mean_width", "width", ".2f"),
           ("map", "mAP (delivered)", ".3f"), ("map50", "mAP@.5", ".3f")]


def run(args) -> int:
    from ..data.coco import load_coco
    from ..harness.netns import available
    from ..models.checkpoint import read_checkpoint

    ok, why = available()
    if not ok:
        raise ConfigError(f"bench link needs network namespaces: {why}")
    schedule = parse_schedule(args.schedule, args.phase_seconds)
    widths = [float(w) for w in read_checkpoint(args.model)["model_config"].widths]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        parse_mode(m, widths)
    transports = [t.strip() for t in args.transport.split(",") if t.strip()]
    if not transports or set(transports) - set(TRANSPORTS):
        raise ConfigError(f"--transport: comma-separated {' and/or '.join(TRANSPORTS)}, got {args.transport!r}")
    root = dataset(args.data).resolve()  # the probes run in their own folder
    coco = load_coco(root / "annotations.json")
    ids = sorted(coco.getImgIds())[: args.frames]
    images = [str(root / "images" / coco.imgs[i]["file_name"]) for i in ids]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"link bench: {len(modes)} modes over {', '.join(transports)} x {len(schedule)} phases of {args.phase_seconds:g} s "
          f"({', '.join(f'{b / 1e6:g}' for b, _ in schedule)} Mbit/s), {len(images)} frames at {args.fps:g} fps",
          flush=True)
    runs, rows = [], []
    plan = [(t, m) for t in transports for m in modes]
    with tempfile.TemporaryDirectory(prefix="sp_link_") as tmp:
        for i, (transport, mode) in enumerate(plan):
            print(f"[{i + 1}/{len(plan)}] {mode} over {transport} ...", flush=True)
            name = mode if transport == "dds" else f"{transport}_{mode}"
            r = run_mode(mode, widths, schedule, images, args, Path(tmp) / name, transport)
            offline = (teacher_results(args.model, images, ids, sorted(coco.getCatIds()), r["value"])
                       if r["kind"] in ("raw", "jpeg") else None)
            mode_rows = summarize(r, coco, ids, offline, args.fps)
            print(markdown_table(mode_rows, COLUMNS[2:]), flush=True)
            runs.append(r)
            rows += mode_rows
            (out / "traces").mkdir(exist_ok=True)
            (out / "traces" / f"{name}.json").write_text(json.dumps(policy_trace(r)))
    table = markdown_table(rows, COLUMNS)
    print(table)
    payload = {"command": command_line(args), "machine": machine_info(args.threads),
               "schedule_mbps": [b / 1e6 for b, _ in schedule], "phase_seconds": args.phase_seconds,
               "fps": args.fps, "frames": len(images), "data": str(root)}
    write_results(out, "link", payload, rows)
    (out / "table.md").write_text(table + "\n")
    plot(runs, rows, out / "link.png")
    print(f"wrote {out}/link.json, .csv, .png, table.md")
    return 0

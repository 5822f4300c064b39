"""`split-perception bench switch`: what a width change costs, against loading a fresh model.

In process, per target width:
- switch: `set_width(w)` on a warm encoder that was running at another width, then its first
  encode: time from the change to the first packet at w;
- steady: an encode at w on an encoder already at w (what any frame costs);
- control: the switch's exact sequence with a set_width that changes nothing; the switch's
  overhead is the difference of the two medians (same position in the sequence, same frames);
- reload: the alternative without slimmable weights, one model per size: construct a new
  OnboardEncoder from the checkpoint (read, verify, build, load) + set_width(w) + its first encode;
- encoder-only reload: a lower bound of the same, only the encoder and one entropy model built from
  memory-mapped weights, no verification (what a per-size onboard file would need at least).

Through ROS (unless --no-ros): an encoder node in its own process over real DDS, fed camera
frames at --fps by the probe process, which calls /encoder/set_parameters several times; the
figure is the time from the call to the first EncodedFeatures at the new width, next to the
frame period (a switch can only show on the next frame to arrive).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..config import find_width
from ..errors import ConfigError
from ..evaluation.report import command_line, machine_info, markdown_table, write_results
from ..harness.domains import domain_from, pick_domain
from ..model_files import model_file

SWITCHES_PER_RELOAD = 5  # switches are cheap: more samples of them per (slow) reload


def _frames(cfg, n: int = 4) -> list[np.ndarray]:
    from ..data.synthetic import render_scene

    rng = np.random.default_rng(0)
    return [render_scene(rng, tuple(cfg.input_size))[0] for _ in range(n)]  # shapes: any model encodes them


def measure_in_process(model_path, repeats: int, progress: bool = True) -> dict:
    """Switch, control, steady and reload ms per target width: best and median of `repeats` reloads
    and SWITCHES_PER_RELOAD x `repeats` switches (each followed by a steady encode and a control)."""
    from tqdm import tqdm

    from ..onboard.encoder import OnboardEncoder

    enc = OnboardEncoder(model_path, runtime="torch")
    widths = list(enc.widths)
    frames = _frames(enc.cfg)
    for w in widths:  # warm every width once, as a running encoder would be
        enc.set_width(w)
        enc.encode(frames[0])
    switch: dict[float, list[float]] = {w: [] for w in widths}
    steady: dict[float, list[float]] = {w: [] for w in widths}
    reload: dict[float, list[float]] = {w: [] for w in widths}
    sources: dict[float, set[float]] = {w: set() for w in widths}
    checked: dict[float, set[float]] = {w: set() for w in widths}
    minimal: dict[float, list[float]] = {w: [] for w in widths}
    noop: dict[float, list[float]] = {w: [] for w in widths}
    same: dict[float, bool] = {}
    bar = tqdm(total=repeats * len(widths), desc="switch/reload", unit="width", disable=not progress,
               file=sys.stderr)
    for r in range(repeats):
        for j, w in enumerate(widths):  # interleaved, so background load hits all three alike
            for k in range(SWITCHES_PER_RELOAD):
                frame = frames[(r + j + k) % len(frames)]
                src = widths[(j + 1 + (r + k) % (len(widths) - 1)) % len(widths)] if len(widths) > 1 else w
                enc.set_width(src)
                enc.encode(frame)  # the encoder runs at another width ...
                t0 = time.perf_counter()
                enc.set_width(w)  # ... the change ...
                packet = enc.encode(frame)  # ... and the first packet at the new width
                switch[w].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                enc.encode(frame)  # already at w, same frame: the steady per-frame cost
                steady[w].append(time.perf_counter() - t0)
                enc.set_width(w)  # control: the same sequence with a set_width that changes nothing
                enc.encode(frame)
                t0 = time.perf_counter()
                enc.set_width(w)
                enc.encode(frame)
                noop[w].append(time.perf_counter() - t0)
                sources[w].add(src)
                checked[w].add(_packet_width(packet))
            frame = frames[(r + j) % len(frames)]
            t0 = time.perf_counter()
            fresh = OnboardEncoder(model_path, runtime="torch")
            fresh.set_width(w)
            fresh.encode(frame)
            reload[w].append(time.perf_counter() - t0)
            del fresh
            t0 = time.perf_counter()
            payload = minimal_reload_payload(model_path, w, frame)
            minimal[w].append(time.perf_counter() - t0)
            if r == 0:  # the lower bound does the same work: same bytes as the running encoder
                enc.set_width(w)
                same[w] = payload == enc.model.compress(enc.preprocess(frame))["strings"][0][0]
            bar.update()
    bar.close()
    rows = []
    for w in widths:
        row = {"width": w, "new_width_in_packet": sorted(checked[w])[0] if len(checked[w]) == 1 else None,
               "minimal_same_bytes": same[w], "from_widths": sorted(sources[w]), "switches": len(switch[w]),
               "reloads": len(reload[w])}
        # primary: best of the samples (least disturbed by other processes); medians next to them
        for suffix, stat in (("", min), ("_median", statistics.median)):
            sw, st, rl, mn, no = (1000.0 * stat(v[w]) for v in (switch, steady, reload, minimal, noop))
            row.update({f"switch_ms{suffix}": sw, f"noop_switch_ms{suffix}": no, f"steady_ms{suffix}": st,
                        f"switch_overhead_ms{suffix}": sw - no, f"reload_ms{suffix}": rl,
                        f"reload_over_switch{suffix}": rl / sw, f"minimal_reload_ms{suffix}": mn,
                        f"minimal_over_switch{suffix}": mn / sw})
        rows.append(row)
    return {"widths": widths, "rows": rows, "fingerprint": enc.fingerprint}


def minimal_reload_payload(model_path, width: float, frame: np.ndarray) -> bytes:
    """Lower bound of a reload: only the encoder and one width's context tables and medians (what a
    per-size onboard file would hold), weights memory-mapped, no fingerprint check; returns
    the entropy-coded payload of `frame` (bit-identical to the full encoder's)."""
    from ..codec.context import ContextCoder, ContextTables
    from ..codec.symbols import to_symbols
    from ..config import model_config_from_dict
    from ..models.encoder import FrontProjectionEncoder, SlimmableEncoder
    from ..models.onnx_teacher import onnx_front_only
    from ..models.slimmable import WidthState
    from ..models.split_model import current_keys
    from ..models.teacher import front_only
    from ..onboard.preprocess import model_input_tensor

    ckpt = torch.load(model_file(model_path), map_location="cpu", weights_only=True, mmap=True)
    cfg = model_config_from_dict(ckpt["model_config"])
    i = find_width(cfg.widths, width)
    stored = current_keys(ckpt["state_dict"])

    def part(prefix: str) -> dict:
        return {k[len(prefix):]: v.float() if v.is_floating_point() else v
                for k, v in stored.items() if k.startswith(prefix)}

    if cfg.encoder == "front":
        encoder = FrontProjectionEncoder(cfg, WidthState(i), *(onnx_front_only(cfg) if cfg.teacher else front_only(cfg)))
    else:
        encoder = SlimmableEncoder(cfg, WidthState(i))
    encoder.load_state_dict(part("encoder."))
    encoder.eval()
    codec = part(f"latent_codecs.{i}.")  # the width's context tables and its bottleneck's medians
    tables = ContextTables(*(codec[name].numpy() for name in ("_quantized_cdf", "_cdf_length", "_offset")))
    medians = codec["entropy_bottleneck.quantiles"][:, 0, 1].numpy()
    x = model_input_tensor(frame, cfg)
    with torch.no_grad():
        y = encoder(x).numpy()
    return ContextCoder(tables).encode(to_symbols(y, medians)[0])


def _packet_width(packet: bytes) -> float:
    from ..codec.packet import parse

    return float(round(parse(packet).width, 3))


# ---- through ROS --------------------------------------------------------------------------
def switch_schedule(widths: list[float], start: float, n: int, warmup: int, every: int) -> list[dict]:
    """`n` set_width calls for the probe: after `warmup` features, then every `every` features,
    cycling through the widths from `start` on, so each call changes the width."""
    calls, i = [], widths.index(start)
    for k in range(n):
        i = (i + 1) % len(widths)
        calls.append({"at": 0.0, "after_features": warmup + k * every, "width": float(widths[i])})
    return calls


def switch_delays(rec: dict) -> list[dict]:
    """Per successful set_width call, from the probe's record (probe clock, seconds):
    - first_packet_ms: call -> arrival of the first packet at the new width (None if none came);
    - wait_frame_ms: call -> capture stamp of that packet's image (waiting for the next frame;
      negative if a frame captured before the call was still encoded at the new width);
    - first_latency_ms: that packet's capture -> arrival (compare with the steady frame latency);
    - old_width_after_call: packets at another width whose image was captured after the call
      (frames the switch missed; 0 when it applies to the next frame)."""
    feats = rec["features"]
    out = []
    for s in sorted(rec["set_results"], key=lambda s: s["t_call"]):
        if not s["ok"]:
            continue
        new = lambda f: find_width([s["width"]], f["width"]) is not None  # noqa: E731
        first = next((f for f in feats if f["t"] >= s["t_call"] and new(f)), None)
        d = {"width": s["width"], "t_call": s["t_call"], "reply_ms": 1000.0 * (s["t"] - s["t_call"]),
             "first_packet_ms": None, "wait_frame_ms": None, "first_latency_ms": None,
             "first_frame_id": None, "first_encode_ms": None, "old_width_after_call": None}
        if first is not None:
            d.update(first_packet_ms=1000.0 * (first["t"] - s["t_call"]), first_frame_id=first["frame_id"],
                     first_encode_ms=first["encode_ms"])
            if "latency_ms" in first:
                captured = first["t"] - first["latency_ms"] / 1000.0  # wall-clock age -> probe clock
                d.update(wait_frame_ms=1000.0 * (captured - s["t_call"]), first_latency_ms=first["latency_ms"],
                         old_width_after_call=sum(
                             1 for f in feats if s["t_call"] <= f["t"] < first["t"] and not new(f)
                             and f["t"] - f["latency_ms"] / 1000.0 > s["t_call"]))
        out.append(d)
    return out


def measure_ros(model_path, threads: int, fps: float, switches: int, seconds: float, domain_id: int,
                widths: list[float], input_size) -> dict:
    """Encoder node + probe over DDS; the delays from set_parameters to the first packet at the new width."""
    from ..harness.processes import install_space, run_probe, start_node, stop

    install_space()  # ConfigError if not built
    warmup, every = int(round(fps)), max(4, int(round(fps * 0.7)))
    calls = switch_schedule(widths, widths[-1], switches, warmup, every)
    params = {"threads": threads}
    if model_path:
        params["model_path"] = str(model_file(model_path).resolve())  # a bundled name as its checkpoint
    with tempfile.TemporaryDirectory(prefix="bench_switch_") as tmp:
        tmp = Path(tmp)
        node = start_node("encoder", domain_id, params=params, log_path=tmp / "encoder.log")
        try:
            rec = run_probe({"seconds": seconds, "fps": fps, "size": list(input_size), "set_width": calls},
                            tmp, domain_id)
        finally:
            stop([node])
        log = (tmp / "encoder.log").read_text()[-3000:]
    delays = switch_delays(rec)
    got = [d["first_packet_ms"] for d in delays if d["first_packet_ms"] is not None]
    steady = [f["latency_ms"] for f in rec["features"]]
    encode = [f["encode_ms"] for f in rec["features"]]
    first_lat = [d["first_latency_ms"] for d in delays if d["first_latency_ms"] is not None]
    return {"fps": fps, "frame_period_ms": 1000.0 / fps, "seconds": seconds, "domain_id": domain_id,
            "calls": calls, "set_results": rec["set_results"], "switches": delays,
            "features_received": len(rec["features"]), "images_sent": len(rec["sent"]),
            "first_packet_ms_median": statistics.median(got) if got else None,
            "first_packet_ms_max": max(got) if got else None,
            "reply_ms_median": statistics.median([d["reply_ms"] for d in delays]) if delays else None,
            "frame_latency_ms_median": statistics.median(steady) if steady else None,
            "first_latency_ms_median": statistics.median(first_lat) if first_lat else None,
            "encode_ms_median": statistics.median(encode) if encode else None,
            "foreign_packets": len(rec["features"]) - len({f["frame_id"] for f in rec["features"]}),
            "node_returncode": node.returncode, "node_log_tail": log if not got else None}


def _ros_text(ros: dict) -> str:
    if "skipped" in ros:
        return f"ROS part: {ros['skipped']}"
    period = ros["frame_period_ms"]
    lines = [f"Through ROS (encoder node + probe over DDS, camera at {ros['fps']:g} fps, frame period {period:.1f} ms; "
             f"{ros['features_received']} packets for {ros['images_sent']} frames):", ""]
    rows = [{**d, "over_period": None if d["first_packet_ms"] is None else d["first_packet_ms"] / period}
            for d in ros["switches"]]
    lines.append(markdown_table(rows, [("width", "new width", "g"), ("reply_ms", "set_parameters reply ms", ".1f"),
                                       ("first_packet_ms", "call -> first packet at new width ms", ".1f"),
                                       ("over_period", "x frame period", ".2f"),
                                       ("wait_frame_ms", "of it waiting for the next frame ms", ".1f"),
                                       ("first_latency_ms", "of it that frame's capture -> packet ms", ".1f"),
                                       ("first_encode_ms", "its encode ms", ".1f"),
                                       ("old_width_after_call", "frames missed", "d")]))
    if ros.get("foreign_packets"):
        lines += ["", f"WARNING: {ros['foreign_packets']} packets with repeated frame ids: another session shared "
                  f"ROS_DOMAIN_ID {ros['domain_id']}; these figures may be mixed"]
    if ros["first_packet_ms_median"] is not None:
        med = ros["first_packet_ms_median"]
        lines += ["", f"median call -> first packet at the new width {med:.1f} ms = {med / period:.2f} x the frame "
                  f"period {period:.1f} ms; capture -> packet of that first frame "
                  f"{ros['first_latency_ms_median']:.1f} ms vs {ros['frame_latency_ms_median']:.1f} ms for all "
                  "packets (medians). The probe calls right after a packet arrives, just after a frame was encoded, "
                  "so the wait for the next frame is close to a whole period here: the worst phase."]
    else:
        lines += ["", "no packet at a new width arrived (see node_log_tail in switch.json)"]
    return "\n".join(lines)


def plot(path: Path, rows: list[dict], ros: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    x = np.arange(len(rows))
    names = [f"w={r['width']:g}" for r in rows]
    bars = [("steady_ms", "steady encode"), ("switch_ms", "switch + first encode"),
            ("minimal_reload_ms", "encoder-only reload + first encode"),
            ("reload_ms", "fresh OnboardEncoder + first encode")]
    for k, (key, label) in enumerate(bars):
        ax.bar(x + (k - 1.5) * 0.2, [r[key] for r in rows], 0.2, label=label)
    if ros.get("first_packet_ms_median") is not None:
        ax.axhline(ros["first_packet_ms_median"], color="k", linestyle="--", linewidth=1,
                   label=f"ROS set_parameters -> first packet (median, {ros['fps']:g} fps)")
        ax.axhline(ros["frame_period_ms"], color="grey", linestyle=":", linewidth=1, label="frame period")
    ax.set_xticks(x, names)
    ax.set_yscale("log")
    ax.set_ylabel("ms")
    ax.set_title("time to the first packet at a new width")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args) -> int:
    torch.set_num_threads(args.threads)
    t0, load0 = time.monotonic(), os.getloadavg()
    res = measure_in_process(args.model, args.repeats)
    rows = res["rows"]
    if args.no_ros:
        ros = {"skipped": "skipped (--no-ros)"}
    else:
        from ..models.checkpoint import read_checkpoint

        cfg = read_checkpoint(args.model)["model_config"]
        domain = domain_from(args)  # and on another one if that carries someone else's packets
        ros = {}
        for attempt in range(3):
            print(f"ROS: encoder node on ROS_DOMAIN_ID {domain}, {args.switches} width changes at {args.fps:g} fps ...",
                  flush=True)
            try:
                ros = measure_ros(args.model, args.threads, args.fps, args.switches, args.ros_seconds, domain,
                                  res["widths"], cfg.input_size)
            except ConfigError as exc:
                ros = {"skipped": f"NOT MEASURED: {exc}"}
                print(f"ROS part not measured: {exc}", file=sys.stderr)
                break
            if not ros["foreign_packets"]:
                break
            print(f"ROS_DOMAIN_ID {domain} carries another session's packets; retrying on another domain",
                  file=sys.stderr)
            domain = pick_domain("run")
    cols = [("width", "new width", "g"), ("new_width_in_packet", "packet's width", "g"),
            ("steady_ms", "steady encode ms", ".1f"), ("switch_ms", "switch + first encode ms", ".1f"),
            ("noop_switch_ms", "same, width unchanged ms", ".1f"),
            ("switch_overhead_ms", "switch overhead ms", ".2f"),
            ("reload_ms", "fresh OnboardEncoder + first encode ms", ".0f"),
            ("reload_over_switch", "reload / switch", ".0f"),
            ("minimal_reload_ms", "encoder-only reload + first encode ms", ".0f"),
            ("minimal_over_switch", "encoder-only reload / switch", ".1f")]
    medians = [(k if i < 2 else f"{k}_median", t, f) for i, (k, t, f) in enumerate(cols)]
    load1 = os.getloadavg()
    text = "\n".join([f"In process, {args.threads} torch threads; best of {args.repeats} reloads and "
                      f"{args.repeats * SWITCHES_PER_RELOAD} switches per width (the samples least disturbed by other "
                      "processes), interleaved; switch = set_width on a warm encoder running at another width + its "
                      "first encode; its control: the same sequence with set_width to the width already set "
                      f"(overhead = difference). Load average (1 min) {load0[0]:.1f} at the start, {load1[0]:.1f} at "
                      f"the end, on {os.cpu_count()} cores.", "",
                      markdown_table(rows, cols), "", "Medians of the same samples:", "",
                      markdown_table(rows, medians), "", _ros_text(ros)])
    print(text)
    out = Path(args.out)
    payload = {"command": command_line(args), "argv": sys.argv, "machine": machine_info(args.threads),
               "loadavg_at_start": load0, "loadavg_at_end": load1,
               "fingerprint": res["fingerprint"], "ros": ros, "seconds": round(time.monotonic() - t0, 1)}
    files = write_results(out, "switch", payload, rows)
    plot(out / "switch.png", rows, ros)
    (out / "table.md").write_text(text + "\n")
    print("wrote " + ", ".join(str(p) for p in [*files, out / "switch.png", out / "table.md"]))
    if "skipped" not in ros and not any(s["first_packet_ms"] is not None for s in ros["switches"]):
        print("bench switch: no packet at a new width came through ROS (node_log_tail in switch.json)", file=sys.stderr)
        return 1
    return 0

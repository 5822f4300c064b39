"""The README's results lines, generated from the benchmark output folders.

`bench report` writes them between the README's `<!-- results:begin -->` / `<!-- results:end -->`
markers, so the figures a reader meets first are those of the committed runs, never typed by hand.
Each line names the command and model that measured it and links to its table in docs/results.md;
a folder that is missing leaves its line out. The real-footage figures come first, then onboard
cost, the link and the fleet, then the synthetic scenes.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from .equal_accuracy import interval_text
from .failover import headline as failover_headline

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _load(results: Path, folder: str, name: str) -> dict | None:
    path = results / folder / name
    return json.loads(path.read_text()) if path.is_file() else None


def model_of(meta: dict) -> str:
    """The model a run measured: its command's `--model`; a command without one ran the default of
    its time, the synthetic model (the convention docs/results.md states for the committed runs)."""
    m = re.search(r"--model (\S+)", meta["command"])
    return m.group(1) if m else "synthetic"


def _source(folder: str, meta: dict, links: dict[str, str], command: str, options: str = "") -> str:
    """'(`split-perception bench x --model m ...`, date, [table and full command](...))': what produced a
    line, and where its table is."""
    return (f"(`split-perception {command} --model {model_of(meta)}{' ' + options if options else ''}`, "
            f"{meta['machine']['date']}, [table and full command]({links[folder]}))")


def _width(w: float) -> str:
    return str(float(w))


def _seq(values, fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def _span(values, fmt: str) -> str:
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return lo if lo == hi else f"{lo}-{hi}"


def _ratios(heads: list[dict], key: str, fmt: str) -> str:
    """Each width's baseline bytes / ours, as bounds where the baseline's curve gives only one."""
    return _seq([interval_text(h[f"{key}_ratio_min"],
                               math.inf if h[f"{key}_ratio_max"] is None else h[f"{key}_ratio_max"], fmt) + "x"
                 for h in heads], "")


def _widths_line(res: dict) -> str:
    heads = res["headline"]
    return (f"the widths {' / '.join(_width(h['width']) for h in heads)} send {_seq([h['ours_bytes'] for h in heads], '.0f')} "
            f"B/frame at {_seq([100 * h['ours_map'] for h in heads], '.1f')} mAP")


def real_footage(results: Path, links: dict[str, str]) -> str | None:
    res = _load(results, "rate_accuracy_real", "rate_accuracy.json")
    if res is None:
        return None
    heads, q95 = res["headline"], next(r for r in res["rows"] if (r["method"], r["setting"]) == ("jpeg", "q95"))
    return (f"**Bytes vs agreement with the teacher on held-out clips** "
            f"{_source('rate_accuracy_real', res, links, 'bench rate-accuracy', '--footage')}: on {res['frames']} "
            f"frames of {', '.join(res['clips'])} (every {res['frame_stride']}th, never trained on), "
            f"{_widths_line(res)}@[.5:.95] of agreement with the teacher's detections on the uncompressed frames "
            f"({_seq([100 * h['ours_map'] for h in res['headline50']], '.1f')} mAP@.5). At equal agreement the best "
            f"of JPEG and WebP needs {_ratios(heads, 'best_image', '.1f')} our bytes and PCA of the split tensor "
            f"{_ratios(heads, 'pca', '.2f')}; JPEG q95 sends {q95['bytes_mean'] / 1000:.1f} KB/frame at "
            f"{100 * q95['map']:.1f} mAP.")


VIDEO_CODECS = ("x264", "x265", "av1")


def video(results: Path, links: dict[str, str]) -> str | None:
    res = _load(results, "rate_accuracy_video", "rate_accuracy.json")
    if res is None:
        return None
    heads = res["headline"]
    cheapest = min((r for r in res["rows"] if r["method"] in VIDEO_CODECS), key=lambda r: r["bytes_mean"])
    beaten = sum(h["best_video_bytes_max"] is not None and h["best_video_bytes_max"] < h["ours_bytes"] for h in heads)
    per_clip = sorted(set(res["frames_per_clip"].values()))
    return (f"**Against the video codecs robots stream** "
            f"{_source('rate_accuracy_video', res, links, 'bench rate-accuracy', '--video')}: on "
            f"{'/'.join(str(n) for n in per_clip)} consecutive frames of each of {', '.join(res['clips'])} at "
            f"{res['fps']:g} fps, against x264, x265 and AV1 with a keyframe every {res['gop']} frames (as "
            f"ffmpeg_image_transport streams), {_widths_line(res)}@[.5:.95] of agreement with the teacher. The best "
            f"video codec needs {_ratios(heads, 'best_video', '.2f')} our bytes at that agreement (its cheapest point "
            f"measured, {cheapest['method']} ({cheapest['setting']}), sends {cheapest['bytes_mean']:.0f} B/frame at "
            f"{100 * cheapest['map']:.1f} mAP): a video codec needs fewer bytes than ours at {beaten} of "
            f"{len(heads)} widths.")


def temporal(results: Path, links: dict[str, str]) -> str | None:
    res = _load(results, "temporal", "temporal.json")
    if res is None:
        return None
    by_clip: dict[str, list[dict]] = {}
    for r in res["rows"]:
        by_clip.setdefault(r["clip"], []).append(r)
    clips = "; ".join(f"{clip} {_span([r['acks_now_ratio'] for r in rows], '.2f')}x with every frame acknowledged at "
                      f"once, {_span([r['acks_late_ratio'] for r in rows], '.2f')}x with acknowledgements "
                      f"{res['lag']} frames late" for clip, rows in sorted(by_clip.items()))
    ratios = [r["encode_time_ratio"] for r in res["rows"]]
    return (f"**Temporal coding** (`split-perception bench temporal`, the default model, {res['machine']['date']}, "
            f"[table and full command]({links['temporal']})): each frame coded against the newest frame the decoder "
            f"acknowledged, exactly lossless, costs per width this share of per-frame packets' bytes: {clips}; with "
            f"{100 * res['loss']:.0f}% of the packets lost nothing decoded differs and nothing is refused "
            f"({res['mismatched']} mismatched frames); encoding takes {_span(ratios, '.2f')}x the time of per-frame "
            f"coding.")


def loss(results: Path, links: dict[str, str]) -> str | None:
    res = _load(results, "loss", "loss.json")
    if res is None:
        return None
    rows = res["rows"]

    def share(p: float, key: str) -> str:
        return _span([r[key] for r in rows if r["loss"] == p], ".2f")

    worst = max(res["losses"])
    ahead = sum(r["ours_agree_delivered"] > r["h264_agree_delivered"] for r in rows if r["loss"] == worst)
    cases = sum(1 for r in rows if r["loss"] == worst)
    lossless = {(r["clip"], r["width"]): r for r in rows if r["loss"] == 0.0}

    def fall(name: str) -> str:  # how far the share of all frames agreeing falls from the lossless run
        return f"{max(lossless[r['clip'], r['width']][name] - r[name] for r in rows if r['loss'] == worst):.2f}"

    return (f"**Lost packets** {_source('loss', res, links, 'bench loss')}: our temporal stream (acknowledgements "
            f"{res['lag']} frames late) against H.264 (x264, keyframe every {res['gop']} frames) at the same mean "
            f"bitrate, per clip and width, each packet lost at random; share of delivered frames whose detections "
            f"agree with the teacher's (F1 >= {res['agree_f1']:g}): lossless ours {share(0.0, 'ours_agree_delivered')} "
            f"vs H.264 {share(0.0, 'h264_agree_delivered')}; with {100 * worst:g}% lost ours "
            f"{share(worst, 'ours_agree_delivered')} vs H.264 {share(worst, 'h264_agree_delivered')} (ours ahead in "
            f"{ahead} of {cases}). Over all frames, the losses cost H.264 up to {fall('h264_agree_all')} of the "
            f"share agreeing and ours up to {fall('ours_agree_all')}; {sum(r['ours_refused'] for r in rows)} of our "
            f"frames refused.")


def onboard(results: Path, links: dict[str, str]) -> str | None:
    res = _load(results, "onboard", "onboard.json")
    if res is None:
        return None
    rows = {r["runtime"]: r for r in res["rows"]}
    onnx, torch = rows["onnx"], rows["torch"]
    return (f"**Onboard install** {_source('onboard', res, links, 'bench onboard', '--onnx-python .venv-onboard/bin/python')}: the "
            f"encoder on ONNX Runtime (`make onboard`) against torch: install {onnx['install_mb']:.0f} vs "
            f"{torch['install_mb']:.0f} MB, of it {onnx['ros_wheels_mb']:.0f} MB ROS 2 pip wheels that a robot "
            f"with a ROS 2 distro does not install ({onnx['install_mb'] - onnx['ros_wheels_mb']:.0f} MB left there); "
            f"peak RSS {onnx['rss_peak_mib']:.0f} vs {torch['rss_peak_mib']:.0f} MiB; process start to first "
            f"packet {onnx['cold_start_s']:.2f} vs {torch['cold_start_s']:.1f} s ({res['threads']} threads).")


RUNTIMES = {"onnx": "ONNX Runtime", "torch": "torch"}


def latency(results: Path, links: dict[str, str]) -> str | None:
    res = _load(results, "latency", "latency.json")
    if res is None:
        return None
    split = [r for r in res["rows"] if r["kind"] == "split"]
    fastest = ", ".join(f"{w['option']} from {w['from_mbps']:.1f} to {w['to_mbps']:.1f} Mbit/s"
                        for w in res["win_ranges"])
    return (f"**Onboard compute** {_source('latency', res, links, 'bench latency')}: the encoder "
            f"({_span([r['onboard_mmacs'] for r in split], '.0f')} MMACs at every width, "
            f"{_span([r['macs_ratio'] for r in split], '.2f')}x the teacher's MACs) on {RUNTIMES[split[0]['runtime']]} takes "
            f"{_span([r['onboard_ms'] for r in split], '.1f')} ms a frame (of it "
            f"{_span([r['network_ms'] for r in split], '.1f')} ms preprocessing and network, the rest entropy coding), "
            f"{_span([r['onboard_ratio'] for r in split], '.3f')}x the time of the whole teacher onboard and "
            f"{_span([r['runtime_ratio'] for r in split], '.2f')}x that of the torch runtime (best of "
            f"{res['rounds']} rounds); offboard, decoding and the teacher's tail take "
            f"{_span([r['offboard_ratio'] for r in split], '.2f')}x the whole teacher. Fastest option by link "
            f"bandwidth on this CPU (onboard + transfer + offboard): {fastest}.")


def encoder_node(results: Path, links: dict[str, str]) -> str | None:
    res = _load(results, "encoder_node", "encoder_node.json")
    if res is None:
        return None
    rows = {(r["runtime"], r["camera_dds"]): r for r in res["rows"]}
    onnx_default, onnx_profile = rows[("onnx", "Fast DDS defaults")], rows[("onnx", "large-frames profile")]
    return (f"**Camera frames into the encoder node** {_source('encoder_node', res, links, 'bench encoder-node')}: "
            f"of a {res['fps']:g} fps {res['size'][0]}x{res['size'][1]} rgb8 camera, {onnx_default['received_fps']:.1f} "
            f"fps reach the encoder node (ONNX Runtime) with Fast DDS's defaults and "
            f"{onnx_profile['received_fps']:.1f} with `config/fastdds_large_frames.xml`, where the node encodes "
            f"{onnx_profile['encoded_fps']:.1f} fps on {onnx_profile['encoder_cores']:.2f} cores "
            f"({res['machine']['threads']} thread), peak RSS {onnx_profile['rss_max_mib']:.0f} MiB.")


def switch(results: Path, links: dict[str, str]) -> str | None:
    res = _load(results, "switch", "switch.json")
    if res is None:
        return None
    rows, ros = res["rows"], res["ros"]
    missed = sum(s["old_width_after_call"] or 0 for s in ros["switches"])
    return (f"**Switching width** {_source('switch', res, links, 'bench switch')}: a switch adds at most "
            f"{max(r['switch_overhead_ms'] for r in rows):.2f} ms to a steady encode of "
            f"{_span([r['steady_ms'] for r in rows], '.1f')} ms, where loading a fresh model takes "
            f"{_span([r['reload_over_switch'] for r in rows], '.0f')}x as long as a switch; through ROS the first "
            f"packet at the new width comes {ros['first_packet_ms_median'] / ros['frame_period_ms']:.2f}x the frame "
            f"period after the call (median of {len(ros['switches'])} switches), {missed} frames missed.")


def restart(results: Path, links: dict[str, str]) -> str | None:
    res = _load(results, "restart", "restart.json")
    if res is None:
        return None
    quiet = [s for s in res["summary"] if not s["cpu_load"]]
    encoder = [s for s in quiet if s["victim"] == "encoder"]
    decoder = {s["discovery"]: s for s in quiet if s["victim"] == "decoder"}
    profile, default = decoder["fastdds_rediscovery.xml"], decoder["Fast DDS default"]
    return (f"**Node killed and relaunched** {_source('restart', res, links, 'bench restart')}: a relaunched "
            f"encoder node is ready {_span([s['ready_median_s'] for s in encoder], '.1f')} s after its launch on "
            f"{RUNTIMES[encoder[0]['encoder_runtime']]} (median) and a relaunched decoder "
            f"{_span([s['ready_median_s'] for s in decoder.values()], '.1f')} s after its own; after a relaunched decoder is ready, its first detection comes within 1 s in "
            f"{profile['within'].replace('/', ' of ')} runs with `config/fastdds_rediscovery.xml` (at most {profile['resume_max_s']:.2f} s) "
            f"and in {default['within'].replace('/', ' of ')} with Fast DDS's defaults (at most {default['resume_max_s']:.2f} s).")


LINK_MODES = {"raw": "raw", "jpeg": "JPEG q", "width": "width "}


def _mode(name: str) -> str:
    prefix = next((p for p in LINK_MODES if name.startswith(p)), None)
    return LINK_MODES[prefix] + name[len(prefix):] if prefix else name


def link(results: Path, links: dict[str, str]) -> list[str]:
    res = _load(results, "link", "link.json")
    if res is None:
        return []
    lines = []
    for transport in dict.fromkeys(r["transport"] for r in res["rows"]):
        rows = [r for r in res["rows"] if r["transport"] == transport]
        modes = {}
        for r in rows:
            modes.setdefault(r["mode"], []).append(r)
        tight = min(res["schedule_mbps"])
        adaptive = next((r for r in modes.get("adaptive", []) if r["link_mbps"] == tight), None)
        fps = "; ".join(f"{_mode(m)} {_seq([r['delivered_fps'] for r in rs], '.1f')}" for m, rs in modes.items())
        tail = (f" In the {tight:g} Mbit/s phase the adaptive loop ran at a mean width of {adaptive['mean_width']:.2f}, "
                f"p95 latency {adaptive['latency_p95_ms'] / 1000:.1f} s." if adaptive else "")
        lines.append(
            f"**Over a real rate-limited link, {transport.upper() if transport == 'dds' else transport.capitalize()}** "
            f"{_source('link', res, links, 'bench link', '--transport ' + transport)}: kernel `tbf` between network "
            f"namespaces at {_seq(res['schedule_mbps'], 'g')} Mbit/s, {res['phase_seconds']:g} s each, "
            f"{res['fps']:g} fps offered; fps delivered in each phase: {fps}.{tail}")
    return lines


def fleet(results: Path, links: dict[str, str]) -> str | None:
    res = _load(results, "fleet", "fleet.json")
    if res is None:
        return None
    counts = sorted({r["robots"] for r in res["rows"] if r["robots"] > 1})
    one = {r["robots"]: r for r in res["rows"] if r["mode"] == "one-server"}
    per = {r["robots"]: r for r in res["rows"] if r["mode"] == "per-robot"}
    return (f"**One server for a fleet** {_source('fleet', res, links, 'bench fleet')}: {res['fps']:g} fps per "
            f"robot, every process on this machine; one decoder serving {_seq(counts, 'd')} robots delivers "
            f"{_seq([one[n]['fps_vs_per_robot'] for n in counts], '.2f')}x the frames of one decoder per robot in "
            f"{_seq([one[n]['rss_vs_per_robot'] for n in counts], '.2f')}x its memory "
            f"({one[counts[-1]]['rss_mib']:.0f} vs {per[counts[-1]]['rss_mib']:.0f} MiB at {counts[-1]}), at a p95 "
            f"latency of {_seq([one[n]['latency_p95_ms'] for n in counts], '.0f')} ms against "
            f"{_seq([per[n]['latency_p95_ms'] for n in counts], '.0f')} ms.")


def failover(results: Path, links: dict[str, str]) -> str | None:
    res = _load(results, "failover", "failover.json")
    if res is None:
        return None
    return (f"**Two servers, one killed** {_source('failover', res, links, 'bench failover')}: "
            f"{len(res['rows'])} robots over DDS + Zenoh at {res['fps']:g} fps each, one server SIGKILLed at "
            f"{res['kill_at_s']:g} s and started again at {res['return_at_s']:g} s: {failover_headline(res)}.")


def batch(results: Path, links: dict[str, str]) -> str | None:
    res = _load(results, "batch", "batch.json")
    if res is None:
        return None
    rows = res["rows"]
    best = min(rows, key=lambda r: r["frame_ratio"])
    return (f"**Offboard decoding in batches** {_source('batch', res, links, 'bench batch')}: per frame, batches "
            f"of {_seq([r['batch'] for r in rows], 'd')} cost {_seq([r['frame_ratio'] for r in rows], '.2f')}x a "
            f"single frame ({best['ms_per_frame']:.1f} vs {rows[0]['ms_per_frame']:.1f} ms at {best['batch']}).")


def soak(results: Path, links: dict[str, str]) -> str | None:
    res = _load(results, "soak", "soak.json")
    if res is None:
        return None
    s, verdict = res["summary"], res["verdict"]
    return (f"**Soak** {_source('soak', res, links, 'bench soak')}: {s['seconds']} s of "
            f"{res['size'][0]}x{res['size'][1]} frames offered at {s['offered_fps']:g} fps, {s['encoded_fps']:.1f} "
            f"encoded and {s['delivered_fps']:.1f} delivered (the drop-oldest slots dropped {s['encoder_drops']} "
            f"frames onboard, {s['decoder_drops']} offboard); latency p50 {s['latency_first_ms']:.0f} ms in the "
            f"first fifth, {s['latency_last_ms']:.0f} in the last; RSS slope {s['encoder_rss_slope_mib_per_min']:+.2f} "
            f"MiB/min encoder, {s['decoder_rss_slope_mib_per_min']:+.2f} decoder; "
            f"{sum(verdict.values())} of {len(verdict)} checks pass.")


def synthetic(results: Path, links: dict[str, str], folder: str, scenes: str) -> str | None:
    res = _load(results, folder, "rate_accuracy.json")
    if res is None:
        return None
    heads, rows = res["headline"], res["rows"]
    teacher = next(r for r in rows if r["method"] == "teacher")
    q95 = next((r for r in rows if (r["method"], r["setting"]) == ("jpeg", "q95")), None)
    top, below = heads[-1], heads[-2]
    return (f"**Bytes at equal accuracy, {scenes}** "
            f"{_source(folder, res, links, 'bench rate-accuracy', '--data ' + res['data'])}: on {teacher['images']} "
            f"held-out scenes with ground truth (teacher {100 * teacher['map']:.1f} mAP), {_widths_line(res)}, a "
            f"{top['ours_bytes'] / heads[0]['ours_bytes']:.1f}x span in bytes. At equal mAP the best of JPEG and "
            f"WebP needs {_ratios(heads, 'best_image', '.1f')} our bytes and PCA of the teacher's split features "
            f"{_ratios(heads, 'pca', '.2f')}"
            + (f"; JPEG q95 (compressed_image_transport's default) sends {q95['bytes_mean'] / heads[0]['ours_bytes']:.0f}x "
               f"the narrowest width's bytes" if q95 else "")
            + f". Width {_width(top['width'])} spends {top['ours_bytes'] / below['ours_bytes']:.1f}x the bytes of "
              f"width {_width(below['width'])} for {100 * (top['ours_map'] - below['ours_map']):.1f} more points.")


def block(results: Path, links: dict[str, str]) -> str:
    """The README's results lines from the output folders under `results`; `links` maps each folder
    to the address of its table in docs/results.md."""
    groups = [
        ("The default model (the NanoDet-g student) on real footage",
         [real_footage(results, links), video(results, links), temporal(results, links), loss(results, links)]),
        ("Onboard cost", [onboard(results, links), latency(results, links), encoder_node(results, links),
                          switch(results, links), restart(results, links)]),
        ("Over the link", link(results, links)),
        ("A fleet", [fleet(results, links), failover(results, links), batch(results, links),
                     soak(results, links)]),
        ("Synthetic scenes (scored against ground truth)",
         [synthetic(results, links, "rate_accuracy", "synthetic scenes"),
          synthetic(results, links, "rate_accuracy_hard", "hard synthetic scenes")]),
    ]
    parts = []
    for title, lines in groups:
        lines = [line for line in lines if line]
        if lines:
            parts.append(f"**{title}**\n\n" + "\n".join(f"* {line}" for line in lines))
    return "\n\n".join(parts)

"""`split-perception demo`: the whole loop over real DDS, each node its own process, no ros2 launch.

camera bag -> bag player -> encoder -> link emulator (bandwidth drops and recovers) -> decoder,
with the link monitor switching the encoder's width. The bag holds a real clip's frames: by default,
for a model of real-world classes (the bundled nanodet_g), the held-out street clip that `make footage`
fetches, or `--video`; for the synthetic model, synthetic frames with ground truth. Prints a per-second
table, then per-width bytes/fps/latency and COCO mAP of the delivered frames against the bag's ground
truth, or for a clip, which has none, against the teacher's detections on the uncompressed frames
(agreement), and the classes detected; writes a plot of bandwidth and width over time and a few
annotated frames to the output folder.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np

from .data.bags import ground_truth_path, read_images, write_image_bag, write_sample_bag
from .data.image_messages import message_to_rgb
from .errors import FootageError
from .harness.processes import (
    CONFIG,
    LARGE_FRAMES_PROFILE,
    REPO,
    python_module,
    ros_env,
    start_node,
    stop,
    wait_ready,
)
from .link.trace import BandwidthTrace
from .model_files import model_file
from .onboard.export_files import find_export
from .stamps import stamp_ns

# The clip a model of real-world classes plays by default: held out from training, people and cars in a
# street seen from a fixed camera (Debian's opencv-doc, docs/footage.md); `make footage` fetches it.
DEMO_CLIP = REPO / "data" / "footage" / "heldout" / "clips" / "vtest.avi"


def default_trace() -> str:
    """The emulator's bandwidth trace from config/link_emulator.yaml (one source of truth)."""
    import yaml

    return yaml.safe_load((CONFIG / "link_emulator.yaml").read_text())["link_emulator"]["ros__parameters"]["bandwidth"]


def demo_video(model_path, video: str | None) -> str | None:
    """The clip the demo plays: `video` if given; else for a model of an ONNX teacher (real-world
    classes) the held-out street clip, and for a model of the synthetic teacher None (synthetic frames,
    whose classes it knows and whose ground truth scores it)."""
    if video is not None:
        return video
    exp = find_export(model_path)
    if exp is not None:
        cfg = exp.cfg
    else:
        from .models.checkpoint import read_checkpoint

        cfg = read_checkpoint(model_file(model_path))["model_config"]
    if not cfg.teacher:
        return None
    if not DEMO_CLIP.is_file():
        raise FootageError(f"the demo's held-out clip {DEMO_CLIP} is missing: run `make footage` in {REPO} "
                           f"(or pass --video CLIP, or --model synthetic for synthetic frames)")
    return str(DEMO_CLIP)


def _offsets(log: Path) -> list[int]:
    return [int(x) for x in re.findall(r"replay offset_ns=(-?\d+)", log.read_text())] if log.exists() else []


def _match_ground_truth(dets: list[dict], gt: dict, offsets: list[int]) -> None:
    """Give each detections message (restamped by the player) its bag image id, via the logged offsets."""
    by_stamp = {im["stamp_ns"]: im["id"] for im in gt["images"]}
    for d in dets:
        image_id = next((by_stamp[d["stamp_ns"] - o] for o in offsets if d["stamp_ns"] - o in by_stamp), None)
        if image_id is not None:
            d["image_id"] = image_id


def _accuracy(coco, dets: list[dict]) -> dict:
    """COCO mAP of detections messages; a bag image delivered again (the bag loops) counts once."""
    from .evaluation.metrics import coco_map

    seen, res = set(), []
    for d in dets:
        if "image_id" in d and d["image_id"] not in seen:
            seen.add(d["image_id"])
            res += [{"image_id": d["image_id"], "category_id": x["class_id"], "bbox": x["bbox"], "score": x["score"]}
                    for x in d["detections"]]
    return {**(coco_map(coco, res, sorted(seen)) if seen else {"map": 0.0, "map50": 0.0}), "images": len(seen)}


def _reference(bag: Path, model_path) -> tuple:
    """(COCO object, its images with stamps, "ground truth" or "teacher"): what the delivered frames are
    scored against, the bag's ground truth or, without one, the teacher's detections on its frames."""
    gt_path = ground_truth_path(bag)
    if gt_path.exists():
        from .data.coco import load_coco

        return load_coco(gt_path), json.loads(gt_path.read_text())["images"], "ground truth"
    from .evaluation.bag_eval import detections_coco
    from .offboard.decoder import OffboardDecoder

    print("the teacher on the bag's uncompressed frames (the reference a clip has) ...", flush=True)
    dec = OffboardDecoder(model_path)
    images, dets, sizes = [], [], []
    for i, m in enumerate(read_images(bag), 1):
        rgb = message_to_rgb(m.msgtype, m.msg)
        images.append({"id": i, "stamp_ns": stamp_ns(m.msg.header.stamp)})
        dets.append(dec.teacher(rgb)[0])
        sizes.append(rgb.shape[:2])
    return detections_coco([im["id"] for im in images], dets, sizes, dec.cfg.class_names), images, "teacher"


def _summary(rec: dict, reference: tuple, offsets: list[int]) -> dict:
    coco, images, _ = reference
    _match_ground_truth(rec["detections"], {"images": images}, offsets)
    width_of = {}
    for f in rec["frames"]:
        width_of.setdefault(f["width"], []).append(f)
    summary = {}
    duration = max([f["t"] for f in rec["frames"]] or [1.0])
    for width, frames in sorted(width_of.items()):
        stamps = {f["stamp_ns"] for f in frames}
        dets = [d for d in rec["detections"] if d["stamp_ns"] in stamps]
        summary[str(width)] = {"frames": len(frames),
                               "kb_per_frame": float(np.mean([f["bytes"] for f in frames])) / 1000,
                               "latency_ms_p50": float(np.median([d["latency_ms"] for d in dets])) if dets else None,
                               **_accuracy(coco, dets)}
    labels = Counter(x["label"] for d in rec["detections"] for x in d["detections"])
    summary["all"] = {"frames": len(rec["frames"]), "fps": len(rec["frames"]) / duration,
                      **_accuracy(coco, rec["detections"]), "labels": dict(labels.most_common())}
    return summary


def _plot(rec: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    if rec["bandwidth"]:
        ax.step([b["t"] for b in rec["bandwidth"]], [b["bps"] / 1e6 for b in rec["bandwidth"]], where="post",
                label="link bandwidth (Mbit/s)")
    ax.set_xlabel("time [s]")
    ax.set_ylabel("Mbit/s")
    ax.set_yscale("log")
    ax2 = ax.twinx()
    ax2.plot([f["t"] for f in rec["frames"]], [f["width"] for f in rec["frames"]], "r.", ms=3,
             label="encoder width (delivered frames)")
    ax2.set_ylabel("width")
    ax2.set_ylim(0, 1.1)
    fig.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _annotate(rec: dict, bag: Path, offsets: list[int], out: Path, count: int = 4) -> int:
    import cv2

    from .offboard.decoder import Detection
    from .offboard.visualize import draw_detections

    out.mkdir(parents=True, exist_ok=True)
    frames = {stamp_ns(m.msg.header.stamp): m for m in read_images(bag)}
    picked = [d for d in rec["detections"] if d["detections"]][:: max(1, len(rec["detections"]) // (count * 2))][:count]
    written = 0
    for d in picked:
        src = next((frames[d["stamp_ns"] - o] for o in offsets if d["stamp_ns"] - o in frames), None)
        if src is None:
            continue
        rgb = message_to_rgb(src.msgtype, src.msg)
        dets = [Detection(x["class_id"], x["label"], x["score"],
                          (x["bbox"][0], x["bbox"][1], x["bbox"][0] + x["bbox"][2], x["bbox"][1] + x["bbox"][3]))
                for x in d["detections"]]
        vis = draw_detections(rgb, dets)
        cv2.imwrite(str(out / f"frame_t{d['t']:05.1f}s.png"), cv2.cvtColor(vis, cv2.COLOR_RGB2BGR))
        written += 1
    return written


def _write_bag(out: Path, frames: int, video: str | None) -> Path:
    """The camera bag the player loops: `frames` synthetic frames with ground truth, or the first
    `frames` frames of a clip at its own frame rate. Written once; a later run reuses it."""
    if video is None:
        bag = out / "sample_bag"
        if not bag.exists():
            print(f"writing a sample bag of {frames} synthetic 640x480 frames to {bag} ...", flush=True)
            write_sample_bag(bag, frames=frames, fps=10.0)
        return bag
    from .data.footage import iter_frames, video_fps

    bag = out / f"{Path(video).stem}_bag"
    if not bag.exists():
        fps = video_fps(video) or 10.0
        print(f"writing the first {frames} frames of {video} at {fps:g} fps to {bag} ...", flush=True)
        write_image_bag(bag, iter_frames(video, max_frames=frames), fps=fps)
    return bag


def run_demo(out_dir: str, seconds: float, trace_spec: str | None, frames: int, domain_id: int,
             model_path=None, video: str | None = None) -> int:
    out = Path(out_dir).resolve()  # the nodes and the recorder get absolute paths only
    out.mkdir(parents=True, exist_ok=True)
    trace_spec = trace_spec or default_trace()
    trace = BandwidthTrace.parse(trace_spec)
    if trace_spec.endswith(".csv"):
        trace_spec = str(Path(trace_spec).resolve())
    bag = _write_bag(out, frames, demo_video(model_path, video))
    model = {"model_path": str(model_file(model_path).resolve())} if model_path else {}  # a name or a path
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    print(f"starting nodes (ROS_DOMAIN_ID={domain_id}); link trace {trace.points} ...", flush=True)
    # the robot's side (camera -> encoder) with the Fast DDS profile that carries whole 640x480 frames
    # in shared memory, as on a robot (README, "Onboard install"); without it most frames are lost
    robot_env = {"FASTDDS_DEFAULT_PROFILES_FILE": str(LARGE_FRAMES_PROFILE)}
    procs = [
        start_node("decoder", domain_id, params=model, params_file=CONFIG / "decoder.yaml",
                   log_path=logs / "decoder.log"),
        start_node("link_monitor", domain_id, params=model, params_file=CONFIG / "link_monitor.yaml",
                   remap={"features": "features_onboard"}, log_path=logs / "link_monitor.log"),
        start_node("link_emulator", domain_id, params={"bandwidth": trace_spec},
                   params_file=CONFIG / "link_emulator.yaml", remap={"features_in": "features_onboard",
                                                                     "features_out": "features"},
                   log_path=logs / "link_emulator.log"),
        start_node("encoder", domain_id, params=model, params_file=CONFIG / "encoder.yaml",
                   remap={"features": "features_onboard"}, log_path=logs / "encoder.log", env=robot_env),
    ]
    rec_path = out / "recording.json"
    try:
        # the camera starts once both ends are up: the decoder loads torch and takes seconds longer
        # than the encoder, and frames sent before it is ready would be counted as sent, never decoded
        wait_ready(logs, "encoder", "decoder")
        procs.append(start_node("bag_player", domain_id, params={"bag": bag, "loop": True, "wait_for_subscribers": 1},
                                params_file=CONFIG / "bag_player.yaml", log_path=logs / "bag_player.log",
                                env=robot_env))
        recorder = subprocess.run([*python_module("split_perception.harness.demo_recorder"), str(seconds),
                                   str(rec_path)], env=ros_env(domain_id), timeout=seconds + 120)
        if recorder.returncode != 0:
            print("recorder failed; see logs in", logs)
            return 1
    finally:
        stop(procs)
    rec = json.loads(rec_path.read_text())
    offsets = _offsets(logs / "bag_player.log")
    reference = _reference(bag, model_path)
    summary = _summary(rec, reference, offsets)
    print(f"\nper width (delivered frames), mAP against the {reference[2]}"
          f"{' on the uncompressed frames (agreement)' if reference[2] == 'teacher' else ''}:")
    print(f"{'width':>6} {'frames':>6} {'KB/frame':>8} {'latency p50 ms':>14} {'mAP':>6} {'mAP@.5':>7}")
    for key, s in summary.items():
        if key != "all":
            lat = f"{s['latency_ms_p50']:14.0f}" if s["latency_ms_p50"] is not None else f"{'-':>14}"
            print(f"{key:>6} {s['frames']:6d} {s['kb_per_frame']:8.2f} {lat} {100 * s['map']:6.1f} {100 * s['map50']:7.1f}")
    a = summary["all"]
    print(f"all: {a['frames']} frames delivered, {a['fps']:.1f} fps, mAP {100 * a['map']:.1f}, mAP@.5 {100 * a['map50']:.1f}")
    print("detected: " + (", ".join(f"{label} {n}" for label, n in a["labels"].items()) or "nothing"))
    switches = [l for l in (logs / "link_monitor.log").read_text().splitlines() if "width ->" in l]
    print(f"{len(switches)} width switches by the link monitor:")
    for line in switches:
        print("  " + line.split("]: ", 1)[-1])
    _plot(rec, out / "bandwidth_width.png")
    n = _annotate(rec, bag, offsets, out / "annotated")
    summary["all"]["reference"] = reference[2]  # what mAP is against: the ground truth, or the teacher
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nwrote {out / 'bandwidth_width.png'}, {n} annotated frames in {out / 'annotated'}, {out / 'summary.json'}")
    return 0

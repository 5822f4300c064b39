"""Argument parsers of `split-perception bench <name>` and `split-perception analyze-split`.

Each benchmark lives in its own module with a `run(args) -> int`; the module is imported only
when its command runs, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib

from ..harness.domains import DOMAIN_HELP
from ..model_files import MODEL_HELP

FRAMES_HELP = ("a COCO-format dataset, or a folder of clips (their frames in turn); default data/synthetic/val, or "
               "for a model of an ONNX teacher the held-out clips data/footage/heldout/clips")


def _runner(module: str):
    def run(args) -> int:
        return importlib.import_module(f"split_perception.bench.{module}").run(args)

    return run


def _common(s: argparse.ArgumentParser, name: str, threads: int = 2) -> None:
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("--out", default=f"results/bench/{name}", help="output folder (JSON, CSV, PNG)")
    s.add_argument("--threads", type=int, default=threads, help="torch CPU threads (fixed for comparability)")


def _clips(s: argparse.ArgumentParser, max_frames: int) -> None:
    """The held-out clips played in order as a camera at `--fps` (what `bench temporal` and `bench loss` code)."""
    s.add_argument("--footage", default="data/footage/heldout/clips", help="folder of clips, each played in order")
    s.add_argument("--fps", type=float, default=10.0, help="the camera rate the clips are played at")
    s.add_argument("--max-frames", type=int, default=max_frames, help="frames per clip (>= 2)")


def add_parsers(sub) -> None:
    """Register `bench` (with its sub-commands) and `analyze-split` on the top-level subparsers."""
    bench = sub.add_parser("bench", help="benchmarks: rate-accuracy, temporal, loss, latency, onboard, switch, transport, batch, fleet, failover, encoder-node, "
                                         "soak, restart, link, report")
    bsub = bench.add_subparsers(dest="bench", required=True)

    s = bsub.add_parser("rate-accuracy", help="bytes/frame vs mAP: our widths vs JPEG/WebP/PNG and PCA features")
    _common(s, "rate_accuracy")
    s.set_defaults(out=None)
    s.add_argument("--video", action="store_true", help="on consecutive frames of the held-out clips at --fps: "
                   "also x264, x265 and AV1 as streamed (keyframe every --gop frames) and all-intra, through PyAV "
                   "(default --out results/bench/rate_accuracy_video)")
    s.add_argument("--fps", type=float, default=10.0, help="--video: the camera rate the clips are played at")
    s.add_argument("--gop", type=int, default=15, help="--video: frames from one keyframe to the next "
                   "(ffmpeg_image_transport's default gop_size)")
    s.add_argument("--data", default="data/synthetic/val", help="COCO-format dataset to evaluate on (a model of "
                   "the synthetic teacher)")
    s.add_argument("--footage", help="folder of held-out clips to evaluate on (a model of an ONNX teacher; "
                   "default data/footage/heldout/clips): agreement with the teacher, no labels needed (default --out "
                   "results/bench/rate_accuracy_real)")
    s.add_argument("--frame-stride", type=int, default=5, help="--footage: every n-th frame of each clip")
    s.add_argument("--fit-data", help="what the PCA baseline is fitted on (default data/synthetic/fit, or "
                   "data/footage/train with --footage)")
    s.add_argument("--max-images", type=int, default=0, help="0 = all (--footage: per clip)")
    s.add_argument("--fit-images", type=int, default=100, help="images used to fit the PCA baseline")
    s.add_argument("--quick", action="store_true", help="a small grid of baselines (CI)")
    s.add_argument("--baselines", metavar="DIR",
                   help="take JPEG/WebP/PNG and PCA from an earlier run's output folder on the same frames "
                        "(the teacher is measured again and must match); only our widths are measured")
    s.set_defaults(func=_runner("rate_accuracy"))

    s = bsub.add_parser("temporal", help="bytes/frame with and without temporal coding on real clips (acks at "
                                         "once, late, with loss) and the encode time ratio on ONNX Runtime")
    _common(s, "temporal", threads=1)
    _clips(s, max_frames=40)
    s.add_argument("--lag", type=int, default=3, help="frames by which acknowledgements arrive late")
    s.add_argument("--loss", type=float, default=0.1, help="fraction of packets lost in the lossy stream")
    s.add_argument("--seed", type=int, default=0, help="seed of the losses")
    s.set_defaults(func=_runner("temporal"))

    s = bsub.add_parser("loss", help="packets lost at random: our temporal stream against H.264 at the same mean "
                                     "bitrate, the share of frames whose detections agree with the teacher")
    _common(s, "loss", threads=2)
    _clips(s, max_frames=300)
    s.add_argument("--loss", default="0.01,0.05", help="comma-separated loss probabilities, each run in turn "
                                                      "(lossless runs too)")
    s.add_argument("--lag", type=int, default=3, help="frames by which our acknowledgements arrive late")
    s.add_argument("--gop", type=int, default=15, help="H.264: frames from one keyframe to the next "
                                                       "(ffmpeg_image_transport's default gop_size)")
    s.add_argument("--agree-f1", type=float, default=0.8, help="a frame agrees with the teacher at this F1 (IoU 0.5)")
    s.add_argument("--seed", type=int, default=0, help="seed of the losses")
    s.set_defaults(func=_runner("packet_loss"))

    s = bsub.add_parser("latency", help="onboard/offboard ms per width vs full onboard inference and JPEG")
    _common(s, "latency")
    s.add_argument("--data", help=f"frames to time on: {FRAMES_HELP}")
    s.add_argument("--repeats", type=int, default=50, help="timing rounds: calls per measurement (best and median)")
    s.add_argument("--frames", type=int, default=30, help="frames timed and sized (the first N of --data)")
    s.set_defaults(func=_runner("latency"))

    s = bsub.add_parser("onboard", help="onboard encoder on ONNX Runtime vs torch: install size, peak RSS, "
                                        "cold start")
    _common(s, "onboard")
    s.add_argument("--onnx-python", help="interpreter of a torch-free onboard environment (default: this one)")
    s.add_argument("--torch-python", help="interpreter with torch (default: this one)")
    s.add_argument("--starts", type=int, default=3, help="cold starts per runtime (median reported)")
    s.set_defaults(func=_runner("onboard_cost"))

    s = bsub.add_parser("switch", help="width switch vs loading a fresh model; set_parameters over ROS")
    _common(s, "switch")
    s.add_argument("--repeats", type=int, default=30, help="reloads per width, 5 switches each (best and median)")
    s.add_argument("--no-ros", action="store_true", help="skip the measurement through a ROS encoder node")
    s.add_argument("--fps", type=float, default=15.0, help="camera rate the ROS encoder node is fed")
    s.add_argument("--switches", type=int, default=8, help="set_parameters width changes through ROS")
    s.add_argument("--ros-seconds", type=float, default=30.0, help="length of the ROS run (node start included)")
    s.add_argument("--domain-id", type=int, help=DOMAIN_HELP)
    s.set_defaults(func=_runner("switch"))

    s = bsub.add_parser("transport", help="sustained fps, bytes/s, drops, latency, memory through DDS")
    _common(s, "transport", threads=1)  # per node: encoder and decoder share this machine
    s.add_argument("--seconds", type=float, default=30.0, help="run length per width")
    s.add_argument("--fps", type=float, default=30.0, help="camera rate offered to the encoder")
    s.add_argument("--size", default="640x480", help="camera frame size WxH")
    s.add_argument("--domain-id", type=int, help=DOMAIN_HELP)
    s.set_defaults(func=_runner("transport"))

    s = bsub.add_parser("batch", help="offboard decode + heads ms per frame by batch size (frames waiting "
                                      "together, as from a fleet)")
    _common(s, "batch")
    s.add_argument("--data", help=f"frames the packets are made from: {FRAMES_HELP}")
    s.add_argument("--batches", default="1,2,4,8,16", help="comma-separated batch sizes (1 is always measured)")
    s.add_argument("--repeats", type=int, default=20, help="timing rounds")
    s.set_defaults(func=_runner("batch"))

    s = bsub.add_parser("fleet", help="N robots over DDS: one decoder serving all vs one decoder per robot "
                                      "(delivered fps, latency, offboard memory)")
    _common(s, "fleet")  # per decoder process, as the node's default: they share this machine
    s.add_argument("--robots", default="1,2,4,8", help="comma-separated robot counts")
    s.add_argument("--seconds", type=float, default=40.0, help="run length per robot count and mode")
    s.add_argument("--fps", type=float, default=4.0, help="camera rate per robot")
    s.add_argument("--data", help=f"held-out frames the cameras publish: {FRAMES_HELP}")
    s.add_argument("--domain-id", type=int, help=DOMAIN_HELP)
    s.set_defaults(func=_runner("fleet"))

    s = bsub.add_parser("failover", help="2 decoder servers for one fleet over DDS + Zenoh, one killed mid-run: "
                                         "which robots moved, seconds to recover, frames lost elsewhere")
    _common(s, "failover")
    s.add_argument("--robots", type=int, default=4, help="number of robots")
    s.add_argument("--seconds", type=float, default=90.0, help="run length at least (the cameras' time); with "
                   "--return-at, until s1 has served its robots again for 10 s")
    s.add_argument("--fps", type=float, default=0.5, help="camera rate per robot (low enough for one server to "
                   "decode the whole fleet alone on a 2-core machine with the default model)")
    s.add_argument("--kill-at", type=float, default=30.0, help="seconds into the run when s1 is SIGKILLed")
    s.add_argument("--return-at", type=float, default=50.0, help="seconds into the run when s1 starts again (0: never)")
    s.add_argument("--data", help=f"held-out frames the cameras publish: {FRAMES_HELP}")
    s.add_argument("--domain-id", type=int, help=DOMAIN_HELP)
    s.set_defaults(func=_runner("failover"))

    s = bsub.add_parser("encoder-node", help="camera frames the onboard encoder node takes in, and its CPU cores "
                                             "(no decoder), per runtime and Fast DDS setting")
    _common(s, "encoder_node", threads=1)
    s.add_argument("--seconds", type=float, default=30.0, help="run length per runtime and DDS setting")
    s.add_argument("--fps", type=float, default=30.0, help="camera rate offered to the encoder")
    s.add_argument("--size", default="640x480", help="camera frame size WxH")
    s.add_argument("--width", type=float, default=1.0, help="encoder width")
    s.add_argument("--runtimes", default="onnx,torch", help="comma-separated: onnx, torch")
    s.add_argument("--dds-profile", help="Fast DDS XML profile of the robot's processes, compared with the defaults "
                                         "(default: the package's config/fastdds_large_frames.xml; '' = defaults only)")
    s.add_argument("--domain-id", type=int, help=DOMAIN_HELP)
    s.set_defaults(func=_runner("encoder_node_load"))

    s = bsub.add_parser("soak", help="minutes of camera -> encoder -> decoder over DDS: latency and RSS trends")
    _common(s, "soak", threads=1)
    s.add_argument("--minutes", type=float, default=10.0, help="run length")
    s.add_argument("--fps", type=float, default=30.0, help="camera rate offered (above what 2 cores decode)")
    s.add_argument("--size", default="640x480", help="camera frame size WxH")
    s.add_argument("--width", type=float, default=1.0, help="encoder width for the whole run")
    s.add_argument("--warmup-s", type=float, default=10.0, help="left out of every figure (start-up)")
    s.add_argument("--max-latency-growth-ms", type=float, default=50.0,
                   help="fail if the latency median of the last fifth exceeds the first fifth's by this")
    s.add_argument("--max-rss-slope", type=float, default=2.0,
                   help="fail if a node's RSS grows faster than this (MiB/min, second half of the run)")
    s.add_argument("--progress-s", type=float, default=30.0, help="print a progress line this often")
    s.add_argument("--domain-id", type=int, help=DOMAIN_HELP)
    s.set_defaults(func=_runner("soak"))

    s = bsub.add_parser("restart", help="node killed and relaunched mid-stream: how soon decoding resumes")
    _common(s, "restart", threads=1)
    s.add_argument("--runs", type=int, default=5, help="kill-and-restarts per victim, CPU load and DDS setting")
    s.add_argument("--victims", default="decoder,encoder", help="comma-separated: decoder, encoder")
    s.add_argument("--cpu-load", default="0,2", help="comma-separated numbers of busy processes run beside")
    s.add_argument("--fps", type=float, default=5.0, help="camera rate")
    s.add_argument("--down-s", type=float, default=4.0, help="seconds between the kill and the relaunch")
    s.add_argument("--seconds", type=float, default=26.0, help="camera stream length per run")
    s.add_argument("--dds-profile", help="Fast DDS XML profile to compare with the defaults (default: the "
                                         "package's config/fastdds_rediscovery.xml; '' = defaults only)")
    s.add_argument("--domain-id", type=int, help=DOMAIN_HELP)
    s.set_defaults(func=_runner("restart"))

    s = bsub.add_parser("link", help="raw / JPEG / fixed widths / adaptive over a real rate-limited link (root)")
    _common(s, "link", threads=1)
    s.add_argument("--schedule", default="20,2,0.5,0.1,5", help="link rate per phase, Mbit/s")
    s.add_argument("--phase-seconds", type=float, default=15.0)
    s.add_argument("--modes", default="raw,jpeg95,jpeg75,width0.25,width0.5,width1.0,adaptive",
                   help="comma-separated: raw, jpeg<quality>, width<w>, adaptive")
    s.add_argument("--fps", type=float, default=10.0, help="camera rate (the adaptive loop's target)")
    s.add_argument("--frames", type=int, default=50, help="dataset frames played in a loop")
    s.add_argument("--transport", default="dds", help="what carries the topics across: dds, zenoh (a zenoh_bridge "
                                                      "on each side, DDS local to each), or both: dds,zenoh")
    s.add_argument("--data", default="data/synthetic/val", help="COCO-format dataset the frames come from")
    s.add_argument("--domain-id", type=int, help=DOMAIN_HELP)
    s.set_defaults(func=_runner("link_adaptation"))

    s = bsub.add_parser("report", help="write the tables of docs/results.md and the README's results lines from "
                                       "the benchmark outputs")
    s.add_argument("--results", default="results/bench", help="folder holding the benchmark output folders")
    s.add_argument("--doc", default="docs/results.md", help="page with the bench-results markers")
    s.add_argument("--readme", default="README.md", help="page with the results markers (the headline lines)")
    s.add_argument("--print", action="store_true", help="print the tables and lines instead of editing the pages")
    s.set_defaults(func=_runner("report"))

    s = sub.add_parser("analyze-split", help="PCA study of candidate split layers: components, bytes, accuracy")
    _common(s, "analyze_split")
    s.add_argument("--data", help="where accuracy is measured: a dataset (default data/synthetic/val), or for a "
                                  "model of an ONNX teacher a folder of held-out clips (default "
                                  "data/footage/heldout/clips; agreement with the teacher, no labels)")
    s.add_argument("--fit-data", help="what the PCA is fitted on (default data/synthetic/fit, or data/footage/train "
                                      "for an ONNX teacher)")
    s.add_argument("--max-images", type=int, default=100, help="evaluation images (0 = all; per clip for clips)")
    s.add_argument("--fit-images", type=int, default=100, help="images the PCA is fitted on")
    s.add_argument("--frame-stride", type=int, default=20, help="ONNX teacher: every n-th frame of each clip")
    s.set_defaults(out=None)  # results/bench/analyze_split, or analyze_split_<teacher> for an ONNX teacher
    s.add_argument("--agreement", type=float, default=0.5,
                   help="ONNX teacher: the agreement mAP@.5 a cut's setting must reach to count for the suggestion")
    s.add_argument("--splits", default="1,2,3,4,5,6,7",
                   help="synthetic teacher: candidate k of features[0][:k], within 1..7 (LR-ASPP reads stem[6]); "
                        "an ONNX teacher's candidates are its single-tensor cuts")
    s.add_argument("--tolerance", type=float, default=1.0,
                   help="mAP/mIoU points below the teacher a setting may lose to count for the suggestion")
    s.add_argument("--quick", action="store_true", help="a small grid of PCA settings (CI)")
    s.set_defaults(func=_runner("analyze_split"))

"""`split-perception` command line: info, make-dataset, train, encode, export-onboard, decode, eval, demo,
make-bag, eval-bag, decode-bag, fuzz, bench, analyze-split."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .config import DEVICES, RUNTIMES
from .errors import ConfigError, SplitPerceptionError
from .harness.domains import DOMAIN_HELP, domain_from
from .model_files import MODEL_HELP


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def cmd_info(args) -> int:
    import numpy as np

    from .data.synthetic import render_scene
    from .onboard.encoder import OnboardEncoder
    from .onboard.export_files import export_dir_for, find_export

    enc = OnboardEncoder(args.model, runtime="torch")
    cfg = enc.cfg
    m = enc.model
    print(f"model:        {args.model or 'bundled default'}")
    print(f"fingerprint:  {enc.fingerprint}")
    export = find_export(args.model)
    print(f"onboard export: {export.directory} (up to date)" if export else
          f"onboard export: none up to date at {export_dir_for(args.model)} (`split-perception export-onboard`)")
    if cfg.teacher:
        spec = cfg.teacher_spec()
        prov = spec.provenance
        print(f"teacher:      {spec.name} ({spec.model_path}, sha256 {cfg.teacher_sha256[:12]}), head family "
              f"{spec.head_family}; from {prov.get('npm_package', '?')} {prov.get('npm_version', '')}")
        print(f"classes:      {len(cfg.class_names)}: {', '.join(cfg.class_names)}")
        print(f"input size:   {cfg.input_size[1]}x{cfg.input_size[0]} (w x h, {cfg.resize}, {cfg.channel_order}), "
              f"split at tensor {spec.split.tensor} {list(spec.split.shape)} (stride {m.teacher.split_stride})")
    else:
        print(f"classes:      {', '.join(cfg.class_names)}")
        print(f"input size:   {cfg.input_size[1]}x{cfg.input_size[0]} (w x h), split after MobileNetV3 "
              f"features[:{cfg.split_index}] (stride {m.teacher.split_stride}, {m.teacher.split_channels} channels)")
    onboard = sum(p.numel() for p in m.encoder.parameters()) + sum(p.numel() for p in m.latent_codecs.parameters()) \
        + sum(b.numel() for b in m.encoder.buffers() if b.is_floating_point())  # an ONNX teacher's front: buffers
    print(f"onboard params (all widths share them): {onboard:,}")
    image, _ = render_scene(np.random.default_rng(args.seed), tuple(cfg.input_size))  # shapes: a sample frame
    print("width  bottleneck  bytes/frame (one synthetic sample)")
    for w, c in zip(enc.widths, m.encoder.bottleneck_channels):
        enc.set_width(w)
        print(f"{w:5.2f}  {c:10d}  {len(enc.encode(image)):11d}")
    return 0


def cmd_make_dataset(args) -> int:
    from .data.synthetic import make_dataset

    path = make_dataset(args.out, args.num_images, seed=args.seed, size=(args.height, args.width), style=args.style)
    print(f"wrote {args.num_images} scenes: {path}")
    return 0


def cmd_train(args) -> int:
    from .config import load_config

    mc, tc = load_config(args.config)
    for key in ("output_dir", "epochs", "seed", "max_train_images", "device", "num_workers", "num_threads"):
        value = getattr(args, key)
        if value is not None:
            setattr(tc, key, value)
    if tc.stage == "distill":
        from .training.distill import DistillTrainer as Trainer
    else:
        from .training.trainer import Trainer
    final = Trainer(mc, tc.validate(), progress=not args.quiet).run()
    print(f"final model: {final}")
    return 0


def cmd_refit_entropy(args) -> int:
    from .models.checkpoint import (
        model_from_checkpoint,
        read_checkpoint,
        save_checkpoint,
    )
    from .training.entropy_refit import refit_entropy, rescale_gain

    if args.images < 2 or args.steps < 0 or args.lr <= 0:
        raise ConfigError(f"--images must be >= 2, --steps >= 0 and --lr > 0, got {args.images}, {args.steps}, "
                          f"{args.lr}")
    _threads(args.threads)
    ckpt = read_checkpoint(args.model)
    model, fp, extra = model_from_checkpoint(ckpt, args.model), ckpt["fingerprint"], ckpt["extra"]
    for width, factor in args.gain:
        rescale_gain(model, width, factor)
    report = refit_entropy(model, args.data, args.images, args.steps, lr=args.lr, progress=not args.quiet)
    for w, r in report.items():
        print(f"width {w}: {r['bytes_before']:.0f} -> {r['bytes_after']:.0f} bytes/frame on the held-out images")
    extra["entropy_refit"] = {"from": fp, "data": args.data, "images": args.images, "steps": args.steps,
                              "lr": args.lr, "gain": {str(w): f for w, f in args.gain}, "bytes": report}
    extra["bytes_per_width"] = {w: r["bytes_after"] for w, r in report.items()}
    new_fp = save_checkpoint(model, args.out, extra=extra)
    print(f"wrote {args.out}: model {new_fp[:12]} (export it again for the onboard runtime)")
    return 0


def width_factor(text: str) -> tuple[float, float]:
    """'W=F' (a width and a factor) for --gain."""
    try:
        w, f = text.split("=")
        return float(w), float(f)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTH=FACTOR such as 1.0=1.5, got {text!r}") from None


def _read_rgb(path: Path):
    """An image file as RGB uint8 (Pillow: `encode` runs in the onboard install, which has no OpenCV)."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise SplitPerceptionError(f"cannot read image {path}: {exc}") from None


def cmd_encode(args) -> int:
    from .onboard.encoder import OnboardEncoder

    enc = OnboardEncoder(args.model, runtime=args.runtime, threads=args.threads)
    enc.set_width(args.width)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(args.images):
        rgb = _read_rgb(Path(path))
        t0 = time.perf_counter()
        data = enc.encode(rgb, frame_id=i, stamp_ns=time.time_ns())
        ms = 1000 * (time.perf_counter() - t0)
        target = out / (Path(path).stem + ".spf")
        target.write_bytes(data)
        print(f"{path} -> {target}: {len(data)} bytes at width {enc.width} ({ms:.1f} ms, {enc.runtime})")
    return 0


def cmd_import_teacher(args) -> int:
    from .teachers.importer import import_teacher

    res = import_teacher(args.model, args.split, args.like, args.out, args.classes, args.name)
    spec = res["spec"]
    print(f"wrote {args.out}: teacher {spec.name}, {len(spec.class_names)} classes, head family {spec.head_family}, "
          f"input {spec.input.width}x{spec.input.height} ({spec.input.resize}, {spec.input.channel_order})")
    print(f"split at {spec.split.tensor} {list(res['shape'])}: tail(front(x)) vs the whole model, max abs "
          f"difference {res['max_abs_diff']:.3g}")
    print(f"next: split-perception train --config {Path(args.out) / 'student.yaml'}")
    return 0


def cmd_export_onboard(args) -> int:
    from .onboard.export import export_onboard
    from .onboard.export_files import read_export

    exp = read_export(export_onboard(args.model, args.out))
    print(f"wrote {exp.directory}: model {exp.fingerprint[:12]}, widths {list(exp.cfg.widths)}, "
          f"bottleneck {[t.latent_shape for t in exp.widths]}")
    return 0


def cmd_decode(args) -> int:
    import cv2

    from .errors import ModelMismatchError, PacketError
    from .evaluation.metrics import xywh
    from .offboard.decoder import OffboardDecoder
    from .offboard.visualize import draw_detections

    _threads(args.threads)
    dec = OffboardDecoder(args.model, score_thresh=args.score_thresh)
    if args.masks and not dec.model.teacher.has_segmentation:
        raise ConfigError(f"--masks: the model ({args.model or 'the default'}) has no segmentation head, it "
                          "detects only (`--model synthetic` segments)")
    results, failures = [], 0
    for path in args.packets:
        try:
            frame = dec.decode(Path(path).read_bytes(), with_mask=bool(args.masks))
        except (PacketError, ModelMismatchError) as exc:
            failures += 1
            print(f"{path}: refused: {exc}", file=sys.stderr)
            continue
        for d in frame.detections:
            results.append({"file": str(path), "frame_id": frame.frame_id, "category_id": d.label_id,
                            "label": d.label, "bbox": xywh(d.box), "score": d.score})
        print(f"{path}: width {frame.width}, {frame.num_bytes} bytes, {len(frame.detections)} detections")
        if args.masks:
            Path(args.masks).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(Path(args.masks) / (Path(path).stem + "_mask.png")), frame.mask)
        if args.images:
            src = Path(args.images) / (Path(path).stem + ".png")
            if src.is_file():
                Path(args.annotated).mkdir(parents=True, exist_ok=True)
                vis = draw_detections(_read_rgb(src), frame.detections)
                cv2.imwrite(str(Path(args.annotated) / src.name), cv2.cvtColor(vis, cv2.COLOR_RGB2BGR))
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {len(results)} detections to {args.out}; {failures} packet(s) refused")
    return 1 if failures else 0


def cmd_eval(args) -> int:
    from .evaluation.evaluate import evaluate_split, evaluate_teacher
    from .evaluation.report import format_table, machine_info
    from .offboard.decoder import OffboardDecoder
    from .onboard.encoder import OnboardEncoder

    _threads(args.threads)
    enc, dec = OnboardEncoder(args.model), OffboardDecoder(args.model)
    if dec.cfg.teacher:
        model = f" --model {args.model}" if args.model else ""
        raise ConfigError(f"eval scores a model of the synthetic teacher (`--model synthetic`) on labelled scenes; "
                          f"a model of the teacher {dec.cfg.teacher} is measured against its teacher on footage: "
                          f"`split-perception bench rate-accuracy{model}` or `eval-bag BAG{model}`")
    res = {"teacher": evaluate_teacher(dec.model.teacher, args.data, args.max_images)}
    res.update({str(w): r for w, r in evaluate_split(enc, dec, args.data, max_images=args.max_images).items()})
    print(format_table(res))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"model": args.model or "bundled", "data": args.data,
                                              "machine": machine_info(args.threads), "results": res}, indent=1))
        print(f"wrote {args.out}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args.out, args.seconds, args.trace, args.frames, domain_from(args), args.model, args.video)


def cmd_fuzz(args) -> int:
    from .evaluation.report import command_line, machine_info, markdown_table, write_results
    from .fuzz import FINDINGS, run

    t0 = time.monotonic()
    res = run(args.model, args.cases, args.seed, args.hang_ms, args.max_rss_growth_mib, Path(args.out),
              threads=args.threads, quiet=args.quiet)
    if res["cases"]:
        growth = res["rss_peak_mib"] - res["rss_start_mib"]
        print(f"{res['cases']} inputs (seed {res['seed']}, mutators {res['by_mutator']}): decoded {res['decoded']}, "
              f"refused {res['PacketError']} PacketError + {res['ModelMismatchError']} ModelMismatchError; "
              f"slowest {res['slowest_ms']:.1f} ms; peak RSS {res['rss_peak_mib']:.0f} MiB (+{growth:.0f} during "
              f"the run)")
    for f in res["findings"]:
        print(f"FOUND {FINDINGS[Path(f).name.split('-')[0]]}: {f}", file=sys.stderr)
    failed = bool(res["exit_code"] or res["findings"] or res["cases"] < args.cases)
    row = {"cases": res["cases"], "minutes": (time.monotonic() - t0) / 60, "failed": failed,
           "findings": len(res["findings"]),
           **{k: res.get(k) for k in ("decoded", "PacketError", "ModelMismatchError", "slowest_ms",
                                      "rss_start_mib", "rss_peak_mib")}}
    write_results(args.out, "fuzz", {"command": command_line(args), "machine": machine_info(args.threads),
                                     "by_mutator": res.get("by_mutator")}, [row])
    (Path(args.out) / "table.md").write_text(markdown_table([row], FUZZ_COLUMNS) + "\n")
    if failed:
        print(f"FAILED: libFuzzer exit code {res['exit_code']} after {res['cases']} of {args.cases} inputs; "
              f"inputs that failed are in {args.out}/", file=sys.stderr)
        return 1
    print("crashes 0, timeouts 0, out-of-memory 0")
    return 0


FUZZ_COLUMNS = [("cases", "inputs", "d"), ("minutes", "minutes", ".1f"), ("findings", "crashes, hangs, OOM", "d"),
                ("decoded", "still decoded", "d"), ("PacketError", "refused: PacketError", "d"),
                ("ModelMismatchError", "refused: ModelMismatchError", "d"), ("slowest_ms", "slowest case ms", ".0f"),
                ("rss_start_mib", "RSS at start MiB", ".0f"), ("rss_peak_mib", "peak RSS MiB", ".0f")]


def cmd_make_bag(args) -> int:
    from .data.bags import ground_truth_path, write_sample_bag

    if args.video:
        return _make_bag_from_video(args)
    fps = 10.0 if args.fps is None else args.fps
    path = write_sample_bag(args.out, frames=args.frames, seed=args.seed, size=(args.height, args.width),
                            fps=fps, storage=args.storage, image_format=args.image_format)
    print(f"wrote {args.frames} {args.image_format} frames to {path} ({args.storage}); "
          f"ground truth: {ground_truth_path(path)}")
    return 0


def _make_bag_from_video(args) -> int:
    """A clip replayed as a camera bag: its frames at its own frame rate (or --fps), no ground truth."""
    from .data.bags import write_image_bag
    from .data.footage import iter_frames, video_fps

    frames = iter_frames(args.video, max_frames=args.max_frames)  # a missing path fails here, first
    fps = args.fps or video_fps(args.video)
    if fps is None:
        raise ConfigError(f"{args.video} declares no frame rate; pass --fps")
    count = write_image_bag(args.out, _progress(frames, every=100), fps=fps, storage=args.storage,
                            image_format=args.image_format)
    print(f"wrote {count} {args.image_format} frames of {args.video} at {fps:g} fps to {args.out} ({args.storage})")
    return 0


def _progress(frames, every: int):
    """Pass frames through, printing a count every `every` of them (long clips take a while)."""
    for i, frame in enumerate(frames, 1):
        yield frame
        if i % every == 0:
            print(f"  {i} frames", flush=True)


def _one_line_error(run, args) -> int:
    """Run a bag command; a bag that is missing, unreadable or has no such topic is one `[ERROR]` line, exit 2."""
    try:
        return run(args)
    except SplitPerceptionError as exc:
        print("[ERROR] " + " ".join(str(exc).split()), file=sys.stderr)
        return 2


def cmd_eval_bag(args) -> int:
    from .evaluation.bag_eval import run

    return _one_line_error(run, args)


def cmd_decode_bag(args) -> int:
    from .evaluation.feature_bag import run

    return _one_line_error(run, args)


def cmd_fleet_certs(args) -> int:
    from .security.certs import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="split-perception", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("info", help="widths, input size, fingerprint, bytes/frame per width")
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("--seed", type=int, default=0, help="seed of the synthetic sample frame")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("make-dataset", help="render a synthetic COCO-format dataset (boxes + masks)")
    s.add_argument("out", help="output folder (gets images/ and annotations.json)")
    s.add_argument("-n", "--num-images", type=int, default=200)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--height", type=int, default=240)
    s.add_argument("--width", type=int, default=320)
    s.add_argument("--style", choices=["default", "hard"], default="default",
                   help="hard: smaller and more numerous objects, clutter, textured backgrounds, motion blur")
    s.set_defaults(func=cmd_make_dataset)

    s = sub.add_parser("train", help="train the teacher or the student from a YAML config (resumes)")
    s.add_argument("--config", required=True, help="YAML with model: and train: sections (see recipes/)")
    s.add_argument("--output-dir", dest="output_dir", help="override train.output_dir")
    s.add_argument("--epochs", type=int, help="override train.epochs")
    s.add_argument("--seed", type=int, help="override train.seed")
    s.add_argument("--max-train-images", dest="max_train_images", type=int, help="override train.max_train_images")
    s.add_argument("--device", choices=DEVICES, help="override train.device: auto = CUDA when available "
                   "(bfloat16 autocast there), else CPU")
    s.add_argument("--workers", dest="num_workers", type=int, help="override train.num_workers (DataLoader processes)")
    s.add_argument("--threads", dest="num_threads", type=int, help="override train.num_threads (CPU threads)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("refit-entropy", help="refit a trained student's entropy models to its frozen encoder's "
                                             "bottlenecks (the last training step: fewer bytes, same content)")
    s.add_argument("--model", required=True, help="student checkpoint (.pt)")
    s.add_argument("--out", required=True, help="output checkpoint (.pt)")
    s.add_argument("--data", default="data/synthetic/train", help="COCO-format training images")
    s.add_argument("--images", type=int, default=1000, help="images to fit on (the last 10%% only measure bytes)")
    s.add_argument("--steps", type=int, default=2000, help="Adam steps per width (0: keep the densities, only count the "
                                                                "symbols per context)")
    s.add_argument("--lr", type=float, default=1e-3, help="learning rate of the densities (cosine decay)")
    s.add_argument("--gain", type=width_factor, action="append", default=[], metavar="W=F",
                   help="first move width W along the rate axis: its gain times F (finer quantization, more "
                        "bytes, for F > 1), its decoder's input times 1/F; repeatable")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_refit_entropy)

    s = sub.add_parser("encode", help="images -> packet files (.spf), as the onboard encoder does")
    s.add_argument("images", nargs="+")
    s.add_argument("--width", type=float, default=1.0, help="one of the model's widths (default 1.0)")
    s.add_argument("-o", "--out", default="packets", help="output folder")
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--runtime", choices=RUNTIMES, default="auto",
                   help="onnx (the model's onboard export), torch, or auto (onnx when the export is there)")
    s.set_defaults(func=cmd_encode)

    s = sub.add_parser("import-teacher", help="an ONNX detector as a teacher: cut at a named tensor, checked, "
                                              "written as a folder that model.teacher names")
    s.add_argument("model", help="ONNX detector")
    s.add_argument("--split", required=True, help="name of the tensor to cut at (onboard front | offboard tail); "
                                                  "a wrong name lists the tensors where one cut works")
    s.add_argument("--like", default="nanodet_g", help="teacher.yaml (or a bundled teacher's name) whose input, head "
                                                       "family and head parameters this detector shares")
    s.add_argument("--classes", help="class names, one per line (default: those of --like)")
    s.add_argument("--name", help="teacher name (default: the model file's)")
    s.add_argument("--out", required=True, help="folder to write (model.onnx, classes.txt, teacher.yaml, student.yaml)")
    s.set_defaults(func=cmd_import_teacher)

    s = sub.add_parser("export-onboard", help="checkpoint -> ONNX encoder per width + entropy tables (torch-free "
                                              "onboard runtime)")
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("--out", help="output folder (default: beside the checkpoint, <name>.onboard/, where "
                                 "runtime 'auto' finds it)")
    s.set_defaults(func=cmd_export_onboard)

    s = sub.add_parser("decode", help="packet files -> COCO-style detections json (+ masks, annotated images)")
    s.add_argument("packets", nargs="+")
    s.add_argument("-o", "--out", default="results.json")
    s.add_argument("--masks", help="folder for class-id mask PNGs")
    s.add_argument("--images", help="folder with the source images (same stem, .png) to annotate")
    s.add_argument("--annotated", default="annotated", help="folder for annotated images (with --images)")
    s.add_argument("--score-thresh", type=float, default=None, help="default: the model's")
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("--threads", type=int, default=2)
    s.set_defaults(func=cmd_decode)

    s = sub.add_parser("eval", help="per-width mAP, mIoU and real bytes/frame on a COCO-format dataset")
    s.add_argument("--data", default="data/synthetic/val", help="dataset folder (annotations.json + images/)")
    s.add_argument("--max-images", type=int, default=0, help="0 = all")
    s.add_argument("--out", help="write the results as JSON here")
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("--threads", type=int, default=2)
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("demo", help="the whole ROS loop over DDS: bag -> encoder -> emulated link -> decoder")
    s.add_argument("--seconds", type=float, default=40.0, help="how long to record")
    s.add_argument("--trace", help="link bandwidth: bits/s, 'steps:3e6@0,0.06e6@12,...' or a CSV "
                                   "(default: config/link_emulator.yaml's steps)")
    s.add_argument("--frames", type=int, default=100, help="frames of the clip (or synthetic frames) in the bag, "
                                                             "played in a loop")
    s.add_argument("--video", help="the clip to play (a video file, image folder or camera bag), scored against "
                                   "the teacher, as it has no ground truth (default: the held-out street clip of "
                                   "`make footage`; for the synthetic model, synthetic frames with ground truth)")
    s.add_argument("--out", default="out/demo", help="folder for the bag, logs, plot, annotated frames")
    s.add_argument("--domain-id", type=int, help=DOMAIN_HELP)
    s.add_argument("--model", help=MODEL_HELP)
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("make-bag", help="write a rosbag2 of synthetic camera frames, ground truth beside it; "
                                        "or of a real clip's frames (--video)")
    s.add_argument("out", help="bag folder to create")
    s.add_argument("--video", help="a clip (any video OpenCV reads, an image folder or a camera bag) instead of "
                                   "synthetic frames; no ground truth")
    s.add_argument("--max-frames", dest="max_frames", type=int, default=0, help="with --video: 0 = all frames")
    s.add_argument("--frames", type=int, default=60, help="synthetic frames")
    s.add_argument("--fps", type=float, help="frame rate of the bag (default: the clip's, synthetic 10)")
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--height", type=int, default=480)
    s.add_argument("--width", type=int, default=640)
    s.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    s.add_argument("--image-format", choices=("rgb8", "jpeg", "png"), default="rgb8",
                   help="sensor_msgs/Image rgb8, or CompressedImage (JPEG q95 / PNG) on <topic>/compressed")
    s.set_defaults(func=cmd_make_bag)

    s = sub.add_parser("eval-bag", help="any camera bag: bytes/frame, encode ms and accuracy lost per width, "
                                        "against JPEG (no ROS needed)")
    s.add_argument("bag", help="rosbag2 folder (mcap or sqlite3), a bare .mcap or .db3 file")
    s.add_argument("--topic", help="camera topic (Image or CompressedImage); needed when the bag has several")
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("--out", help="output folder (default: out/eval_bag/<bag name>)")
    s.add_argument("--max-frames", dest="max_frames", type=int, default=0, help="0 = all frames")
    s.add_argument("--annotate", type=int, default=4, help="annotated frames to write (teacher | each width)")
    s.add_argument("--score-thresh", type=float, default=None,
                   help="teacher detections at or above this score are the reference (default: the model's)")
    s.add_argument("--threads", type=int, default=2)
    s.set_defaults(func=cmd_eval_bag)

    s = sub.add_parser("decode-bag", help="a bag of EncodedFeatures messages -> COCO-style detections json "
                                          "(no ROS needed)")
    s.add_argument("bag", help="rosbag2 folder (as `ros2 bag record /features` writes it) or a bare .mcap/.db3")
    s.add_argument("-o", "--out", default="results.json")
    s.add_argument("--topic", help="EncodedFeatures topic; needed when the bag has several")
    s.add_argument("--score-thresh", type=float, default=None, help="default: the model's")
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("--threads", type=int, default=2)
    s.set_defaults(func=cmd_decode_bag)

    s = sub.add_parser("fuzz", help="coverage-guided fuzzing (atheris) of the offboard decoder: no crash, hang or "
                                    "memory growth")
    s.add_argument("--cases", type=int, default=100_000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--hang-ms", type=float, default=2000.0, help="a case slower than this counts as a hang")
    s.add_argument("--max-rss-growth-mib", type=float, default=512.0,
                   help="libFuzzer's memory limit: resident memory after loading the model plus this")
    s.add_argument("--out", default="fuzz_findings", help="folder for the corpus, counts, failing inputs and the "
                                                         "run's summary (fuzz.json, table.md)")
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--quiet", action="store_true", help="libFuzzer's progress lines to OUT/libfuzzer.log")
    s.set_defaults(func=cmd_fuzz)

    s = sub.add_parser("fleet-certs", help="a fleet CA and certificates for the server and each robot (mutual "
                                           "TLS of the Zenoh bridge); keys written with mode 0600")
    s.add_argument("out", help="folder of the fleet's certificates (ca.pem/ca.key made there once, then reused)")
    s.add_argument("--robots", nargs="*", default=[], help="robot names = their ROS namespaces, e.g. r1 r2")
    s.add_argument("--server", help="the server's identity (certificate name), e.g. server")
    s.add_argument("--host", action="append", help="a name or address robots connect to the server by "
                                                     "(repeat for several); goes into its certificate")
    s.add_argument("--days", type=int, default=825, help="validity of the server's and robots' certificates")
    s.add_argument("--ca-days", type=int, default=3650, help="validity of a new CA")
    s.set_defaults(func=cmd_fleet_certs)

    from .bench.cli import add_parsers

    add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SplitPerceptionError, TimeoutError) as exc:
        print(f"split-perception {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

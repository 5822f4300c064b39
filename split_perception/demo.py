"""The no-ROS demo: synthetic frames -> onboard encode -> packet bytes -> offboard decode, per width.

Prints bytes/frame, latency and accuracy per width next to the teacher on raw frames and to
JPEG sizes of the same frames, and writes annotated frames to the output folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from .data.synthetic import make_dataset
from .evaluation.evaluate import evaluate_split, evaluate_teacher
from .evaluation.report import format_table
from .offboard import OffboardDecoder
from .onboard import OnboardEncoder
from .visualize import draw_detections


def jpeg_sizes(image_dir: Path, qualities=(95, 75)) -> dict[int, float]:
    """Mean JPEG bytes of the frames at each quality (what compressed_image_transport would send)."""
    files = sorted(image_dir.glob("*.png"))
    out = {}
    for q in qualities:
        sizes = [len(cv2.imencode(".jpg", cv2.imread(str(f)), [cv2.IMWRITE_JPEG_QUALITY, q])[1]) for f in files]
        out[q] = float(np.mean(sizes))
    return out


def run_demo(model_path, frames: int, out_dir: str, seed: int) -> int:
    out = Path(out_dir)
    enc, dec = OnboardEncoder(model_path), OffboardDecoder(model_path)
    h, w = 480, 640  # camera-sized frames; the onboard side resizes to the model's input
    print(f"rendering {frames} synthetic {w}x{h} frames (seed {seed}) ...")
    make_dataset(out / "frames", frames, seed=seed, size=(h, w), class_names=tuple(enc.cfg.class_names),
                 progress=False)
    results = {"teacher": evaluate_teacher(enc.model.teacher, out / "frames", progress=False)}
    results.update({str(k): v for k, v in evaluate_split(enc, dec, out / "frames", progress=False).items()})
    print(format_table(results))
    raw = h * w * 3
    jpeg = jpeg_sizes(out / "frames" / "images")
    print(f"\nsame frames as rgb8 Image: {raw} bytes; JPEG q95: {jpeg[95]:.0f} bytes; JPEG q75: {jpeg[75]:.0f} bytes")
    widest = results[str(enc.widths[-1])]["bytes_mean"]
    print(f"width 1.0 sends {jpeg[75] / widest:.1f}x fewer bytes than JPEG q75 and {raw / widest:.0f}x fewer than raw")
    annotated = out / "annotated"
    annotated.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(sorted((out / "frames" / "images").glob("*.png"))[:4]):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        for width in (enc.widths[0], enc.widths[-1]):
            enc.set_width(width)
            frame = dec.decode(enc.encode(rgb, frame_id=i))
            vis = draw_detections(rgb, frame.detections, frame.mask)
            cv2.imwrite(str(annotated / f"{path.stem}_w{width:.2f}.png"), cv2.cvtColor(vis, cv2.COLOR_RGB2BGR))
    (out / "results.json").write_text(json.dumps({"results": results, "jpeg_bytes": jpeg, "raw_bytes": raw}, indent=1))
    print(f"annotated frames in {annotated}/, numbers in {out / 'results.json'}")
    return 0

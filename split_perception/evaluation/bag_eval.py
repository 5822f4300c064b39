"""`split-perception eval-bag`: what each width would cost and lose on the frames of any camera bag.

Every frame goes through the real path (OnboardEncoder.encode -> packet bytes -> OffboardDecoder.decode)
at every width, and as JPEG q95/q75 at the camera's resolution (what compressed_image_transport sends).
The reference is the bag's COCO ground truth when one lies beside it (`<bag>.ground_truth.json`,
image ids matched through header stamps) and names the model's classes, and always the teacher (the
same network without the bottleneck) on the uncompressed frame: detection agreement is the COCO mAP
of a method's detections against the teacher's confident detections taken as ground truth, mask
agreement the mIoU of its mask against the teacher's.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from pycocotools.coco import COCO
from tqdm import tqdm

from ..data.bags import BagError, ground_truth_path, read_images
from ..data.coco import load_coco
from ..data.image_codecs import decode_image, encode_image
from ..data.image_messages import encoding_of, message_to_rgb
from ..errors import ConfigError, ImageError
from ..offboard.decoder import Detection, OffboardDecoder
from ..offboard.visualize import draw_detections
from ..onboard.encoder import OnboardEncoder
from ..stamps import stamp_ns
from .evaluate import EVAL_SCORE_THRESH
from .metrics import ConfusionMatrix, coco_map, coco_results, semantic_truth, xywh
from .report import command_line, log_kb_axis, machine_info, markdown_table, write_results

JPEG_QUALITIES = (95, 75)  # compressed_image_transport's default and a common lower setting
PANEL_WIDTH = 320  # annotated frames: each panel scaled to this width


def default_out(bag: str | Path) -> Path:
    """out/eval_bag/<bag name> (absolute), the bag name without a .mcap/.db3 suffix."""
    bag = Path(bag)
    return (Path("out/eval_bag") / (bag.stem if bag.suffix in (".mcap", ".db3") else bag.name)).resolve()


def detections_coco(image_ids: list[int], detections: list[list[Detection]], sizes: list[tuple[int, int]],
                    category_names) -> COCO:
    """Detections (one list per image) as a COCO ground-truth object: the reference for agreement."""
    anns = []
    for image_id, dets in zip(image_ids, detections):
        for d in dets:
            x, y, w, h = xywh(d.box)
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": d.label_id,
                         "bbox": [x, y, w, h], "area": max(0.0, w * h), "iscrowd": 0})
    gt = COCO()
    gt.dataset = {"images": [{"id": i, "height": h, "width": w} for i, (h, w) in zip(image_ids, sizes)],
                  "annotations": anns, "categories": [{"id": k + 1, "name": n} for k, n in enumerate(category_names)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


@dataclass
class Method:
    """What one method (teacher, a width, a JPEG quality) produced over the bag's frames."""

    name: str
    setting: str
    width: float | None = None
    quality: int | None = None  # JPEG quality
    sizes: list[int] = field(default_factory=list)
    encode_s: list[float] = field(default_factory=list)
    detections: list[list[Detection]] = field(default_factory=list)
    mask_agreement: ConfusionMatrix | None = None
    truth_results: list[dict] = field(default_factory=list)
    truth_masks: ConfusionMatrix | None = None


class GroundTruth:
    """The bag's COCO ground truth; frames are matched to its images through header stamps."""

    def __init__(self, path: Path):
        self.path = path
        self.coco = load_coco(path)
        self.by_stamp = {im["stamp_ns"]: im["id"] for im in json.loads(path.read_text())["images"] if "stamp_ns" in im}
        self.cat_ids = sorted(self.coco.getCatIds())
        self.label_of = {c: k + 1 for k, c in enumerate(self.cat_ids)}
        self.class_names = [self.coco.cats[c]["name"] for c in self.cat_ids]


class _Picker:
    """Keeps about `count` frames spread over a stream of unknown length (every s-th, s doubling)."""

    def __init__(self, count: int):
        self.count, self.stride, self.kept = count, 1, []

    def wants(self, index: int) -> bool:
        return self.count > 0 and index % self.stride == 0

    def keep(self, index: int, item) -> None:
        self.kept.append((index, item))
        if len(self.kept) >= 2 * self.count:
            self.stride *= 2
            self.kept = [(i, x) for i, x in self.kept if i % self.stride == 0]

    def picked(self) -> list:
        if len(self.kept) <= self.count:
            return list(self.kept)
        return [self.kept[int(i)] for i in np.linspace(0, len(self.kept) - 1, self.count).round()]


def _panel(rgb: np.ndarray, dets: list[Detection], mask: np.ndarray, title: str, thresh: float) -> np.ndarray:
    vis = draw_detections(rgb, [d for d in dets if d.score >= thresh], mask)
    scale = PANEL_WIDTH / vis.shape[1]
    vis = cv2.resize(vis, (PANEL_WIDTH, max(1, round(vis.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    cv2.putText(vis, title, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 2, cv2.LINE_AA)
    cv2.putText(vis, title, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return vis


class BagEvaluation:
    """Runs the teacher, every width and the JPEG baselines on each frame and accumulates the results."""

    def __init__(self, model_path=None, annotate: int = 4, score_thresh: float | None = None):
        self.enc, self.dec = OnboardEncoder(model_path), OffboardDecoder(model_path)
        self.cfg = self.enc.cfg
        self.teacher = self.dec.model.teacher
        self.masks = self.teacher.has_segmentation  # mask agreement only for a model that segments
        # the reference: the teacher's detections the decoder node would publish (its score threshold)
        self.ref_thresh = self.cfg.score_thresh if score_thresh is None else score_thresh
        self.label_ids = list(range(1, len(self.cfg.class_names) + 1))  # agreement: category id = label id
        self.picker = _Picker(annotate)

    def run(self, bag: Path, topic: str | None, max_frames: int, progress: bool) -> dict:
        gt_file = ground_truth_path(bag)
        truth = GroundTruth(gt_file) if gt_file.is_file() else None
        ignored = None  # a ground truth of other classes (synthetic shapes, for a COCO model) scores nothing
        if truth is not None and truth.class_names != list(self.cfg.class_names):
            ignored, truth = f"{gt_file} names other classes ({', '.join(truth.class_names[:5])}) than the model", None
        classes = self.cfg.num_classes + 1
        methods = [Method("teacher", "uncompressed frame")]
        methods += [Method("ours", f"w={w:g}", width=w) for w in self.enc.widths]
        methods += [Method("jpeg", f"q{q}", quality=q) for q in JPEG_QUALITIES]
        for m in methods:
            m.mask_agreement = ConfusionMatrix(classes)
            m.truth_masks = ConfusionMatrix(classes) if truth else None
        frame_ids, sizes, truth_ids = [], [], []
        encodings, skipped, errors = Counter(), Counter(), {}
        topic_read, stopped, resolution = None, None, Counter()
        items = read_images(bag, topic, first_topic=False)
        first = next(items, None)  # a missing bag or topic fails here, before any progress bar
        saved = self.teacher.score_thresh
        self.teacher.score_thresh = EVAL_SCORE_THRESH  # COCO mAP wants the low-score tail too
        bar = None  # opened at the first frame converted: a bag of nothing usable prints only its error
        try:
            for item in itertools.chain([first] if first else [], items):
                topic_read = item.topic
                enc_name = encoding_of(item.msgtype, item.msg)
                encodings[enc_name] += 1
                try:
                    rgb = message_to_rgb(item.msgtype, item.msg)
                except ImageError as exc:
                    skipped[enc_name] += 1
                    errors.setdefault(enc_name, str(exc))
                    continue
                if bar is None:
                    bar = tqdm(total=max_frames or None, desc=f"eval-bag {bag.name}", unit="frame",
                               disable=not progress)
                index = len(frame_ids)
                stamp = stamp_ns(item.msg.header.stamp)
                self._frame(index, stamp, rgb, len(item.msg.data), methods, truth, truth_ids)
                frame_ids.append(index + 1)
                sizes.append(rgb.shape[:2])
                resolution[f"{rgb.shape[1]}x{rgb.shape[0]}"] += 1
                bar.update()
                if max_frames and len(frame_ids) >= max_frames:
                    break
        except BagError as exc:
            if not frame_ids:
                raise
            stopped = str(exc)
        finally:
            if bar is not None:
                bar.close()
            self.teacher.score_thresh = saved
        if not encodings:
            raise BagError(f"{bag}: no camera message{' on ' + topic if topic else ''}")
        if not frame_ids:
            raise BagError(f"{bag}: no frame of {topic_read} could be converted "
                           f"({dict(skipped)}; {'; '.join(errors.values())})")
        ref = [[d for d in dets if d.score >= self.ref_thresh] for dets in methods[0].detections]
        ref_coco = detections_coco(frame_ids, ref, sizes, self.cfg.class_names)
        rows = [self._row(m, ref_coco, frame_ids, truth, truth_ids) for m in methods]
        return {"bag": str(bag), "topic": topic_read, "frames": len(frame_ids), "resolution": dict(resolution),
                "encodings": dict(encodings), "skipped": dict(skipped), "skip_reasons": errors, "stopped": stopped,
                "reference": "ground truth + teacher" if truth else "teacher",
                "ground_truth": str(truth.path) if truth else None, "ground_truth_ignored": ignored,
                "frames_matched_to_ground_truth": len(truth_ids) if truth else None,
                "reference_detections": sum(len(r) for r in ref), "reference_score_thresh": self.ref_thresh,
                "rows": rows}

    def _frame(self, index: int, stamp: int, rgb: np.ndarray, raw_bytes: int, methods: list[Method],
               truth: GroundTruth | None, truth_ids: list[int]) -> None:
        teacher_dets, teacher_mask = self.dec.teacher(rgb)
        outputs = {"teacher": (teacher_dets, teacher_mask, raw_bytes, 0.0)}
        for m in methods[1:]:
            if m.width is not None:
                self.enc.set_width(m.width)
                t0 = time.perf_counter()
                data = self.enc.encode(rgb, frame_id=index, stamp_ns=stamp)
                dt = time.perf_counter() - t0
                frame = self.dec.decode(data)
                outputs[m.setting] = (frame.detections, frame.mask, len(data), dt)
            else:
                t0 = time.perf_counter()
                data = encode_image(rgb, "jpeg", m.quality)
                dt = time.perf_counter() - t0
                dets, mask = self.dec.teacher(decode_image(data))
                outputs[m.setting] = (dets, mask, len(data), dt)
        image_id = truth.by_stamp.get(stamp) if truth else None
        if image_id is not None:
            truth_ids.append(image_id)
            sem = semantic_truth(truth.coco, truth.label_of, image_id, rgb.shape[:2])
        for m in methods:
            dets, mask, nbytes, dt = outputs["teacher" if m.name == "teacher" else m.setting]
            m.detections.append(dets)
            m.sizes.append(nbytes)
            m.encode_s.append(dt)
            if mask is not None:  # a teacher without a segmentation head gives none
                m.mask_agreement.update(teacher_mask, mask)
            if image_id is not None:
                m.truth_results += coco_results(image_id, dets, truth.cat_ids)
                if mask is not None:
                    m.truth_masks.update(sem, mask)
        if self.picker.wants(index):
            panels = [_panel(rgb, d, mk, "teacher" if k == "teacher" else k, self.ref_thresh)
                      for (k, (d, mk, _, _)), m in zip(outputs.items(), methods) if m.quality is None]
            self.picker.keep(index, np.concatenate(panels, axis=1))

    def _row(self, m: Method, ref_coco: COCO, frame_ids: list[int], truth: GroundTruth | None,
             truth_ids: list[int]) -> dict:
        has_ref = bool(ref_coco.dataset["annotations"])
        results = [r for i, dets in zip(frame_ids, m.detections) for r in coco_results(i, dets, self.label_ids)]
        agree = coco_map(ref_coco, results, frame_ids) if has_ref else {"map": None, "map50": None}
        row = {"method": m.name, "setting": m.setting, "width": m.width,
               "bytes_mean": float(np.mean(m.sizes)), "bytes_p95": float(np.percentile(m.sizes, 95)),
               "encode_ms": None if m.name == "teacher" else 1000 * float(np.median(m.encode_s)),
               "det_agreement": agree["map"], "det_agreement50": agree["map50"],
               "mask_agreement": m.mask_agreement.miou() if self.masks else None}
        if truth is not None:
            ids = sorted(set(truth_ids))
            acc = coco_map(truth.coco, m.truth_results, ids) if ids else {"map": None, "map50": None}
            row.update({"map": acc["map"], "map50": acc["map50"],
                        "miou": m.truth_masks.miou() if ids and self.masks else None})
        return row

    def annotated(self) -> list[tuple[int, np.ndarray]]:
        return self.picker.picked()


COLUMNS = [("method", "method", ""), ("setting", "setting", ""), ("bytes_mean", "bytes/frame (mean)", ".0f"),
           ("bytes_p95", "bytes p95", ".0f"), ("encode_ms", "encode ms (median)", ".1f"),
           ("det_agreement", "det. agreement (mAP vs teacher)", ".3f"),
           ("det_agreement50", "agreement mAP@.5", ".3f"), ("mask_agreement", "mask agreement (mIoU)", ".3f")]
TRUTH_COLUMNS = [("map", "mAP@[.5:.95] (ground truth)", ".3f"), ("map50", "mAP@.5", ".3f"),
                 ("miou", "mIoU (ground truth)", ".3f")]


def plot(path: Path, rows: list[dict], title: str) -> None:
    """Bytes/frame (log) against detection and mask agreement with the teacher."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, key, label in ((axes[0], "det_agreement", "detection agreement (mAP vs teacher)"),
                           (axes[1], "mask_agreement", "mask agreement (mIoU vs teacher)")):
        for method, style, name in (("ours", "o-C3", "ours (per width)"), ("jpeg", "s-C0", "JPEG (camera size)")):
            pts = sorted((r["bytes_mean"] / 1000, r[key], r["setting"]) for r in rows
                         if r["method"] == method and r[key] is not None)
            if pts:
                x, y, names = zip(*pts)
                ax.plot(x, y, style, label=name)
                for xi, yi, n in pts:
                    ax.annotate(n, (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=7)
        log_kb_axis(ax, "KB/frame (mean, log scale)")
        ax.set_ylabel(label)
        ax.set_ylim(0, 1.05)
        ax.grid(True, which="both", alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args) -> int:
    """The `eval-bag` command: evaluate, print the table, write JSON/CSV/markdown/plot/annotated frames."""
    torch.set_num_threads(args.threads)
    bag = Path(args.bag)
    if not bag.exists():
        raise BagError(f"bag not found: {bag}")
    out = Path(args.out).resolve() if args.out else default_out(bag)
    t0 = time.perf_counter()
    if args.max_frames < 0 or args.annotate < 0 or args.threads < 1:
        raise ConfigError("--max-frames and --annotate must be >= 0, --threads >= 1")
    ev = BagEvaluation(args.model, args.annotate, args.score_thresh)
    res = ev.run(bag, args.topic, args.max_frames, progress=True)
    rows = res.pop("rows")
    columns = COLUMNS + (TRUTH_COLUMNS if res["ground_truth"] else [])
    table = markdown_table(rows, columns)
    skipped = ", ".join(f"{n} {e}" for e, n in res["skipped"].items()) or "none"
    res_text = ", ".join(res["resolution"])
    text = (f"eval-bag `{bag.name}`: {res['frames']} frames of {res['topic']} ({res_text}; encodings "
            f"{res['encodings']}; skipped: {skipped}), model {args.model or 'bundled'}. Reference: "
            f"{res['reference']} (teacher detections with score >= {res['reference_score_thresh']:g}: "
            f"{res['reference_detections']}). Bytes: ours the packet, JPEG the frame at camera size, the teacher's "
            f"row the bag's message data.\n\n{table}\n")
    if res["stopped"]:
        text += f"\nThe bag is damaged: stopped after {res['frames']} frames: {res['stopped']}\n"
    if res["ground_truth_ignored"]:
        text += f"\nThe ground truth beside the bag is not used: {res['ground_truth_ignored']}.\n"
    if res["reference_detections"] == 0:
        text += "\nThe teacher detected nothing on these frames: detection agreement is undefined (-).\n"
    out.mkdir(parents=True, exist_ok=True)
    files = write_results(out, "eval_bag", {"command": command_line(args), "machine": machine_info(args.threads),
                                            "model": args.model or "bundled", **res,
                                            "seconds": time.perf_counter() - t0}, rows)
    (out / "table.md").write_text(text)
    plot(out / "bytes_agreement.png", rows, f"eval-bag {bag.name}: {res['frames']} frames, model "
                                            f"{args.model or 'bundled'}")
    frames_dir = out / "annotated"
    frames_dir.mkdir(exist_ok=True)
    for index, image in ev.annotated():
        cv2.imwrite(str(frames_dir / f"frame{index:06d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    print(text)
    print("wrote " + ", ".join(str(f) for f in [*files, out / "table.md", out / "bytes_agreement.png", frames_dir]))
    return 0

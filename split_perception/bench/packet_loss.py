"""`bench loss`: what lost packets cost our temporal stream and an H.264 stream at the same mean bitrate.

Each held-out clip is played at `--fps`. Per width, our stream is what the encoder node sends with
temporal coding on (ONNX Runtime): each frame coded against the newest frame the decoder has
acknowledged, acknowledgements arriving `--lag` frames late (a round trip), a keyframe when none is
recent. Beside it, H.264 as ffmpeg_image_transport streams it (libx264, preset veryfast, tune
zerolatency, a keyframe every `--gop` frames, no B-frames) with its `bit_rate` set to the mean bitrate of
our lossless stream at that width; x264 gets the frame at the teacher's input size (the letterbox content,
as in `bench rate-accuracy --video`).

Then every packet is lost with probability `--loss` (each value in turn; one seeded draw per clip and
loss, the same for both methods and every width): whole messages lost independently, the link
emulator node's loss process. Our decoder (`OffboardDecoder`, the node's) decodes what arrives in
order; a frame whose reference it lacks is refused and counted, which the acknowledgements prevent.
libavcodec decodes what arrives of the H.264 stream in order; after a lost packet it shows frames
predicted from a reference it lacks (concealed, damaged) until the next keyframe, or none.

Per frame, its detections (score >= the decoder's threshold) are matched to the teacher's on the
original frame (same class, IoU >= 0.5, greedy by score): F1, 1 when both are empty. A frame
agrees when F1 >= `--agree-f1`; a frame lost or not shown counts as not agreeing among all frames.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..codec.packet import parse
from ..codec.temporal import ReferenceStore
from ..errors import ConfigError, PacketError
from ..evaluation.report import command_line, machine_info, markdown_table, write_results
from ..offboard.decoder import Detection, OffboardDecoder
from ..onboard.encoder import OnboardEncoder
from ..onboard.temporal import TemporalEncoder
from ..teachers.detections import box_iou
from . import rate_accuracy_real as real
from .rate_accuracy_video import CODECS, decode_packets, encode_clip, frames_at, import_av

IOU = 0.5


def frame_f1(dets: list[Detection], reference: list[Detection]) -> float:
    """F1 of one frame's detections against the reference's at IoU >= 0.5, same class, matched greedily
    by score; 1.0 when both are empty."""
    if not dets and not reference:
        return 1.0
    unmatched = list(range(len(reference)))
    ref_boxes = np.array([r.box for r in reference], dtype=np.float64).reshape(-1, 4)
    tp = 0
    for d in sorted(dets, key=lambda d: -d.score):
        same = [j for j in unmatched if reference[j].label_id == d.label_id]
        if not same:
            continue
        ious = box_iou(np.array(d.box, dtype=np.float64), ref_boxes[same])
        best = int(np.argmax(ious))
        if ious[best] >= IOU:
            tp += 1
            unmatched.remove(same[best])
    return 2 * tp / (len(dets) + len(reference))


def shown_detections(dec: OffboardDecoder, dets: list[Detection]) -> list[Detection]:
    """What the decoder node publishes of `dets`: those at or above its score threshold."""
    return [d for d in dets if d.score >= dec.cfg.score_thresh]


def ours_stream(runtime: OnboardEncoder, dec: OffboardDecoder, frames: list[np.ndarray], lost: np.ndarray,
                lag: int) -> dict:
    """Our temporal stream at the runtime's width through a link that loses the packets `lost` marks:
    bytes sent, and per frame the detections decoded (None: lost or refused)."""
    encoder, dec.references = TemporalEncoder(runtime), ReferenceStore()
    acks: list[tuple[int, tuple]] = []  # (frame before which it arrives, acknowledgement)
    sent, refused, shown = 0, 0, []
    for k, rgb in enumerate(frames, 1):
        while acks and acks[0][0] <= k:
            encoder.acknowledge(*acks.pop(0)[1])
        data = encoder.encode(rgb, k)
        sent += len(data)
        if lost[k - 1]:
            shown.append(None)
            continue
        try:
            decoded = dec.decode(data, with_mask=False)
        except PacketError:
            refused += 1
            shown.append(None)
            continue
        packet = parse(data)
        acks.append((k + 1 + lag, (packet.stream_id, packet.frame_id, packet.width_index)))
        shown.append(shown_detections(dec, decoded.detections))
    return {"bytes": sent / len(frames), "refused": refused, "shown": shown}


def h264_stream(dec: OffboardDecoder, frames: list[np.ndarray], size: tuple[int, int], packets: list,
                lost: np.ndarray) -> dict:
    """The H.264 `packets` of `frames` (coded at `size`, h x w) through the same losses: per frame the
    teacher's detections on the frame libavcodec shows (None: not shown)."""
    seen = decode_packets(CODECS["x264"], [p for p, gone in zip(packets, lost) if not gone], size)
    shown = []
    for k, rgb in enumerate(frames):
        if k not in seen:
            shown.append(None)
            continue
        dets, _ = dec.teacher(seen[k])
        shown.append(shown_detections(dec, real.scaled_back(dets, rgb, seen[k])))
    return {"bytes": sum(p.size for p in packets) / len(frames), "refused": 0, "shown": shown}


def scores(shown: list, reference: list[list[Detection]], agree_f1: float) -> dict:
    """Delivered frames, and the share agreeing with the teacher among them and among all frames."""
    f1 = [None if s is None else frame_f1(s, ref) for s, ref in zip(shown, reference)]
    got = [v for v in f1 if v is not None]
    agree = sum(v >= agree_f1 for v in got)
    return {"delivered": len(got), "agree_delivered": agree / len(got) if got else None,
            "agree_all": agree / len(f1), "f1_delivered": float(np.mean(got)) if got else None}


def measure_clip(clip: Path, runtime: OnboardEncoder, dec: OffboardDecoder, args, losses: list[float],
                 progress: bool) -> list[dict]:
    frames = frames_at(clip, args.fps, args.max_frames)
    if len(frames) < 2:
        raise ConfigError(f"{clip}: fewer than 2 frames at {args.fps:g} fps")
    reference = [shown_detections(dec, dec.teacher(rgb)[0]) for rgb in frames]
    small = [real.letterbox_content(rgb, dec.cfg.input_size) for rgb in frames]
    draws = {p: np.random.default_rng([args.seed, k]).random(len(frames)) < p for k, p in enumerate([0.0, *losses])}
    rows = []
    for w in tqdm(runtime.widths, desc=clip.name, disable=not progress):
        runtime.set_width(w)
        ours = {p: ours_stream(runtime, dec, frames, lost, args.lag) for p, lost in draws.items()}
        bit_rate = 8 * ours[0.0]["bytes"] * args.fps
        packets = encode_clip(CODECS["x264"], small, args.gop, args.fps, bit_rate=round(bit_rate))
        video = {p: h264_stream(dec, frames, small[0].shape[:2], packets, lost) for p, lost in draws.items()}
        for p, lost in draws.items():
            row = {"clip": clip.name, "frames": len(frames), "width": w, "loss": p, "lost": int(lost.sum()),
                   "h264_bit_rate": round(bit_rate)}
            for name, stream in (("ours", ours[p]), ("h264", video[p])):
                row.update({f"{name}_bytes": stream["bytes"], f"{name}_refused": stream["refused"],
                            **{f"{name}_{k}": v for k, v in scores(stream["shown"], reference, args.agree_f1).items()}})
            rows.append(row)
    return rows


COLUMNS = [("clip", "clip", ""), ("width", "width", "g"), ("loss", "loss", ".0%"), ("lost", "lost", "d"),
           ("ours_bytes", "ours B/frame", ".0f"), ("h264_bytes", "H.264 B/frame", ".0f"),
           ("ours_delivered", "ours delivered", "d"), ("h264_delivered", "H.264 shown", "d"),
           ("ours_agree_delivered", "ours agree (delivered)", ".2f"),
           ("h264_agree_delivered", "H.264 agree (shown)", ".2f"),
           ("ours_agree_all", "ours agree (all)", ".2f"), ("h264_agree_all", "H.264 agree (all)", ".2f"),
           ("ours_refused", "ours refused", "d")]


def _losses(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        vals = []
    if not vals or not all(0 < v < 1 for v in vals):
        raise ConfigError(f"--loss must be comma-separated fractions in (0, 1), got {text!r}")
    return vals


def run(args) -> int:
    losses = _losses(args.loss)
    if args.fps <= 0 or args.max_frames < 2 or args.lag < 0 or args.gop < 1 or not 0 < args.agree_f1 <= 1:
        raise ConfigError("--fps must be > 0, --max-frames >= 2, --lag >= 0, --gop >= 1 and --agree-f1 in (0, 1]")
    clips = real.clips(Path(args.footage))
    import_av()  # a clear error before any work when PyAV is missing
    import torch

    torch.set_num_threads(args.threads)
    runtime = OnboardEncoder(args.model, runtime="onnx", threads=args.threads)
    dec = OffboardDecoder(args.model)
    if not dec.cfg.teacher:
        raise ConfigError("bench loss needs a model of an ONNX teacher (agreement with the teacher on real frames)")
    t0, load0, rows = time.monotonic(), os.getloadavg(), []
    for clip in clips:
        rows += measure_clip(clip, runtime, dec, args, losses, progress=True)
    text = "\n".join([
        f"Lost packets on the held-out clips played at {args.fps:g} fps (at most {args.max_frames} frames each), "
        f"model {args.model or 'bundled'} ({runtime.fingerprint[:12]}). Ours: temporal coding, acknowledgements "
        f"{args.lag} frames late. H.264: libx264 veryfast/zerolatency, a keyframe every {args.gop} frames, "
        "`bit_rate` = our lossless stream's mean bitrate at that width (B/frame: what it made). Each packet lost "
        f"with the given probability (seed {args.seed}, the same frames for both). Agree: F1 >= {args.agree_f1:g} "
        f"against the teacher's detections on the original frame (IoU >= {IOU:g}, same class); delivered: "
        "frames decoded (ours) or shown by libavcodec (H.264); all: lost and unshown frames count as disagreeing.",
        "", markdown_table(rows, COLUMNS)])
    print(text)
    payload = {"command": command_line(args), "argv": sys.argv, "machine": machine_info(args.threads),
               "model": args.model or "bundled", "fingerprint": runtime.fingerprint, "fps": args.fps,
               "max_frames": args.max_frames, "lag": args.lag, "gop": args.gop, "losses": losses, "seed": args.seed,
               "agree_f1": args.agree_f1, "iou": IOU, "codec": {"encoder": "libx264", **dict(CODECS["x264"].options)},
               "loadavg_at_start": load0, "loadavg_at_end": os.getloadavg(), "seconds": round(time.monotonic() - t0, 1)}
    out = Path(args.out)
    files = write_results(out, "loss", payload, rows)
    (out / "table.md").write_text(text + "\n")
    print("wrote " + ", ".join(str(p) for p in [*files, out / "table.md"]))
    return 0 if all(r["ours_refused"] == 0 for r in rows) else 1

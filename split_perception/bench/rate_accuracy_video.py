"""`bench rate-accuracy --video`: our packets against the video codecs robot teams stream, on real clips.

Teams that stream a camera over a radio link mostly use ffmpeg_image_transport: H.264 or H.265
through libav, a keyframe every `gop_size` frames (15 by default there), no B-frames, nothing
held back for latency. Here the same consecutive frames of each held-out clip, played at `--fps`,
go through x264 and x265 (preset veryfast, tune zerolatency) and SVT-AV1 (preset 10, low-delay
prediction), each with a keyframe every `--gop` frames and over a sweep of CRF values, and through
each codec as all-intra (every frame a keyframe, decodable alone, as a JPEG is); x265's SEI with its
option string, which libx265 writes into every keyframe (about 2.3 KB), is off (`info=0`). The encoders get
what the JPEG/WebP baselines get: the frame at the teacher's input size (the letterbox content).
Bytes are the sizes of the real packets the encoder produced; the packets are decoded in order by
libavcodec (h264, hevc) and dav1d, and the teacher runs on the decoded frames. Agreement with the
teacher on the original frames and the headline are those of `bench rate-accuracy --footage`
(rate_accuracy_real), with x264, x265 and AV1 beside JPEG, WebP and PCA. PyAV (`av`) carries the
codecs; it is needed by this benchmark only.
"""

from __future__ import annotations

import fractions
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.footage import iter_frames, video_fps
from ..errors import ConfigError
from . import rate_accuracy_real as real
from .equal_accuracy import HEADLINE_COLUMNS, HEADLINE_FAMILIES, HEADLINE_GROUPS

VIDEO_FAMILIES = ("x264", "x265", "av1")
FAMILIES = HEADLINE_FAMILIES + VIDEO_FAMILIES
GROUPS = HEADLINE_GROUPS + (("best_video", VIDEO_FAMILIES),)
COLUMNS = HEADLINE_COLUMNS[:3] + (
    ("x264 bytes", "x264_bytes", ".0f", ""), ("x265 bytes", "x265_bytes", ".0f", ""),
    ("AV1 bytes", "av1_bytes", ".0f", ""),
    ("best video", "best_video_bytes", ".0f", ""), ("best video / ours", "best_video_ratio", ".1f", "x"),
    ("best JPEG/WebP / ours", "best_image_ratio", ".1f", "x"), ("PCA / ours", "pca_ratio", ".2f", "x"))


@dataclass(frozen=True)
class VideoCodec:
    """One encoder as a robot would run it: libav encoder and decoder names, options, CRF range."""

    name: str
    encoder: str
    decoder: str
    options: tuple[tuple[str, str], ...]
    crf_max: int


CODECS = {
    "x264": VideoCodec("x264", "libx264", "h264", (("preset", "veryfast"), ("tune", "zerolatency")), 51),
    "x265": VideoCodec("x265", "libx265", "hevc", (("preset", "veryfast"), ("tune", "zerolatency"),
                                                   ("x265-params", "log-level=error:info=0")), 51),
    # pred-struct=1: low-delay prediction (no frame waits for a later one), SVT-AV1's real-time mode
    "av1": VideoCodec("av1", "libsvtav1", "libdav1d", (("preset", "10"), ("svtav1-params", "pred-struct=1")), 63),
}
CRF_GRID = {"x264": (23, 28, 33, 38, 43, 48), "x265": (28, 33, 38, 43, 48), "av1": (35, 42, 49, 56, 63)}
INTRA_GRID = {"x264": (28, 38, 48), "x265": (33, 43, 51), "av1": (42, 56, 63)}
QUICK_CRF_GRID = {"x264": (33,), "x265": (38,), "av1": (49,)}
QUICK_INTRA_GRID = {"x264": (33,)}


def import_av():
    try:
        import av
    except ImportError:
        raise ConfigError("the video codecs need PyAV (`av`, pinned in requirements.txt): "
                          "pip install -r requirements.txt") from None
    return av


def encode_clip(codec: VideoCodec, frames: list[np.ndarray], gop: int, fps: float, crf: int | None = None,
                bit_rate: int | None = None) -> list:
    """Encode RGB `frames` (one clip, in order) as a stream at a constant quality `crf` or an average
    `bit_rate` (bits/s, as ffmpeg_image_transport's `bit_rate` sets it): the packets in stream order,
    packet k holding frame k (pts k). Odd sizes are padded by repeating the last row/column (4:2:0
    needs even ones)."""
    av = import_av()
    if (crf is None) == (bit_rate is None):
        raise ConfigError(f"{codec.name}: give a crf or a bit_rate")
    if crf is not None and not 0 <= crf <= codec.crf_max or (bit_rate or 1) <= 0 or gop < 1 or fps <= 0:
        raise ConfigError(f"{codec.name}: crf must be in 0..{codec.crf_max}, bit_rate > 0, gop >= 1 and fps > 0, "
                          f"got {crf}, {bit_rate}, {gop}, {fps}")
    h, w = frames[0].shape[:2]
    ph, pw = h + h % 2, w + w % 2
    rate = fractions.Fraction(fps).limit_denominator(1001)
    enc = av.CodecContext.create(codec.encoder, "w")
    enc.width, enc.height, enc.pix_fmt = pw, ph, "yuv420p"
    enc.time_base, enc.framerate = 1 / rate, rate
    enc.gop_size, enc.max_b_frames = gop, 0
    enc.options = {**dict(codec.options), **({"crf": str(crf)} if crf is not None else {})}
    if bit_rate is not None:
        enc.bit_rate = int(bit_rate)
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only on stderr
    packets = []
    for i, rgb in enumerate(frames):
        if rgb.shape[:2] != (h, w):
            raise ConfigError(f"a clip's frames must share one size: {rgb.shape[:2]} after {(h, w)}")
        padded = np.pad(rgb, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(padded), format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        packets += enc.encode(frame)
    packets += enc.encode(None)
    packets.sort(key=lambda p: p.pts)  # no B-frames: already in order; a stream's order is its pts
    if [p.pts for p in packets] != list(range(len(frames))):
        raise ConfigError(f"{codec.name}: {len(frames)} frames gave {len(packets)} packets (one each expected)")
    return packets


def decode_packets(codec: VideoCodec, packets: list, size: tuple[int, int]) -> dict[int, np.ndarray]:
    """Decode `packets` in order as a receiver does (some may be missing: libavcodec conceals what it
    cannot reconstruct, or shows nothing): frame index (pts) -> RGB frame of `size` (h, w) shown."""
    av = import_av()
    dec = av.CodecContext.create(codec.decoder, "r")
    h, w = size
    shown: dict[int, np.ndarray] = {}
    for p in [*packets, None]:
        try:
            frames = dec.decode(p)
        except av.error.FFmpegError:  # a packet it cannot use: nothing shown for it
            continue
        shown.update((f.pts, f.to_ndarray(format="rgb24")[:h, :w]) for f in frames)
    return shown


def code_clip(codec: VideoCodec, frames: list[np.ndarray], crf: int, gop: int, fps: float
              ) -> tuple[list[np.ndarray], list[int], list[bool]]:
    """Encode RGB `frames` (one clip, in order) as a stream, decode it in order: (decoded RGB frames,
    bytes of each frame's packet, which packets are keyframes)."""
    if not frames:
        return [], [], []
    packets = encode_clip(codec, frames, gop, fps, crf=crf)
    shown = decode_packets(codec, packets, frames[0].shape[:2])
    if sorted(shown) != list(range(len(frames))):
        raise ConfigError(f"{codec.name}: {len(frames)} packets gave {len(shown)} decoded frames (one each expected)")
    return [shown[i] for i in range(len(frames))], [p.size for p in packets], [bool(p.is_keyframe) for p in packets]


def frames_at(clip: Path, fps: float, max_frames: int) -> list[np.ndarray]:
    """Consecutive frames of `clip` as a camera at `fps` delivers them: the frame shown at each 1/fps
    step of the clip's own rate (every frame when it declares none or is slower); at most
    `max_frames` (0 = all)."""
    native = video_fps(clip) or fps
    step = max(1.0, native / fps)
    out, next_at = [], 0.0
    for i, rgb in enumerate(iter_frames(clip)):
        if i + 0.5 >= next_at:  # the frame nearest each sampling instant
            out.append(rgb)
            next_at += step
            if max_frames and len(out) >= max_frames:
                break
    return out


def grids(quick: bool) -> list[tuple[str, int, bool]]:
    """(codec, crf, all intra) settings measured."""
    gop, intra = (QUICK_CRF_GRID, QUICK_INTRA_GRID) if quick else (CRF_GRID, INTRA_GRID)
    return [(c, q, False) for c, qs in gop.items() for q in qs] + [(c, q, True) for c, qs in intra.items() for q in qs]


def video_methods(args, settings: list[tuple[str, int, bool]], progress: bool = True):
    """The `more` hook of rate_accuracy_real.measure: every setting over each clip's frames in order."""

    def more(m, dec, frames, labels) -> None:
        by_clip: dict[str, list[int]] = {}
        for k, (clip, _) in enumerate(frames):
            by_clip.setdefault(clip, []).append(k)
        jobs = [(clip, s) for clip in by_clip for s in settings]
        for clip, (name, crf, intra) in tqdm(jobs, desc="video codecs", disable=not progress):
            idx = by_clip[clip]
            small = [real.letterbox_content(frames[k][1], dec.cfg.input_size) for k in idx]
            decoded, sizes, keys = code_clip(CODECS[name], small, crf, 1 if intra else args.gop, args.fps)
            method = f"{name}-intra" if intra else name
            setting = f"crf {crf}, " + ("all intra" if intra else f"GOP {args.gop}")
            extra = {"codec": name, "crf": crf, "gop": 1 if intra else args.gop, "fps": args.fps}
            for k, rgb_small, nbytes, key in zip(idx, decoded, sizes, keys):
                seen, _ = dec.teacher(rgb_small)
                m.add((method, setting), k + 1, real.scaled_back(seen, frames[k][1], rgb_small), nbytes, labels,
                      extra={**extra, "keyframes": m.extra.get((method, setting), {}).get("keyframes", 0) + key})

    return more


TABLE = [("method", "method", ""), ("setting", "setting", ""), ("kb_mean", "KB/frame (mean)", ".2f"),
         ("bytes_p95", "bytes p95", ".0f"), ("map", "agreement mAP@[.5:.95]", ".3f"),
         ("map50", "agreement mAP@.5", ".3f")]


def run(args) -> int:
    if args.fps <= 0 or args.gop < 1 or args.max_images < 0 or args.fit_images < 1 or args.threads < 1:
        raise ConfigError("--video: --fps must be > 0, --gop >= 1, --max-images >= 0, --fit-images and --threads >= 1")
    if args.baselines:
        raise ConfigError("--baselines is not supported with --video (every method is measured on the same frames)")
    import_av()
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    frames = [(clip.name, rgb) for clip in real.clips(Path(args.footage))
              for rgb in frames_at(clip, args.fps, args.max_images)]
    rows, info = real.measure(args, frames=frames, more=video_methods(args, grids(args.quick)))
    per_clip = {c: sum(1 for n, _ in frames if n == c) for c in info["clips"]}
    info.update(fps=args.fps, gop=args.gop, frames_per_clip=per_clip,
                codecs={n: {"encoder": c.encoder, "decoder": c.decoder, "options": dict(c.options)}
                        for n, c in CODECS.items()})
    del info["frame_stride"]
    clips_text = ", ".join(f"{c} ({n} frames)" for c, n in per_clip.items())
    intro = (f"Rate-accuracy on real video: consecutive frames of {clips_text} played at {args.fps:g} fps (never "
             f"trained on), model {args.model or 'bundled'}, teacher {info['teacher']}. Reference: the teacher's "
             f"detections on the uncompressed frames (score >= {info['reference_score_thresh']:g}: "
             f"{info['reference_detections']} objects); agreement = COCO mAP against them. Every codec gets the "
             f"frame at the teacher's input size (the letterbox content). x264 and x265: preset veryfast, tune "
             f"zerolatency; AV1: SVT-AV1 preset 10, low-delay prediction; a keyframe every {args.gop} frames, no "
             f"B-frames, as ffmpeg_image_transport streams; `-intra`: every frame a keyframe. Bytes: the encoder's "
             f"packets. Ours: the packet (header and CRC included).")
    return real.report(args, intro, rows, info, t0, TABLE, FAMILIES, GROUPS, COLUMNS)

"""`bench temporal`: bytes per frame with and without temporal coding on real clips, and the encode time.

Each held-out clip is played at `--fps` through the onboard encoder on ONNX Runtime at every width, in
process (no ROS). Per frame it makes the version-2 packet (every frame alone: what the encoder sends
with temporal coding off) and, in the same pass and alternating with it, the temporal packet of a
stream whose every frame the decoder acknowledges before the next one (`acks_now`); the two encode
times give the ratio. Then the same frames as two more streams: acknowledgements arriving `--lag`
frames late (`acks_late`), and the same with a seeded `--loss` fraction of the packets lost
(`lossy`). Every temporal packet is decoded as the offboard decoder decodes it (`ReferenceStore`) and
its symbols compared with those of the frame's version-2 packet: `mismatched` must be 0.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from ..codec.packet import parse
from ..codec.temporal import ReferenceStore
from ..errors import ConfigError, PacketError
from ..evaluation.report import command_line, machine_info, markdown_table, write_results
from ..onboard.encoder import OnboardEncoder
from ..onboard.temporal import TemporalEncoder
from .rate_accuracy_video import frames_at


class _Link:
    """A stream from a `TemporalEncoder` to a decoder's reference store: packets lost at random, each
    decoded frame acknowledged `lag` frames later. Counts what a decoder node would count."""

    def __init__(self, encoder: TemporalEncoder, lag: int, loss: float, rng: np.random.Generator):
        self.encoder, self.lag, self.loss, self.rng = encoder, lag, loss, rng
        self.store, self.acks = ReferenceStore(), []
        self.bytes = self.keyframes = self.decoded = self.lost = self.refused = self.mismatched = 0

    def send(self, data: bytes, want: np.ndarray) -> None:
        """One packet: lost, refused or decoded (and compared with `want`, the frame's own symbols)."""
        self.bytes += len(data)
        packet = parse(data)
        self.keyframes += packet.ref_frame_id is None
        if self.loss and self.rng.random() < self.loss:
            self.lost += 1
        else:
            try:
                symbols = self.store.decode(packet, self.encoder.runtime.coder(packet.width_index))
            except PacketError:
                self.refused += 1
            else:
                self.store.add(packet, symbols)
                self.decoded += 1
                self.mismatched += not np.array_equal(symbols, want)
                self.acks.append((packet.stream_id, packet.frame_id, packet.width_index))
        while len(self.acks) > self.lag:  # acknowledgements reach the encoder `lag` frames late
            self.encoder.acknowledge(*self.acks.pop(0))


def _intra_symbols(runtime, data: bytes) -> np.ndarray:
    packet = parse(data)
    return runtime.coder(packet.width_index).decode(packet.payload, packet.latent_shape)


def measure_clip(runtime, frames: list[np.ndarray], width: float, lag: int, loss: float, seed: int) -> dict:
    """One clip at one width: bytes of every stream, encode times, and what the decoder made of each."""
    runtime.set_width(width)
    rng = np.random.default_rng(seed)
    now, late, lossy = (_Link(TemporalEncoder(runtime), n, p, rng) for n, p in ((0, 0.0), (lag, 0.0), (lag, loss)))
    intra_bytes, intra_ms, temporal_ms, wants = 0, [], [], []
    for k, rgb in enumerate(frames, 1):
        t0 = time.perf_counter()
        intra = runtime.encode(rgb, k)
        t1 = time.perf_counter()
        data = now.encoder.encode(rgb, k)
        t2 = time.perf_counter()
        intra_ms.append(1000 * (t1 - t0))
        temporal_ms.append(1000 * (t2 - t1))
        intra_bytes += len(intra)
        wants.append(_intra_symbols(runtime, intra))
        now.send(data, wants[-1])
    for link in (late, lossy):
        for k, (rgb, want) in enumerate(zip(frames, wants), 1):
            link.send(link.encoder.encode(rgb, k), want)
    n = len(frames)
    row = {"width": width, "frames": n, "intra_bytes": intra_bytes / n,
           "intra_ms": float(np.median(intra_ms)), "temporal_ms": float(np.median(temporal_ms))}
    row["encode_time_ratio"] = row["temporal_ms"] / row["intra_ms"]
    for name, link in (("acks_now", now), ("acks_late", late), ("lossy", lossy)):
        row.update({f"{name}_bytes": link.bytes / n, f"{name}_ratio": link.bytes / intra_bytes,
                    f"{name}_keyframes": link.keyframes, f"{name}_decoded": link.decoded,
                    f"{name}_lost": link.lost, f"{name}_refused": link.refused, f"{name}_mismatched": link.mismatched})
    return row


COLUMNS = [("clip", "clip", ""), ("width", "width", "g"), ("intra_bytes", "per-frame bytes", ".0f"),
           ("acks_now_bytes", "temporal bytes, acks at once", ".0f"), ("acks_now_ratio", "/ per-frame", ".2f"),
           ("acks_late_bytes", "temporal bytes, acks {lag} late", ".0f"), ("acks_late_ratio", "/ per-frame", ".2f"),
           ("lossy_bytes", "same, {loss:.0%} lost", ".0f"), ("lossy_decoded", "decoded", "d"),
           ("lossy_refused", "refused", "d"), ("intra_ms", "per-frame encode ms", ".1f"),
           ("temporal_ms", "temporal encode ms", ".1f"), ("encode_time_ratio", "time ratio", ".2f")]


def run(args) -> int:
    if args.fps <= 0 or args.max_frames < 2 or args.lag < 0 or not 0 <= args.loss < 1:
        raise ConfigError("--fps must be > 0, --max-frames >= 2, --lag >= 0 and --loss in [0, 1)")
    clips = sorted(p for p in Path(args.footage).glob("*") if p.suffix.lower() in (".avi", ".mp4", ".mkv", ".mov"))
    if not clips:
        raise ConfigError(f"--footage {args.footage}: no video clips there")
    runtime = OnboardEncoder(args.model, runtime="onnx", threads=args.threads)
    t0, load0, rows = time.monotonic(), os.getloadavg(), []
    for clip in clips:
        frames = frames_at(clip, args.fps, args.max_frames)
        for w in runtime.widths:
            print(f"{clip.name} width {w:g}: {len(frames)} frames ...", flush=True)
            rows.append({"clip": clip.name, **measure_clip(runtime, frames, w, args.lag, args.loss, args.seed)})
    bad = sum(r[f"{s}_mismatched"] for r in rows for s in ("acks_now", "acks_late", "lossy"))
    cols = [(k, t.format(lag=args.lag, loss=args.loss), f) for k, t, f in COLUMNS]
    text = "\n".join([
        f"Temporal coding on the held-out clips played at {args.fps:g} fps (at most {args.max_frames} frames each), "
        f"model {runtime.fingerprint[:12]}, ONNX Runtime on {args.threads} thread(s), in process. Per-frame: the "
        "version-2 packet of every frame (temporal coding off). Temporal: version-3 packets, each frame coded "
        "against the newest acknowledged frame of its width, the first frame a keyframe; bytes include headers "
        f"and CRC. Lossy: {args.loss:.0%} of the packets dropped (seed {args.seed}), acknowledgements {args.lag} "
        "frames late; decoded + refused + lost = frames. Encode ms: medians, per-frame and temporal encodes "
        f"alternating on the same frames. Decoded symbols differing from the frame's own: {bad}.", "",
        markdown_table(rows, cols)])
    print(text)
    payload = {"command": command_line(args), "argv": sys.argv, "machine": machine_info(args.threads),
               "fingerprint": runtime.fingerprint, "fps": args.fps, "max_frames": args.max_frames, "lag": args.lag,
               "loss": args.loss, "mismatched": bad, "loadavg_at_start": load0, "loadavg_at_end": os.getloadavg(),
               "seconds": round(time.monotonic() - t0, 1)}
    out = Path(args.out)
    files = write_results(out, "temporal", payload, rows)
    (out / "table.md").write_text(text + "\n")
    print("wrote " + ", ".join(str(p) for p in [*files, out / "table.md"]))
    return 0 if bad == 0 else 1

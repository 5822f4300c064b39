"""`bench batch`: offboard cost per frame when the frames waiting are decoded as one batch.

A server that perceives for several robots finds several packets waiting when it wakes; it
entropy-decodes each, runs the feature decoder once per width and the tail and heads once for the
batch (`OffboardDecoder.decode_batch`). This measures decode + heads ms per frame at each batch
size on the same packets (the widths cycle through the batch, as a fleet's would), against batch
size 1 in the same run. Timings are interleaved across batch sizes, best of the rounds and median.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from ..errors import ConfigError
from ..evaluation.report import command_line, machine_info, markdown_table, write_results
from .common import frames_source, load_frames
from .latency import interleaved_ms


def measure(model_path, data, batches: list[int], rounds: int, progress: bool = True) -> list[dict]:
    """One row per batch size (`batches` includes 1): ms per batch and per frame (best and median),
    ratio to batch size 1."""
    from ..offboard.decoder import OffboardDecoder
    from ..onboard.encoder import OnboardEncoder

    enc, dec = OnboardEncoder(model_path), OffboardDecoder(model_path)
    frames = load_frames(data, max(batches))
    if len(frames) < max(batches):
        raise ConfigError(f"{data} has {len(frames)} images, the largest batch needs {max(batches)}")
    packets = []
    for k, rgb in enumerate(frames):
        enc.set_width(enc.widths[k % len(enc.widths)])
        packets.append(enc.encode(rgb, frame_id=k))
    fns = {b: (lambda b=b: dec.decode_batch(packets[:b])) for b in batches}
    with torch.no_grad():
        raw = interleaved_ms(fns, rounds, progress=progress, stat=None)
    base = min(raw[1])  # run() always measures batch size 1
    rows = []
    for b in batches:
        best, med = 1000.0 * min(raw[b]), 1000.0 * statistics.median(raw[b])
        rows.append({"batch": b, "ms_per_batch": best, "ms_per_frame": best / b, "ms_per_frame_median": med / b,
                     "frame_ratio": (best / b) / (1000.0 * base)})
    return rows


COLUMNS = [("batch", "batch size", "d"), ("ms_per_batch", "ms per batch", ".1f"),
           ("ms_per_frame", "ms per frame", ".1f"), ("frame_ratio", "x batch size 1", ".2f"),
           ("ms_per_frame_median", "ms per frame (median)", ".1f")]


def run(args) -> int:
    try:
        batches = sorted({int(b) for b in args.batches.split(",") if b.strip()})
    except ValueError:
        raise ConfigError(f"--batches must be comma-separated integers, got {args.batches!r}") from None
    if not batches or batches[0] < 1 or args.repeats < 1:
        raise ConfigError("--batches must be >= 1 and --repeats >= 1")
    if 1 not in batches:
        batches = [1, *batches]  # the baseline of the same run
    args.data = frames_source(args.model, args.data)
    torch.set_num_threads(args.threads)
    t0 = time.monotonic()
    rows = measure(args.model, args.data, batches, args.repeats)
    table = markdown_table(rows, COLUMNS)
    note = (f"Offboard decode (entropy decoding, feature decoder per width, tail, both heads, postprocessing) "
            f"on this CPU, {args.threads} torch threads; the widths cycle through each batch; best of "
            f"{args.repeats} interleaved rounds, median beside it.")
    print(f"{note}\n\n{table}")
    out = Path(args.out)
    write_results(out, "batch", {"command": command_line(args), "machine": machine_info(args.threads),
                                 "device": "cpu", "seconds": round(time.monotonic() - t0, 1)}, rows)
    (out / "table.md").write_text(f"{note}\n\n{table}\n")
    print(f"wrote {out}/batch.json, .csv, table.md")
    return 0

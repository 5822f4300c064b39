"""`split-perception fuzz`: mutated packets through the offboard decoder at scale.

Inputs start from real packets of the model at every width and are mutated (bit flips, byte
overwrites, truncation, extension, header fields set to random values, splices of two packets,
pure random bytes); half of the mutants get their CRC recomputed so the fuzzing reaches past the
checksum into the header checks, the rANS decoder and the network. Every input must decode or be
refused with PacketError / ModelMismatchError: any other exception is a crash, a case slower than
`--hang-ms` a hang, and resident memory must stay bounded. Offending inputs are written to
`--out` so they can be replayed.
"""

from __future__ import annotations

import resource
import struct
import time
import zlib
from pathlib import Path

import numpy as np

from .codec.packet import CRC_SIZE, HEADER_SIZE
from .errors import ModelMismatchError, PacketError

MUTATORS = ("flip", "overwrite", "truncate", "extend", "header", "splice", "random")


def corpus(encoder, frames: int = 3, seed: int = 0) -> list[bytes]:
    """Real packets: a few synthetic frames at every width."""
    from .data.synthetic import render_scene

    rng = np.random.default_rng(seed)
    images = [render_scene(rng, tuple(encoder.cfg.input_size), tuple(encoder.cfg.class_names))[0]
              for _ in range(frames)]
    out = []
    for w in encoder.widths:
        encoder.set_width(w)
        out += [encoder.encode(im, frame_id=i) for i, im in enumerate(images)]
    return out


def mutate(rng: np.random.Generator, seeds: list[bytes]) -> tuple[str, bytes]:
    """One mutant of a random seed packet; CRC recomputed half of the time."""
    kind = MUTATORS[rng.integers(len(MUTATORS))]
    data = bytearray(seeds[rng.integers(len(seeds))])
    if kind == "flip":
        for _ in range(rng.integers(1, 9)):
            i = rng.integers(len(data) * 8)
            data[i // 8] ^= 1 << (i % 8)
    elif kind == "overwrite":
        for _ in range(rng.integers(1, 9)):
            data[rng.integers(len(data))] = rng.integers(256)
    elif kind == "truncate":
        data = data[: rng.integers(len(data))]
    elif kind == "extend":
        data += rng.bytes(int(rng.integers(1, 512)))
    elif kind == "header":  # one 1..4-byte field of the header set to anything
        i = int(rng.integers(HEADER_SIZE))
        n = min(int(rng.choice([1, 2, 4])), HEADER_SIZE - i)
        data[i: i + n] = rng.bytes(n)
    elif kind == "splice":
        other = seeds[rng.integers(len(seeds))]
        cut = int(rng.integers(len(data)))
        data = data[:cut] + other[int(rng.integers(len(other))):]
    else:
        data = bytearray(rng.bytes(int(rng.integers(0, 2048))))
    if rng.random() < 0.5 and len(data) > CRC_SIZE:
        body = bytes(data[:-CRC_SIZE])
        data = bytearray(body + struct.pack("<I", zlib.crc32(body)))
    return kind, bytes(data)


def rss_mib() -> float:
    """Peak resident memory of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def fuzz(decoder, seeds: list[bytes], cases: int, seed: int, hang_ms: float, out: Path | None,
         progress: bool = True) -> dict:
    """Run `cases` mutants through `decoder.decode`; returns counts, slowest case and memory."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    counts = {"decoded": 0, "PacketError": 0, "ModelMismatchError": 0, "crash": 0, "hang": 0}
    by_kind = {k: 0 for k in MUTATORS}
    slowest, rss0 = 0.0, rss_mib()
    for n in tqdm(range(cases), desc="fuzz", unit="case", disable=not progress, mininterval=1.0):
        kind, data = mutate(rng, seeds)
        by_kind[kind] += 1
        t0 = time.perf_counter()
        outcome = "decoded"
        try:
            decoder.decode(data, with_mask=False)
        except (PacketError, ModelMismatchError) as exc:
            outcome = type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - exactly what the fuzzer looks for
            outcome = "crash"
            _keep(out, f"crash_{n}", data, f"{type(exc).__name__}: {exc}")
        ms = 1000.0 * (time.perf_counter() - t0)
        slowest = max(slowest, ms)
        if ms > hang_ms:
            counts["hang"] += 1
            _keep(out, f"slow_{n}", data, f"{ms:.0f} ms")
        counts[outcome] += 1
    return {"cases": cases, "seed": seed, **counts, "by_mutator": by_kind, "slowest_ms": slowest,
            "rss_start_mib": rss0, "rss_peak_mib": rss_mib()}


def _keep(out: Path | None, name: str, data: bytes, why: str) -> None:
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.spf").write_bytes(data)
    (out / f"{name}.txt").write_text(why + "\n")

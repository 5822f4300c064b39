"""`split-perception fuzz`: coverage-guided fuzzing (atheris = libFuzzer for Python) of the
offboard decoder.

The corpus starts from real packets of the model at every width: frames alone (version 2) and a
temporally coded stream per width (version 3: a keyframe and deltas referencing it). Before every
case the decoder gets back the references of those keyframes, so each case decodes alone and a
mutated delta goes through the residual path. Each mutant comes from
libFuzzer's own mutation (guided by coverage of our instrumented Python code) or from ours,
which knows the packet (header fields, splices, truncation); the CRC is recomputed on half of
them so inputs get past the checksum into the header checks, the rANS decoder and the network.
Every input must decode or be refused with PacketError / ModelMismatchError. libFuzzer stops at
the first other exception (crash), a case slower than `--hang-ms` (timeout) or resident memory
above the limit, and writes that input to `--out`. It runs in a child process, because libFuzzer
ends the process when it is done; the parent reads the counts the child left and reports.
"""

from __future__ import annotations

import importlib.util
import json
import math
import resource
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from .errors import ConfigError, ModelMismatchError, PacketError

MUTATORS = ("libfuzzer", "flip", "overwrite", "truncate", "extend", "header", "splice", "random")
DECODER = "split_perception.offboard.decoder:OffboardDecoder"
STATS_EVERY = 500  # cases between two writes of the counts (libFuzzer exits without Python's atexit)


def corpus(encoder, frames: int = 3, seed: int = 0) -> list[bytes]:
    """Real packets: a few synthetic frames at every width."""
    rng = np.random.default_rng(seed)
    images = [corpus_image(encoder, rng) for _ in range(frames)]
    out = []
    for w in encoder.widths:
        encoder.set_width(w)
        out += [encoder.encode(im, frame_id=i) for i, im in enumerate(images)]
    return out


def temporal_corpus(encoder, seed: int = 0) -> tuple[list[bytes], list[bytes]]:
    """Real version-3 packets at every width: (keyframes, deltas referencing them), from one scene in which
    a small patch changes (a fixed camera)."""
    from .onboard.temporal import TemporalEncoder

    rng = np.random.default_rng(seed)
    image = corpus_image(encoder, rng)
    keyframes, deltas = [], []
    for i, w in enumerate(encoder.widths):
        encoder.set_width(w)
        enc = TemporalEncoder(encoder, stream_id=1000 + i)
        keyframes.append(enc.encode(image, 1))
        enc.acknowledge(enc.stream_id, 1, i)
        changed = [image.copy() for _ in range(2)]
        for k, im in enumerate(changed):
            im[8 * k: 8 * k + 8, :8] = rng.integers(0, 256, 3, dtype=np.uint8)
        deltas += [enc.encode(im, k) for k, im in enumerate(changed, 2)]
    return keyframes, deltas


def corpus_image(encoder, rng: np.random.Generator) -> np.ndarray:
    """One synthetic scene of shapes at the model's input size, whatever classes the model detects:
    the fuzzer needs real packets, not a scene the model knows."""
    from .data.synthetic import render_scene

    return render_scene(rng, tuple(encoder.cfg.input_size))[0]


def mutate(rng: np.random.Generator, data: bytes, seeds: list[bytes], libfuzzer=None) -> tuple[str, bytes]:
    """One mutant of `data` (libFuzzer's own mutation when `libfuzzer` is given and drawn, else a
    packet-aware one); the CRC is recomputed half of the time."""
    from .codec.packet import (  # here, not at the top: the child imports it instrumented
        CRC_SIZE,
        MAX_HEADER_SIZE,
    )

    kinds = MUTATORS if libfuzzer else MUTATORS[1:]
    kind = kinds[rng.integers(len(kinds))]
    data = bytearray(data or seeds[rng.integers(len(seeds))])
    if kind == "libfuzzer":
        data = bytearray(libfuzzer(bytes(data)))
    elif kind == "flip":
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
    elif kind == "header":  # one 1..4-byte field of the header (of either version) set to anything
        i = int(rng.integers(min(MAX_HEADER_SIZE, len(data))))
        n = min(int(rng.choice([1, 2, 4])), len(data) - i)
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


class Harness:
    """libFuzzer's test callback: decode one input, count the outcome; typed refusals are fine,
    any other exception propagates and libFuzzer reports it as a crash."""

    def __init__(self, decoder, cases: int, stats_path: Path, keyframes: list[bytes] = ()):
        self.decoder, self.cases, self.stats_path = decoder, cases, stats_path
        self.primed = None  # the references every case starts from (a decoder that keeps references)
        if keyframes and hasattr(decoder, "references"):
            for k in keyframes:
                decoder.decode(k, with_mask=False)
            self.primed = decoder.references.copy()
        self.counts = {"cases": 0, "decoded": 0, "PacketError": 0, "ModelMismatchError": 0, "slowest_ms": 0.0,
                       "rss_start_mib": rss_mib(), "rss_peak_mib": rss_mib(), "by_mutator": {k: 0 for k in MUTATORS}}

    def __call__(self, data: bytes) -> None:
        c = self.counts
        c["cases"] += 1
        t0 = time.perf_counter()
        if self.primed is not None:
            self.decoder.references = self.primed.copy()
        try:
            self.decoder.decode(data, with_mask=False)
            c["decoded"] += 1
        except (PacketError, ModelMismatchError) as exc:
            c["ModelMismatchError" if isinstance(exc, ModelMismatchError) else "PacketError"] += 1
        finally:
            c["slowest_ms"] = max(c["slowest_ms"], 1000.0 * (time.perf_counter() - t0))
            if c["cases"] % STATS_EVERY == 0 or c["cases"] >= self.cases:
                self.write()

    def write(self) -> None:
        self.counts["rss_peak_mib"] = rss_mib()
        self.stats_path.write_text(json.dumps(self.counts))


def child(model: str | None, cases: int, seed: int, hang_ms: float, max_rss_growth_mib: float, out: Path,
          threads: int, target: str = DECODER) -> None:
    """In the child process: load the decoder (instrumented), seed the corpus, run libFuzzer."""
    import atheris
    import torch

    torch.set_num_threads(threads)

    with atheris.instrument_imports(include=["split_perception"]):
        module, name = target.split(":")
        decoder = getattr(importlib.import_module(module), name)(model)
        from .onboard.encoder import OnboardEncoder

    encoder = OnboardEncoder(model)
    keyframes, deltas = temporal_corpus(encoder)
    seeds = corpus(encoder) + keyframes + deltas
    seed_dir = out / "corpus"
    seed_dir.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(seeds):
        (seed_dir / f"seed_{i:03d}.spf").write_bytes(s)
    harness = Harness(decoder, cases, out / "stats.json", keyframes)
    rng = np.random.default_rng(seed)

    def mutator(data: bytes, max_size: int, _seed: int) -> bytes:
        if rng.random() < 0.5:  # half from a whole real packet: the corpus favours short inputs, these go deep
            data = seeds[rng.integers(len(seeds))]
        kind, data = mutate(rng, data, seeds, libfuzzer=lambda d: atheris.Mutate(d, max_size))
        harness.counts["by_mutator"][kind] += 1
        return data[:max_size]

    rss_limit = int(rss_mib() + max_rss_growth_mib)
    atheris.Setup([sys.argv[0], f"-runs={cases}", f"-seed={seed}", f"-timeout={max(1, math.ceil(hang_ms / 1000))}",
                   f"-rss_limit_mb={rss_limit}", f"-max_len={2 * max(map(len, seeds))}", "-reduce_inputs=0",
                   f"-artifact_prefix={out}/", str(seed_dir)], harness, custom_mutator=mutator)
    atheris.Fuzz()  # never returns: libFuzzer exits the process


FINDINGS = {"crash": "an exception other than PacketError/ModelMismatchError",
            "timeout": "a case slower than --hang-ms", "oom": "memory above the limit", "leak": "a leak"}


def run(model: str | None, cases: int, seed: int, hang_ms: float, max_rss_growth_mib: float, out: Path,
        threads: int = 1, quiet: bool = False, target: str = DECODER) -> dict:
    """Fuzz in a child process; returns its counts plus `findings` (artifact files) and `exit_code`."""
    if importlib.util.find_spec("atheris") is None:
        raise ConfigError("the fuzz command needs atheris (pip install atheris; x86_64 Linux wheels)")
    out.mkdir(parents=True, exist_ok=True)
    (out / "stats.json").unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "split_perception.fuzz", json.dumps(
        {"model": model, "cases": cases, "seed": seed, "hang_ms": hang_ms,
         "max_rss_growth_mib": max_rss_growth_mib, "out": str(out), "threads": threads, "target": target})]
    with open(out / "libfuzzer.log", "w") as log:  # libFuzzer's progress lines: the terminal, or this file
        rc = subprocess.run(cmd, stdout=log if quiet else None, stderr=subprocess.STDOUT if quiet else None).returncode
    stats = json.loads((out / "stats.json").read_text()) if (out / "stats.json").is_file() else {"cases": 0}
    findings = sorted(str(p) for k in FINDINGS for p in out.glob(f"{k}-*"))
    return {**stats, "seed": seed, "exit_code": rc, "findings": findings}


if __name__ == "__main__":
    a = json.loads(sys.argv[1])
    child(a["model"], a["cases"], a["seed"], a["hang_ms"], a["max_rss_growth_mib"], Path(a["out"]), a["threads"],
          a["target"])

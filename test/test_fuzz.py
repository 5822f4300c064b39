"""The fuzz command: mutants reach past the CRC, only typed errors pass, libFuzzer catches the rest."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np
import pytest

from split_perception.cli import main
from split_perception.codec.packet import parse
from split_perception.errors import PacketError
from split_perception.fuzz import MUTATORS, Harness, mutate, run, temporal_corpus

REPO = Path(__file__).resolve().parents[1]


def test_mutants_cover_every_mutator_and_some_pass_the_crc():
    rng = np.random.default_rng(0)
    seeds = [bytes(range(256)) * 2]
    kinds, crc_ok = set(), 0
    for _ in range(500):
        kind, data = mutate(rng, seeds[0], seeds, libfuzzer=lambda d: d[::-1])
        kinds.add(kind)
        try:
            parse(data)
        except PacketError as exc:
            crc_ok += "CRC" not in str(exc) and "truncated" not in str(exc)
    assert kinds == set(MUTATORS) and crc_ok > 50  # many inputs fail later than the checksum


def test_every_case_starts_from_the_primed_references_and_v3_header_mutants_are_refused(tmp_path, tiny_model_path):
    """The temporal seeds: deltas decode against the keyframes' references, before every case again; a
    delta whose stream, reference or flags were changed (CRC recomputed) is refused, never decoded."""
    from dataclasses import replace

    from split_perception.offboard.decoder import OffboardDecoder
    from split_perception.onboard.encoder import OnboardEncoder

    keyframes, deltas = temporal_corpus(OnboardEncoder(tiny_model_path))
    assert all(parse(d).ref_frame_id == 1 for d in deltas) and len(deltas) == 2 * len(keyframes)
    harness = Harness(OffboardDecoder(tiny_model_path), 10_000, tmp_path / "stats.json", keyframes)
    for d in deltas + deltas:  # each twice: the second would be stale without the reset
        harness(d)
    assert harness.counts["decoded"] == 2 * len(deltas)
    p = parse(deltas[0])
    forged = [replace(p, stream_id=p.stream_id + 1), replace(p, ref_frame_id=0), replace(p, ref_crc=p.ref_crc ^ 4),
              replace(p, frame_id=1), replace(p, ref_frame_id=None)]
    rng = np.random.default_rng(0)
    for f in forged:
        harness(f.to_bytes())
    for _ in range(200):  # any header byte of a delta, CRC recomputed
        data = bytearray(deltas[0])
        data[int(rng.integers(4, 75))] ^= int(rng.integers(1, 256))
        body = bytes(data[:-4])
        harness(body + zlib.crc32(body).to_bytes(4, "little"))
    c = harness.counts
    assert c["decoded"] + c["PacketError"] + c["ModelMismatchError"] == c["cases"]
    assert c["PacketError"] + c["ModelMismatchError"] >= len(forged) + 150  # a keyframe-ized delta may decode


class Exploding:
    """A decoder with a bug: raises something other than the typed errors on some inputs."""

    def __init__(self, model=None):
        pass

    def decode(self, data, with_mask=False):
        if len(data) % 3 == 0:
            raise IndexError("out of range")
        raise PacketError("refused")


def test_a_crash_stops_the_run_and_its_input_is_kept(tmp_path, tiny_model_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    res = run(str(tiny_model_path), 200, seed=1, hang_ms=5000, max_rss_growth_mib=2048, out=tmp_path, quiet=True,
              target="test.test_fuzz:Exploding")
    assert res["exit_code"] != 0 and len(res["findings"]) == 1 and "crash-" in res["findings"][0]
    assert len(Path(res["findings"][0]).read_bytes()) % 3 == 0
    assert "IndexError: out of range" in (tmp_path / "libfuzzer.log").read_text()


@pytest.mark.parametrize("cases", [400, pytest.param(20_000, marks=pytest.mark.slow)])
def test_fuzz_command_on_the_real_decoder(tmp_path, capsys, cases):
    """The documented command on the default model (a COCO detector: its corpus must not need
    scenes of its classes)."""
    rc = main(["fuzz", "--cases", str(cases), "--out", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out + (tmp_path / "libfuzzer.log").read_text()[-3000:]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["cases"] >= cases
    assert stats["decoded"] + stats["PacketError"] + stats["ModelMismatchError"] == stats["cases"]
    assert stats["decoded"] > 0 and stats["PacketError"] > 0  # some mutants get through, most are refused
    assert "crashes 0" in out and not list(tmp_path.glob("crash-*"))
    summary = json.loads((tmp_path / "fuzz.json").read_text())  # the record docs/results.md is generated from
    assert summary["rows"][0]["cases"] == stats["cases"] and not summary["rows"][0]["failed"]
    assert "--cases" in summary["command"] and "| inputs |" in (tmp_path / "table.md").read_text()

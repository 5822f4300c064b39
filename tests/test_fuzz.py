"""The fuzz command: mutants reach past the CRC, only typed errors come out, crashes are caught."""

from __future__ import annotations

import numpy as np

from split_perception.cli import main
from split_perception.codec.packet import parse
from split_perception.errors import PacketError
from split_perception.fuzz import MUTATORS, fuzz, mutate


def test_mutants_cover_every_mutator_and_some_pass_the_crc():
    rng = np.random.default_rng(0)
    seeds = [bytes(range(256)) * 2]
    kinds, crc_ok = set(), 0
    for _ in range(500):
        kind, data = mutate(rng, seeds)
        kinds.add(kind)
        try:
            parse(data)
        except PacketError as exc:
            crc_ok += "CRC" not in str(exc) and "truncated" not in str(exc)
    assert kinds == set(MUTATORS) and crc_ok > 50  # many inputs fail later than the checksum


class Exploding:
    """A decoder with a bug: raises something other than the typed errors on some inputs."""

    def decode(self, data, with_mask=False):
        if len(data) % 3 == 0:
            raise IndexError("out of range")
        raise PacketError("refused")


def test_a_crash_is_counted_and_its_input_kept(tmp_path):
    res = fuzz(Exploding(), [bytes(100)], 60, seed=1, hang_ms=1e9, out=tmp_path, progress=False)
    assert res["crash"] > 0 and res["crash"] + res["PacketError"] == 60
    kept = sorted(tmp_path.glob("crash_*.spf"))
    assert len(kept) == res["crash"] and len(kept[0].read_bytes()) % 3 == 0
    assert "IndexError" in kept[0].with_suffix(".txt").read_text()


def test_fuzz_command_on_the_real_decoder(tmp_path, tiny_model_path, capsys):
    rc = main(["fuzz", "--cases", "400", "--model", str(tiny_model_path), "--out", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "crashes 0" in out and "400 inputs" in out and not any(tmp_path.iterdir())

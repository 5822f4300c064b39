"""The bundled models' packets and their decodes are exactly what they were when
`test/data/bundled_packets.json` was recorded: both onboard runtimes, every width, fixed real frames.

The record and how to regenerate it when a bundled model is replaced: `test/bundled_packets.py`
(`PYTHONPATH=. python -m test.bundled_packets`, with code whose packets are known good).
"""

from __future__ import annotations

import json

import pytest

from split_perception.model_files import BUNDLED_MODELS, file_sha256

from .bundled_packets import FIXTURE, record

STORED = json.loads(FIXTURE.read_text())
SCORE_TOL, BOX_TOL_PX, MASK_TOL = 2e-4, 0.05, 1e-3  # float noise of the detector's tail across CPUs


def _close_detections(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        da[0] == db[0] and abs(da[1] - db[1]) <= SCORE_TOL and all(abs(u - v) <= BOX_TOL_PX for u, v in zip(da[2:], db[2:]))
        for da, db in zip(a, b))


def _close_masks(a: list, b: list) -> bool:
    total = sum(n for _, n in a)
    return [c for c, _ in a] == [c for c, _ in b] and all(abs(n - m) <= MASK_TOL * total for (_, n), (_, m) in zip(a, b))


@pytest.mark.parametrize("name", sorted(BUNDLED_MODELS))
def test_packets_and_decodes_are_as_recorded(name):
    stored = STORED.get(name)
    assert stored is not None and file_sha256(BUNDLED_MODELS[name]) == stored["checkpoint_sha256"], \
        f"{FIXTURE.name} was recorded from another {name} model: regenerate it (see test/bundled_packets.py)"
    now = record([name])[name]
    assert {k: v for k, v in now.items() if k != "packets"} == {k: v for k, v in stored.items() if k != "packets"}
    key = ("runtime", "width", "frame")
    assert [[p[k] for k in key] for p in now["packets"]] == [[p[k] for k in key] for p in stored["packets"]]
    wrong = []
    for p, q in zip(now["packets"], stored["packets"]):
        where = tuple(p[k] for k in key)
        if (p["bytes"], p["sha256"]) != (q["bytes"], q["sha256"]):
            wrong.append((*where, "packet bytes"))
        if p["y_hat_sha256"] != q["y_hat_sha256"]:
            wrong.append((*where, "decoded bottleneck"))
        if not _close_detections(p["detections"], q["detections"]):
            wrong.append((*where, "detections"))
        if not _close_masks(p["mask_pixels"], q["mask_pixels"]):
            wrong.append((*where, "mask"))
    assert not wrong, wrong

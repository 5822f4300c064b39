"""Temporal coding over real DDS: encoder, lossy link emulator and decoder as processes. The encoder
codes against a frame only once the decoder acknowledged it, no detection published is other than the
frame's own, and when acknowledgements stop the encoder sends keyframes."""

from __future__ import annotations

import time

import cv2
import numpy as np

from split_perception.codec.packet import VERSION, parse
from split_perception.codec.temporal import HISTORY
from split_perception.data.synthetic import render_scene
from split_perception.harness.processes import finish_probe, start_node, start_probe, stop, wait_ready
from split_perception.offboard.decoder import OffboardDecoder
from split_perception.onboard.encoder import OnboardEncoder

FPS, DECODER_S, SECONDS = 5.0, 30.0, 55.0


def fixed_camera(tmp_path, n=3):
    """`n` frames of one synthetic scene with sensor noise (a fixed camera), as PNG files."""
    rng = np.random.default_rng(4)
    scene = render_scene(rng, (240, 320))[0].astype(np.int16)
    paths = []
    for k in range(n):
        frame = np.clip(scene + rng.integers(-2, 3, scene.shape), 0, 255).astype(np.uint8)
        paths.append(tmp_path / f"frame{k}.png")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return paths


def expected_boxes(model, paths):
    """Each frame's detections decoded from its own version-2 packet, in process."""
    enc, dec = OnboardEncoder(model), OffboardDecoder(model)
    out = []
    for p in paths:
        rgb = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        out.append([(d.label_id, d.score, d.box) for d in dec.decode(enc.encode(rgb), with_mask=False).detections])
    return out


def same(boxes, want) -> bool:
    """Probe boxes [class, score, x, y, w, h] against (label, score, (x1, y1, x2, y2))."""
    return len(boxes) == len(want) and all(
        b[0] == lab and abs(b[1] - s) < 1e-3 and np.allclose([b[2], b[3], b[2] + b[4], b[3] + b[5]], box, atol=0.5)
        for b, (lab, s, box) in zip(boxes, want))


def logs(tmp_path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(tmp_path.glob("*.log")))


def test_references_follow_acknowledgements_over_a_lossy_link(tmp_path, domain, synthetic_model_path):
    paths = fixed_camera(tmp_path)
    m = {"model_path": str(synthetic_model_path)}
    procs = [start_node("encoder", domain, params={**m, "temporal": True}, remap={"features": "features_in"},
                        log_path=tmp_path / "encoder.log"),
             start_node("link_emulator", domain, params={"bandwidth": "steps:100000000@0", "loss": 0.3, "seed": 3},
                        log_path=tmp_path / "link_emulator.log"),
             start_node("decoder", domain, params=m, remap={"features": "features_out"},
                        log_path=tmp_path / "decoder.log")]
    try:
        wait_ready(tmp_path, "encoder", "decoder")
        cfg = {"seconds": SECONDS, "fps": FPS, "images": [str(p) for p in paths], "features_topic": "features_in",
               "record_packets": True, "record_acks": True, "record_boxes": True,
               "await_publishers": ["features_ack"]}  # hear the decoder's acknowledgements from the first frame
        probe = start_probe(cfg, tmp_path, domain)
        time.sleep(DECODER_S)  # then the decoder goes away: no more acknowledgements
        stop(procs[2:])
        rec = finish_probe(probe, cfg, tmp_path)
    finally:
        stop(procs)
    packets = [parse(bytes.fromhex(f["packet"])) for f in rec["features"]]
    assert packets and all(p.version == VERSION for p in packets), logs(tmp_path)
    held = {(a["stream_id"], a["frame_id"]) for a in rec["acks"] if a["held"]}
    deltas = [p for p in packets if p.ref_frame_id is not None]
    assert len(deltas) >= 10, logs(tmp_path)
    # only acknowledged frames are references: the probe hears the acknowledgements best-effort, as the
    # encoder does, and may miss one the encoder got; a reference the decoder did not hold would have been
    # refused, which link_status counts (asserted below)
    heard = sum((p.stream_id, p.ref_frame_id) in held for p in deltas)
    assert heard >= 0.9 * len(deltas), (heard, len(deltas))
    assert not [a for a in rec["acks"] if not a["held"]]  # and the decoder held every one of them
    acked = sorted(f for _, f in held)
    last_ack = acked[-1]
    unacked = set(range(acked[0], last_ack)) - set(acked)
    assert len(unacked) >= 3, acked  # the link lost packets (30 %): never acknowledged, so never references
    after = [p for p in packets if p.frame_id > last_ack + HISTORY]
    assert len(after) >= 5 and all(p.ref_frame_id is None for p in after), logs(tmp_path)  # keyframes again
    want = expected_boxes(synthetic_model_path, paths)
    frame_of = {s["stamp"]: s["frame"] for s in rec["sent"]}
    wrong = [d for d in rec["detections"] if not same(d["boxes"], want[frame_of[d["stamp"]]])]
    assert len(rec["detections"]) >= 10 and not wrong, (wrong[:3], logs(tmp_path))
    assert rec["link_status"] and max(s["bad"] for s in rec["link_status"]) == 0, logs(tmp_path)
    assert all(p.returncode == 0 for p in procs), logs(tmp_path)

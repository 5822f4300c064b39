"""Batched offboard decoding: packets of mixed widths and bad packets in one batch, each result in
its place, the same detections as decoding one packet at a time."""

from __future__ import annotations

import numpy as np
import pytest

from split_perception.data.synthetic import render_scene
from split_perception.errors import ModelMismatchError, PacketError
from split_perception.offboard.decoder import OffboardDecoder
from split_perception.onboard.encoder import OnboardEncoder


def same_detections(a, b) -> bool:
    return len(a.detections) == len(b.detections) and all(
        x.label == y.label and abs(x.score - y.score) < 1e-3 and np.allclose(x.box, y.box, atol=0.05)
        for x, y in zip(a.detections, b.detections))


def test_batch_of_mixed_widths_and_bad_packets(synthetic_model_path, tiny_model_path):
    enc, dec = OnboardEncoder(synthetic_model_path), OffboardDecoder(synthetic_model_path)
    rng = np.random.default_rng(4)
    packets = []
    for k in range(6):
        enc.set_width(enc.widths[k % len(enc.widths)])
        rgb = render_scene(rng, (480, 640) if k % 2 else (240, 320))[0]
        packets.append(enc.encode(rgb, frame_id=k, stamp_ns=k))
    other = OnboardEncoder(tiny_model_path, runtime="torch").encode(render_scene(rng, (96, 128))[0])
    batch = packets[:2] + [packets[2][:40], other] + packets[2:]
    results = dec.decode_batch(batch)
    assert len(results) == len(batch)
    assert isinstance(results[2], PacketError) and isinstance(results[3], ModelMismatchError)
    good = [r for i, r in enumerate(results) if i not in (2, 3)]
    for k, (packet, frame) in enumerate(zip(packets, good)):
        single = dec.decode(packet)
        assert (frame.frame_id, frame.width, frame.image_size) == (k, single.width, single.image_size)
        assert frame.mask.shape == single.image_size and same_detections(frame, single)
    assert any(f.detections for f in good)
    assert dec.decode_batch([]) == []
    with pytest.raises(ModelMismatchError):
        dec.decode(other)
    # screening (what the decoder node does on arrival) refuses exactly what decoding would
    assert dec.screen(packets[0]).frame_id == 0
    for bad, err in ((packets[2][:40], PacketError), (other, ModelMismatchError),
                     (packets[1][:-1] + bytes([packets[1][-1] ^ 1]), PacketError)):
        with pytest.raises(err):
            dec.screen(bad)

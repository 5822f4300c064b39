"""Temporal coding (packet version 3): residuals to acknowledged frames, decoded exactly, and every
packet whose reference the decoder cannot vouch for refused and counted, never decoded wrongly."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from split_perception.codec.packet import VERSION, parse
from split_perception.codec.temporal import HISTORY, ReferenceHistory, ReferenceStore, symbols_crc
from split_perception.errors import MissingReferenceError, ModelMismatchError, PacketError
from split_perception.model_files import BUNDLED_MODELS
from split_perception.offboard.decoder import OffboardDecoder
from split_perception.onboard.encoder import OnboardEncoder
from split_perception.onboard.temporal import TemporalEncoder

PHOTO = Path(__file__).resolve().parent / "data" / "photos" / "vtest_frame397.jpg"


def fixed_camera(n: int, seed: int = 0) -> list[np.ndarray]:
    """A fixed camera's frames: one real photo with sensor noise and a patch that moves."""
    rng = np.random.default_rng(seed)
    base = cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB).astype(np.int16)
    out = []
    for k in range(n):
        f = base + rng.integers(-3, 4, base.shape)
        f[100:160, 40 + 12 * k: 100 + 12 * k] = (200, 30, 30)
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def frames():
    return fixed_camera(8)


@pytest.fixture(scope="module")
def onnx():
    return OnboardEncoder(BUNDLED_MODELS["nanodet_g"], runtime="onnx", threads=1)


@pytest.fixture(scope="module")
def decoder():
    return OffboardDecoder(BUNDLED_MODELS["nanodet_g"])


def boxes(frame):
    return [(d.label_id, round(d.score, 4), tuple(round(v, 2) for v in d.box)) for d in frame.detections]


def test_acknowledged_stream_decodes_to_the_intra_symbols_in_fewer_bytes(onnx, decoder, frames):
    decoder.references = ReferenceStore()
    enc = TemporalEncoder(onnx, stream_id=11)
    intra_bytes = delta_bytes = 0
    for k, rgb in enumerate(frames, 1):
        data = enc.encode(rgb, k, 1000 * k)
        p = parse(data)
        assert p.version == VERSION and p.stream_id == 11
        assert (p.ref_frame_id is None) == (k == 1)  # the first frame: nothing acknowledged yet
        frame = decoder.decode(data)
        held = decoder.references._streams[11][k].symbols
        assert np.array_equal(held, onnx.frame(rgb)[1])  # exactly the symbols a keyframe carries
        intra = onnx.encode(rgb, k, 1000 * k)
        assert boxes(frame) == boxes(decoder.decode(intra))
        assert enc.acknowledge(frame.stream_id, frame.frame_id, frame.width_index)
        if k > 1:
            intra_bytes, delta_bytes = intra_bytes + len(intra), delta_bytes + len(data)
    assert delta_bytes < 0.7 * intra_bytes, (delta_bytes, intra_bytes)


@pytest.mark.parametrize("name", sorted(BUNDLED_MODELS))
def test_onnx_and_torch_make_the_same_temporal_packets(name, frames):
    streams = []
    for runtime in ("onnx", "torch"):
        rt = OnboardEncoder(BUNDLED_MODELS[name], runtime=runtime, threads=1)
        packets = []
        for w in rt.widths:
            rt.set_width(w)
            enc = TemporalEncoder(rt, stream_id=5)
            for k, rgb in enumerate(frames[:4], 1):
                packets.append(enc.encode(rgb, k))
                enc.acknowledge(5, k - 1, rt.widths.index(w))  # acknowledgements one frame late
        streams.append(packets)
    assert sum(parse(p).ref_frame_id is not None for p in streams[0]) == 2 * len(streams[0]) // 4
    assert streams[0] == streams[1]


def test_encoder_references_only_acknowledged_frames_of_its_width(onnx, frames):
    onnx.set_width(onnx.widths[-1])
    enc = TemporalEncoder(onnx, stream_id=3)
    refs = []
    for k in range(1, 5):  # nothing acknowledged: keyframes only
        refs.append(parse(enc.encode(frames[k], k)).ref_frame_id)
    assert refs == [None] * 4
    assert not enc.acknowledge(4, 2, len(onnx.widths) - 1)  # another run's acknowledgement is ignored
    assert not enc.acknowledge(3, 2, 0)  # of another width than the frame's
    assert not enc.acknowledge(3, 99, len(onnx.widths) - 1)  # never sent
    assert parse(enc.encode(frames[5], 5)).ref_frame_id is None
    assert enc.acknowledge(3, 2, len(onnx.widths) - 1) and enc.acknowledge(3, 1, len(onnx.widths) - 1)
    assert parse(enc.encode(frames[6], 6)).ref_frame_id == 2  # the newest acknowledged
    onnx.set_width(onnx.widths[0])
    try:
        assert parse(enc.encode(frames[7], 7)).ref_frame_id is None  # after a width switch: a keyframe
    finally:
        onnx.set_width(onnx.widths[-1])


def test_an_acknowledgement_older_than_the_history_gives_a_keyframe():
    history = ReferenceHistory(1)
    s = np.zeros((2, 3, 3), np.int32)
    history.add(1, 0, s)
    assert history.acknowledge(1, 1, 0) and history.reference(0).frame_id == 1
    for k in range(2, HISTORY + 2):  # frames sent, none acknowledged: frame 1 leaves the history
        history.add(k, 0, s)
    assert history.reference(0) is None and not history.acknowledge(1, 1, 0)


def test_lost_packets_cost_only_frames_referencing_them_and_nothing_decodes_wrongly(onnx, decoder, frames):
    decoder.references = ReferenceStore()
    enc = TemporalEncoder(onnx, stream_id=21)
    lost, refused, decoded = {3, 4}, 0, []
    late_acks: list[tuple] = []
    for k, rgb in enumerate(frames, 1):
        data = enc.encode(rgb, k)
        for ack in late_acks[:-2]:  # acknowledgements arrive two frames late
            enc.acknowledge(*ack)
        late_acks = late_acks[-2:]
        if k in lost:
            continue
        try:
            frame = decoder.decode(data, with_mask=False)
        except PacketError:
            refused += 1
            continue
        decoded.append(k)
        assert np.array_equal(decoder.references._streams[21][k].symbols, onnx.frame(rgb)[1])
        late_acks.append((frame.stream_id, frame.frame_id, frame.width_index))
    assert refused == 0  # acknowledged references only: a loss costs exactly the lost frames
    assert decoded == [k for k in range(1, len(frames) + 1) if k not in lost]


@pytest.fixture(scope="module")
def stream(onnx, frames):
    """Frames 1..4 of one run, each acknowledged: 1 a keyframe, 2..4 deltas to the frame before."""
    enc = TemporalEncoder(onnx, stream_id=9)
    out = []
    for k, rgb in enumerate(frames[:4], 1):
        out.append(enc.encode(rgb, k))
        enc.acknowledge(9, k, len(onnx.widths) - 1)
    return out


def reforged(data: bytes, **fields) -> bytes:
    """The packet with header fields changed and a valid CRC (what a forger or a confused sender makes)."""
    return replace(parse(data), **fields).to_bytes()


@pytest.mark.parametrize("case", ["unknown_reference", "forged_reference_id", "forged_crc", "other_stream",
                                  "other_width", "reordered", "replayed", "other_model"])
def test_packets_with_a_reference_the_decoder_cannot_vouch_for_are_refused(decoder, stream, case):
    decoder.references = ReferenceStore()
    k1, d2, d3, _ = stream
    for data in (k1, d2, d3) if case in ("reordered", "replayed") else (k1,):
        decoder.decode(data, with_mask=False)
    bad = {"unknown_reference": d3,  # frame 2 never arrived
           "forged_reference_id": reforged(d2, ref_frame_id=0),
           "forged_crc": reforged(d2, ref_crc=parse(d2).ref_crc ^ 1),
           "other_stream": reforged(d2, stream_id=10),
           "other_width": reforged(d2, width_index=0, width=0.25),
           "reordered": d2,  # frame 2 again, after frame 3
           "replayed": k1,
           "other_model": reforged(d2, fingerprint=bytes(16))}[case]
    before = {s: dict(f) for s, f in decoder.references._streams.items()}
    with pytest.raises(ModelMismatchError if case == "other_model" else PacketError):
        decoder.decode(bad, with_mask=False)
    with pytest.raises(ModelMismatchError if case == "other_model" else PacketError):
        decoder.screen(bad)
    assert {s: dict(f) for s, f in decoder.references._streams.items()} == before  # nothing kept of it
    results = decoder.decode_batch([bad, k1], with_mask=False)
    assert isinstance(results[0], (PacketError, ModelMismatchError))


def test_the_store_keeps_a_bounded_history_per_stream_and_bounded_streams():
    from split_perception.codec import temporal

    store, s = ReferenceStore(), np.zeros((1, 2, 2), np.int32)
    head = parse(replace(_packet(), version=VERSION, stream_id=1).to_bytes())
    for k in range(1, HISTORY + 5):
        store.add(replace(head, frame_id=k), s)
    assert sorted(store._streams[1]) == list(range(5, HISTORY + 5))
    for sid in range(2, temporal.MAX_STREAMS + 3):
        store.add(replace(head, stream_id=sid, frame_id=1), s)
    assert len(store._streams) == temporal.MAX_STREAMS and 1 not in store._streams
    assert 2 not in store._streams and store._streams[3][1].crc == symbols_crc(s)


def _packet():
    from split_perception.codec.packet import Packet

    return Packet(bytes(16), 0, 0.25, 1, 0, (4, 4), (1, 2, 2), b"")


def test_a_scene_cut_is_sent_as_a_keyframe(onnx, frames):
    enc = TemporalEncoder(onnx, stream_id=13)
    enc.encode(frames[0], 1)
    assert enc.acknowledge(13, 1, len(onnx.widths) - 1)
    cut = np.random.default_rng(1).integers(0, 256, frames[0].shape, dtype=np.uint8)
    assert parse(enc.encode(cut, 2)).ref_frame_id is None
    assert parse(enc.encode(frames[1], 3)).ref_frame_id == 1
    assert (enc.keyframes, enc.deltas) == (2, 1)


def test_a_refused_reference_is_forgotten_so_the_next_frame_is_a_keyframe(onnx, decoder, frames):
    """A decoder that restarted holds nothing: it refuses the delta, reports the missing reference, and
    the encoder's next frame decodes."""
    last = len(onnx.widths) - 1
    enc = TemporalEncoder(onnx, stream_id=17)
    for k in (1, 2):
        enc.encode(frames[k], k)
        enc.acknowledge(17, k, last)
    decoder.references = ReferenceStore()  # the restarted decoder
    with pytest.raises(MissingReferenceError) as refused:
        decoder.decode(enc.encode(frames[3], 3), with_mask=False)
    assert (refused.value.stream_id, refused.value.ref_frame_id) == (17, 2)
    assert enc.acknowledge(17, refused.value.ref_frame_id, last, held=False)
    frame = decoder.decode(enc.encode(frames[4], 4), with_mask=False)
    assert frame.frame_id == 4 and parse(enc.encode(frames[5], 5)).ref_frame_id is None  # 4 not acked yet


def test_decode_bag_decodes_a_recorded_temporal_stream_in_order(onnx, frames, tmp_path, capsys):
    from split_perception.cli import main

    from .test_eval_bag import write_features_bag

    enc = TemporalEncoder(onnx, stream_id=23)
    packets = []
    for k, rgb in enumerate(frames[:6], 1):
        if k == 5:
            onnx.set_width(onnx.widths[0])  # a width switch: a keyframe
        packets.append(enc.encode(rgb, k, k))
        enc.acknowledge(23, k, onnx.widths.index(onnx.width))  # the live decoder decoded every frame
    onnx.set_width(onnx.widths[-1])
    assert [parse(p).ref_frame_id for p in packets] == [None, 1, 2, 3, None, 5]
    recorded = packets[:2] + packets[3:]  # the recorder missed frame 3: frame 4 cannot be decoded from the bag
    bag = write_features_bag(tmp_path / "bag", onnx.fingerprint, recorded, frames[0].shape[:2])
    out = tmp_path / "res.json"
    assert main(["decode-bag", str(bag), "-o", str(out), "--model", str(BUNDLED_MODELS["nanodet_g"])]) == 0
    res = json.loads(out.read_text())
    assert [f["frame_id"] for f in res["frames"]] == [1, 2, 5, 6]
    assert res["refused"] == {"MissingReferenceError": 1}
    dec = OffboardDecoder(BUNDLED_MODELS["nanodet_g"])
    for f, k in zip(res["frames"], (1, 2, 5, 6)):
        onnx.set_width(onnx.widths[0] if k >= 5 else onnx.widths[-1])
        assert f["detections"] == len(dec.decode(onnx.encode(frames[k - 1], k), with_mask=False).detections)
    onnx.set_width(onnx.widths[-1])
    capsys.readouterr()


NO_TORCH_CHILD = """
import json, sys
class NotOnTheRobot:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "cv2"):
            raise ImportError(f"{name} is not installed on this robot")
sys.meta_path.insert(0, NotOnTheRobot())
import numpy as np
from split_perception.onboard.encoder import OnboardEncoder
from split_perception.onboard.temporal import TemporalEncoder
frames = np.load(sys.argv[2])
enc = TemporalEncoder(OnboardEncoder(sys.argv[1], threads=1), stream_id=77)
packets = []
for k, rgb in enumerate(frames, 1):
    packets.append(enc.encode(rgb, k).hex())
    enc.acknowledge(77, k, len(enc.runtime.widths) - 1)
json.dump({"runtime": enc.runtime.runtime, "packets": packets}, open(sys.argv[3], "w"))
"""


def test_the_torch_free_onboard_runtime_makes_the_torch_runtimes_temporal_packets(frames, tmp_path):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    np.save(tmp_path / "frames.npy", np.stack(frames[:4]))
    (tmp_path / "child.py").write_text(NO_TORCH_CHILD)
    res = subprocess.run([sys.executable, str(tmp_path / "child.py"), str(BUNDLED_MODELS["nanodet_g"]),
                          str(tmp_path / "frames.npy"), str(tmp_path / "out.json")], cwd=repo,
                         env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    enc = TemporalEncoder(OnboardEncoder(BUNDLED_MODELS["nanodet_g"], runtime="torch", threads=1), stream_id=77)
    want = []
    for k, rgb in enumerate(frames[:4], 1):
        want.append(enc.encode(rgb, k).hex())
        enc.acknowledge(77, k, len(enc.runtime.widths) - 1)
    assert out["runtime"] == "onnx" and [parse(bytes.fromhex(p)).ref_frame_id for p in want] == [None, 1, 2, 3]
    assert out["packets"] == want

"""The packets the bundled models make from fixed frames, and what the offboard decoder makes of them.

`record()` encodes fixed real inputs (the photos in test/data/photos and one synthetic scene) with every
bundled model at every width, with both onboard runtimes (the torch checkpoint and the ONNX onboard
export), and decodes each packet offboard. `test_bundled_packets.py` compares a fresh `record()` with
the one stored in `test/data/bundled_packets.json`: a change to the codec's code must leave every byte
and every detection as it was.

The stored record names the model files it was made from (their SHA-256). When a bundled model is
replaced, regenerate it, with code whose packets are known good, from the repository root:

    PYTHONPATH=. python -m test.bundled_packets
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from split_perception.data.synthetic import render_scene
from split_perception.model_files import BUNDLED_MODELS, file_sha256

FIXTURE = Path(__file__).resolve().parent / "data" / "bundled_packets.json"
PHOTOS = Path(__file__).resolve().parent / "data" / "photos"
RUNTIMES = ("torch", "onnx")
SCENE_SEED = 20240601


def inputs() -> dict[str, np.ndarray]:
    """The fixed frames, RGB uint8: every photo, and one synthetic scene of a fixed seed."""
    frames = {p.name: cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(PHOTOS.glob("*.jpg"))}
    frames["synthetic_scene"] = render_scene(np.random.default_rng(SCENE_SEED), (240, 320))[0]
    return frames


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _decoded(frame, y_hat: torch.Tensor) -> dict:
    """What the decoder made of a packet: its feature decoder's input (SHA-256), the detections rounded
    (label id, score to 1e-4, box to 1e-2 px) and the mask's pixels per class id."""
    mask = [] if frame.mask is None else np.stack(np.unique(frame.mask, return_counts=True), 1).tolist()
    return {"y_hat_sha256": _digest(y_hat.contiguous().numpy().tobytes()),
            "detections": [[d.label_id, round(d.score, 4), *(round(v, 2) for v in d.box)] for d in frame.detections],
            "mask_pixels": mask}


def record_model(name: str, path: Path, frames: dict[str, np.ndarray]) -> dict:
    """One bundled model's packets (SHA-256 and length) per runtime, width and frame, and their decodes."""
    from split_perception.offboard.decoder import OffboardDecoder
    from split_perception.onboard.encoder import OnboardEncoder
    from split_perception.onboard.export_files import export_dir_for

    decoder, decoded, y_hat = OffboardDecoder(path), {}, []
    for i in range(len(decoder.cfg.widths)):  # the entropy-decoded bottleneck, as the feature decoder gets it
        decoder.model.decoder_for(i).register_forward_pre_hook(lambda module, args: y_hat.append(args[0]))
    out = {"checkpoint": path.name, "checkpoint_sha256": file_sha256(path),
           "export_manifest_sha256": file_sha256(export_dir_for(path) / "manifest.json"),
           "fingerprint": decoder.fingerprint, "packets": []}
    for runtime in RUNTIMES:
        encoder = OnboardEncoder(path, runtime=runtime)
        for w in encoder.widths:
            encoder.set_width(w)
            for k, (frame_name, rgb) in enumerate(frames.items()):
                packet = encoder.encode(rgb, frame_id=k, stamp_ns=1_000_000 * k)
                sha = _digest(packet)
                if sha not in decoded:  # the runtimes' packets are mostly identical: decode each once
                    y_hat.clear()
                    frame = decoder.decode(packet)
                    decoded[sha] = _decoded(frame, y_hat[-1])
                out["packets"].append({"runtime": runtime, "width": w, "frame": frame_name, "bytes": len(packet),
                                       "sha256": sha, **decoded[sha]})
    return out


def record(names: list[str] | None = None) -> dict:
    """The record of the named bundled models (default: all), by name. Torch runs on one thread (a fixed
    reduction order, and no oversubscription of a shared machine)."""
    frames, threads = inputs(), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: record_model(name, path, frames) for name, path in BUNDLED_MODELS.items()
                if names is None or name in names}
    finally:
        torch.set_num_threads(threads)


def to_json(rec: dict) -> str:
    """The record as JSON text, one line per packet (a readable diff when a model is replaced)."""
    lines = ["{"]
    for m, (name, model) in enumerate(rec.items()):
        head = {k: v for k, v in model.items() if k != "packets"}
        lines.append(f" {json.dumps(name)}: {{")
        lines += [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
        lines.append('  "packets": [')
        packets = model["packets"]
        lines += [f"   {json.dumps(p)}{',' if i < len(packets) - 1 else ''}" for i, p in enumerate(packets)]
        lines.append("  ]")
        lines.append(" }" + ("," if m < len(rec) - 1 else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    FIXTURE.write_text(to_json(record()))
    print(f"wrote {FIXTURE}")


if __name__ == "__main__":
    main()

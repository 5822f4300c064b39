"""Offboard runtime: packet bytes -> detections and a segmentation mask (what the decoder node calls)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..codec.packet import Packet, parse
from ..codec.temporal import ReferenceStore
from ..config import find_width
from ..errors import ModelMismatchError, PacketError, SplitPerceptionError
from ..models.loaded_model import ModelRuntime
from ..onboard.preprocess import model_input_tensor

# rANS reads 32-bit words without bounds checks; a forged payload must only ever read zeros
# that belong to us. Per symbol the decoder reads at most ~40 words (escape chain bounded by the
# 64-bit state), so this padding bounds every read of any payload (see docs in README).
_PAD_PER_SYMBOL = 160


def _mask(result: dict) -> np.ndarray | None:
    """The class-id mask of a postprocessed result; None for a teacher without a segmentation head."""
    return result["mask"].numpy() if "mask" in result else None


@dataclass
class Detection:
    label_id: int  # 1..K, index into class_names + 1
    label: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in source-image pixels


@dataclass
class DecodedFrame:
    frame_id: int
    stamp_ns: int
    width: float
    image_size: tuple[int, int]
    num_bytes: int
    stream_id: int = 0  # version 3: the encoder run (the decoder acknowledges the frame to it)
    width_index: int = 0
    temporal: bool = False  # version 3: the decoder keeps the frame's symbols as a reference
    detections: list[Detection] = field(default_factory=list)
    mask: np.ndarray | None = None  # uint8 class ids at source-image size, 0 = background; None without a
    # segmentation head


class OffboardDecoder(ModelRuntime):
    """Decodes packets of exactly one model; anything else raises PacketError/ModelMismatchError.

    Version-3 packets (temporal coding) must come in order per stream: the decoder keeps the symbols of
    the frames it decoded (`references`) and refuses a frame whose reference it does not hold."""

    def __init__(self, model_path: str | Path | None = None, score_thresh: float | None = None):
        super().__init__(model_path)
        if score_thresh is not None:
            # detections below this score are dropped in the teacher's postprocessing
            self.model.teacher.score_thresh = score_thresh

    def _attach(self, model, fingerprint: str) -> None:
        super()._attach(model, fingerprint)
        self.references = ReferenceStore()
        self._latent_hw = [tuple(-(-s // self.cfg.latent_stride(i)) for s in self.cfg.input_size)
                           for i in range(len(self.cfg.widths))]

    def check(self, packet: Packet) -> None:
        """Raise ModelMismatchError unless the packet was made by this model at one of its widths."""
        if packet.fingerprint != self._fp:
            raise ModelMismatchError(f"packet from model {packet.fingerprint.hex()[:12]}, this decoder runs "
                                     f"{self._fp.hex()[:12]}: load the encoder's checkpoint")
        if find_width(self.cfg.widths, packet.width) != packet.width_index:
            raise ModelMismatchError(f"width {packet.width} (index {packet.width_index}) is not one of "
                                     f"{list(self.cfg.widths)}")
        expect = (self.model.encoder.bottleneck_channels[packet.width_index], *self._latent_hw[packet.width_index])
        if packet.latent_shape != expect:
            raise PacketError(f"latent shape {packet.latent_shape}, the model makes {expect}")

    def screen(self, data: bytes) -> Packet:
        """Parse and check a packet without decoding it (microseconds): PacketError/ModelMismatchError
        for anything this decoder would refuse, so a bad packet can be refused on arrival."""
        packet = parse(data)
        self.check(packet)
        if packet.temporal:
            self.references.check(packet)
        return packet

    @torch.no_grad()
    def decode(self, data: bytes, with_mask: bool = True) -> DecodedFrame:
        """Bytes -> detections (+ mask). Raises PacketError / ModelMismatchError, never crashes."""
        result = self.decode_batch([data], with_mask)[0]
        if isinstance(result, SplitPerceptionError):
            raise result
        return result

    @torch.no_grad()
    def decode_batch(self, packets: list[bytes], with_mask: bool = True) -> list[DecodedFrame | SplitPerceptionError]:
        """Packets of any widths (from any robots) -> one result per packet, in order: a DecodedFrame,
        or the PacketError / ModelMismatchError that refused it (one bad packet costs only itself).

        Each payload is entropy-decoded on its own; then the feature decoder runs once per width on
        that width's frames, and the tail and heads once on the whole batch.
        """
        results: list = [None] * len(packets)
        by_width: dict[int, list[tuple[int, Packet, torch.Tensor]]] = {}
        for k, data in enumerate(packets):
            try:
                packet = self.screen(data)
                y_hat = self._entropy_decode(packet)
            except (PacketError, ModelMismatchError) as exc:
                results[k] = exc
                continue
            by_width.setdefault(packet.width_index, []).append((k, packet, y_hat))
        order, good, features = [], [], []
        for i, group in sorted(by_width.items()):
            features.append(self.model.decoder_for(i)(torch.cat([y for _, _, y in group])))
            order += [k for k, _, _ in group]
            good += [p for _, p, _ in group]
        if features:
            out = self.model.teacher.back(torch.cat(features))
            for k, packet, r in zip(order, good, self.model.teacher.postprocess(out, [p.image_size for p in good])):
                results[k] = self._frame(packet, r, len(packets[k]), with_mask)
        return results

    def _entropy_decode(self, packet: Packet) -> torch.Tensor:
        """The packet's quantized bottleneck 1 x C x h x w; a version-3 frame is checked against and added
        to the held references. PacketError for a payload or reference that cannot be right."""
        c, h, w = packet.latent_shape
        codec, padding = self.model.latent_codecs[packet.width_index], 8 + _PAD_PER_SYMBOL * c * h * w
        if packet.temporal:
            symbols = self.references.decode(packet, codec.coder(), padding)
        else:
            symbols = codec.coder().decode(packet.payload + bytes(padding), (c, h, w))
        y_hat = codec.y_hat(symbols[None])
        if packet.temporal:
            self.references.add(packet, symbols)
        return y_hat

    @torch.no_grad()
    def teacher(self, rgb: np.ndarray) -> tuple[list[Detection], np.ndarray | None]:
        """The teacher (the same network without the bottleneck) on an uncompressed RGB frame: the
        reference each width is compared with. It takes its input from the frame here, in the form the
        torch teacher needs, whatever runtime encodes the frame onboard."""
        cfg, teacher = self.cfg, self.model.teacher
        x = model_input_tensor(rgb, cfg)
        result = teacher.postprocess(teacher(x), [rgb.shape[:2]])[0]
        return self.detections_of(result), _mask(result)

    def detections_of(self, result: dict) -> list[Detection]:
        """A postprocessed result (boxes, labels, scores) as Detections with class names."""
        names = self.cfg.class_names
        return [Detection(int(lab), names[int(lab) - 1], float(s), tuple(float(v) for v in box))
                for box, lab, s in zip(result["boxes"].tolist(), result["labels"].tolist(), result["scores"].tolist())
                if 1 <= int(lab) <= len(names)]

    def _frame(self, packet: Packet, result: dict, num_bytes: int, with_mask: bool) -> DecodedFrame:
        return DecodedFrame(packet.frame_id, packet.stamp_ns, packet.width, packet.image_size, num_bytes,
                            packet.stream_id, packet.width_index, packet.temporal, self.detections_of(result),
                            _mask(result) if with_mask else None)

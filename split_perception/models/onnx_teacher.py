"""A teacher from an ONNX detector (teacher.yaml), as the student's torch side needs it.

The detector is cut at its split tensor with `onnx.utils.extract_model` (`teachers/split.py`): the
front runs onboard (inside the onboard export), the tail offboard. Both parts are rebuilt as frozen
torch twins (`teachers/torch_twin.py`) so that training has gradients through the tail and the front
exports to ONNX with the slimmable projection behind it. Their weights are the ONNX file's: they are
not stored in checkpoints, which pin the file by its SHA-256 (`ModelConfig.teacher_sha256`) instead.
At inference (no gradient wanted, on the CPU) the tail runs on ONNX Runtime, the detector's own graph,
which is faster than the twin.
Boxes come from the head family's own decoding (`teachers/heads.py`). This teacher has no
segmentation head.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from ..config import ModelConfig
from ..teachers.letterbox import Letterbox
from ..teachers.split import split_model
from ..teachers.torch_twin import TorchTwin


def _frozen(module: nn.Module) -> nn.Module:
    """No gradients into it, and no state-dict entries (its weights live in the ONNX file)."""
    for m in module.modules():
        m._non_persistent_buffers_set.update(m._buffers)
        for p in m.parameters(recurse=False):
            p.requires_grad_(False)
    return module.eval()


def _split(spec):
    """The teacher's ONNX detector cut at its split tensor: (front, tail) graphs."""
    return split_model(onnx.load(str(spec.model_path)), spec.split.tensor)


class OnnxTeacher(nn.Module):
    """Front and tail of an ONNX detector as frozen torch modules, with its head family's decoding."""

    has_segmentation = False

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.spec = cfg.teacher_spec()
        parts = _split(self.spec)
        self.front_twin = _frozen(TorchTwin(parts.front))
        self.tail = _frozen(TorchTwin(parts.tail))
        self._tail_graph = parts.tail.SerializeToString()
        self._tail_session = None  # ONNX Runtime, made at the first inference (with the threads set by then)
        self.split_channels = int(self.spec.split.shape[1])
        self.score_thresh = cfg.score_thresh  # detections below it are dropped in `postprocess`

    @property
    def split_stride(self) -> int:
        return self.cfg.split_stride

    def train(self, mode: bool = True) -> "OnnxTeacher":
        return super().train(False)  # frozen: inference behaviour always

    def front_layers(self, split_index: int | None = None) -> nn.Module:
        """The part the onboard encoder runs: network input -> split tensor."""
        return _Front(self.front_twin)

    def front(self, x: Tensor, split_index: int | None = None) -> Tensor:
        return self.front_twin(x)[0]

    def back(self, z: Tensor, split_index: int | None = None) -> dict[str, Tensor]:
        """Split tensor -> the detector's raw outputs, by name: the torch twin where gradients flow
        (training through the frozen tail) or the tensor is on a GPU, else ONNX Runtime."""
        if (torch.is_grad_enabled() and z.requires_grad) or z.device.type != "cpu":
            return dict(zip(self.tail.output_names, self.tail(z)))
        if self._tail_session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = torch.get_num_threads()
            self._tail_session = ort.InferenceSession(self._tail_graph, opts, providers=["CPUExecutionProvider"])
        session = self._tail_session
        name, x = session.get_inputs()[0].name, z.detach().float().numpy()
        runs = [session.run(None, {name: x[i:i + 1]}) for i in range(len(x))]  # the graph's batch is 1
        return {o.name: torch.from_numpy(np.concatenate([r[k] for r in runs]))
                for k, o in enumerate(session.get_outputs())}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.back(self.front(x))

    @torch.no_grad()
    def postprocess(self, out: dict, orig_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Boxes (source-image pixels), labels (1-based class ids) and scores per image."""
        inp = self.spec.input
        transform = Letterbox.fit if inp.resize == "letterbox" else Letterbox.stretch  # as preprocessing resized
        arrays = {k: v.detach().float().cpu().numpy() for k, v in out.items()}
        results = []
        for i, (h, w) in enumerate(orig_sizes):
            dets = self.spec.head.decode({k: a[i:i + 1] for k, a in arrays.items()},
                                         [transform(w, h, inp.width, inp.height)])[0]
            dets = [d for d in dets if d.score >= self.score_thresh][: self.cfg.detections_per_img]
            results.append({"boxes": torch.tensor(np.array([d.box for d in dets], np.float32).reshape(-1, 4)),
                            "labels": torch.tensor([d.class_id + 1 for d in dets], dtype=torch.int64),
                            "scores": torch.tensor([d.score for d in dets], dtype=torch.float32)})
        return results


class _Front(nn.Module):
    """The front twin with its single output unwrapped (the encoder's `front` is a Tensor -> Tensor module)."""

    def __init__(self, twin: TorchTwin):
        super().__init__()
        self.twin = twin

    def forward(self, x: Tensor) -> Tensor:
        return self.twin(x)[0]


def onnx_front_only(cfg: ModelConfig) -> tuple[nn.Module, int]:
    """The front of an ONNX teacher alone (its torch twin, frozen) and the split tensor's channels: for
    a model that holds only its encoder, as `teacher.front_only` is for the built-in teacher."""
    spec = cfg.teacher_spec()
    return _Front(_frozen(TorchTwin(_split(spec).front))), int(spec.split.shape[1])

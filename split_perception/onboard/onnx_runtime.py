"""The onboard encoder on ONNX Runtime: numpy preprocessing, one ONNX graph per width, context-
adaptive rANS coding from the stored integer tables. Imports no torch (a robot installs
requirements-onboard.txt)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..codec.context import ContextCoder, ContextTables
from ..codec.packet import FINGERPRINT_BYTES, Packet
from ..codec.symbols import to_symbols
from ..config import find_width
from ..errors import CheckpointError, ConfigError, WidthError
from .export_files import OnboardExport
from .preprocess import model_input_array


class OnnxEncoder:
    """All widths' sessions are created once; `set_width` picks one for the next frame.

    One input buffer is reused for every frame, so one encode runs at a time (the node's lock).
    """

    runtime = "onnx"

    def __init__(self, export: OnboardExport, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("runtime 'onnx' needs onnxruntime (pip install -r requirements-onboard.txt)") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or 1)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads sleep: the CPU is shared
        # one session per width: without ONNX Runtime's arena and preplanned buffers each frees its
        # activations after a run instead of holding them all, at no cost in encode time measured
        # (`bench onboard` reports the peak RSS)
        opts.enable_cpu_mem_arena = False
        opts.enable_mem_pattern = False
        opts.log_severity_level = 3  # warnings about unused initializers are not the user's business
        self.export, self.cfg, self.fingerprint = export, export.cfg, export.fingerprint
        self._fp = bytes.fromhex(self.fingerprint)[:FINGERPRINT_BYTES]
        self._sessions, self._coders = [], []
        for t in export.widths:
            try:
                self._sessions.append(ort.InferenceSession(str(t.graph), opts,
                                                           providers=["CPUExecutionProvider"]))
            except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
                raise CheckpointError(f"{t.graph}: ONNX Runtime cannot load it ({exc})") from None
            self._coders.append(ContextCoder(ContextTables(t.quantized_cdf, t.cdf_length, t.offset)))
        self._index = len(self.cfg.widths) - 1
        self._input = np.empty((1, 3, *self.cfg.input_size), np.float32)

    @property
    def model(self):
        raise AttributeError("the onnx runtime has no torch model: open it with runtime='torch'")

    @property
    def widths(self) -> tuple[float, ...]:
        return tuple(self.cfg.widths)

    @property
    def width(self) -> float:
        return self.cfg.widths[self._index]

    def set_width(self, width: float) -> None:
        i = find_width(self.cfg.widths, width)
        if i is None:
            raise WidthError(f"width {width} is not one of this model's widths {list(self.cfg.widths)}")
        self._index = i

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        model_input_array(rgb, self.cfg, out=self._input[0])
        return self._input

    def bottleneck(self, x: np.ndarray, width_index: int) -> np.ndarray:
        """Network input -> float32 bottleneck (before rounding) at a width."""
        return self._sessions[width_index].run(None, {"image": x})[0]

    def symbols(self, y: np.ndarray, width_index: int) -> np.ndarray:
        """float32 bottleneck 1xCxHxW -> the int32 symbols CxHxW that are coded (`codec/symbols.py`)."""
        return to_symbols(y[0], self.export.widths[width_index].medians)

    def coder(self, width_index: int) -> ContextCoder:
        """The context coder of a width."""
        return self._coders[width_index]

    def frame(self, rgb: np.ndarray, frame_id: int = 0, stamp_ns: int = 0) -> tuple[Packet, np.ndarray]:
        """RGB -> the frame's version-2 packet without its payload, and its int32 symbols CxHxW."""
        i = self._index  # one consistent snapshot
        y = self.bottleneck(self.preprocess(rgb), i)
        c, h, w = self.export.widths[i].latent_shape
        if y.shape != (1, c, h, w):
            raise CheckpointError(f"width {self.cfg.widths[i]}: the graph gives a {y.shape} bottleneck, "
                                  f"the export says {(1, c, h, w)}")
        packet = Packet(self._fp, i, self.cfg.widths[i], frame_id, stamp_ns, tuple(rgb.shape[:2]), (c, h, w), b"")
        return packet, self.symbols(y, i)

    def encode(self, rgb: np.ndarray, frame_id: int = 0, stamp_ns: int = 0) -> bytes:
        packet, symbols = self.frame(rgb, frame_id, stamp_ns)
        return replace(packet, payload=self.coder(packet.width_index).encode(symbols)).to_bytes()

"""What the onboard encoder and the offboard decoder share: one loaded student model and its fingerprint."""

from __future__ import annotations

from pathlib import Path

from ..codec.packet import FINGERPRINT_BYTES
from .checkpoint import load_model


class ModelRuntime:
    """Loads a checkpoint once (CDF tables as stored); subclasses add encode or decode."""

    def __init__(self, model_path: str | Path | None = None):
        self._attach(*load_model(model_path))

    @classmethod
    def from_model(cls, model, fingerprint: str):
        """Wrap an in-memory model (training-time evaluation); its CDF tables must be computed."""
        self = cls.__new__(cls)
        self._attach(model, fingerprint)
        return self

    def _attach(self, model, fingerprint: str) -> None:
        self.model, self.fingerprint = model.eval(), fingerprint
        self.cfg = self.model.cfg
        self._fp = bytes.fromhex(self.fingerprint)[:FINGERPRINT_BYTES]

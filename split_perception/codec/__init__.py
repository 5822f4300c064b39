"""Bytes: the packet wire format and checkpoints (weights + stored entropy tables)."""

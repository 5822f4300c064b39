"""Onboard: camera frame -> packet bytes. Preprocessing, the encoder on ONNX Runtime (no torch) or
torch, and the per-width ONNX export it runs from."""

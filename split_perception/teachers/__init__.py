"""Teacher detectors shipped as ONNX graphs, and the tools that run and train through them."""

"""Deployment: ONNX export with BatchNorm folded, int8 quantization, weights files to ship, and the latency and
throughput benchmark of every way the package runs a model."""

"""Model building: Go-Metal's `ModelBuilder` chain, its layer table and rules, and the ONNX
format of a built model (export and import)."""

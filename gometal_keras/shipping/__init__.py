"""Shipping a trained model: `Predictor` over a saved model, a checkpoint or an ONNX file."""

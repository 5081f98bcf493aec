#!/usr/bin/env bash
# Inference throughput on the H200 (issue 13), from the project root on the device machine
# (JAX with CUDA there, no TensorFlow): `bash bench/h200_predict.sh`. Under 4 minutes.
# Needs the Keras wheels in .whl (../shared/device/keras-wheels.sh) carried along; the ONNX rows
# also need onnx and onnxruntime wheels in .whl (pip download onnx==1.23.2 onnxruntime==1.32.0
# --only-binary=:all: -d .whl for the device's Python), else they are reported as skipped.
# QUICK=1 runs tiny sizes (the local dry run: QUICK=1 KERAS_BACKEND=jax, without the install).
set -uo pipefail
if [ "${QUICK:-0}" != 1 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
out=${OUT:-/tmp/out}
mkdir -p "$out"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version --format=csv \
  | tee "$out/gpu_predict.txt"
python3 -c 'import jax, keras; print("jax", jax.__version__, "keras", keras.__version__, jax.devices())' \
  | tee -a "$out/gpu_predict.txt"
python3 bench/predict_throughput.py --json "$out/predict_jax.json" 2>&1 \
  | grep -v '^WARNING\|^I0000\|^E0000\|^W0000' | tee "$out/predict_jax.txt"

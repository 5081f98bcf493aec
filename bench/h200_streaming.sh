#!/usr/bin/env bash
# The streaming configuration on the H200 (JAX backend, no TensorFlow there), for bench/RESULTS.md:
#   bash bench/h200_streaming.sh            # 50,000 32x32 PNGs, float32 then mixed_bfloat16
#   QUICK=1 KERAS_BACKEND=jax bash bench/h200_streaming.sh   # the local dry run (CPU, 512 PNGs)
# Needs the Keras wheels in .whl (../shared/device/keras-wheels.sh) carried along, with Pillow
# added where the machine has none: `bash ../shared/device/keras-wheels.sh pillow` (the script
# says so below if `import PIL` fails there). Writes at most 6 files under $OUT. Under 4 minutes.
set -uo pipefail
if [ -z "${QUICK:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-$PWD}
PY=${PY:-python3}
out=${OUT:-/tmp/out}
mkdir -p "$out"
"$PY" -c 'import PIL' 2>/dev/null || { echo "Pillow is missing: carry its wheel in .whl (see the header)"; exit 1; }
{ nvidia-smi --query-gpu=name,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  nproc; "$PY" -c 'import jax, keras, PIL; print("jax", jax.__version__, "keras", keras.__version__, "pillow", PIL.__version__, jax.devices())'
} 2>&1 | tee "$out/machine.txt"
if [ -n "${QUICK:-}" ]; then
  sizes=(--quick --images 512 --batch-size 32 --rounds 1); precisions=(float32)
else
  sizes=(--images 50000 --batch-size 128 --rounds 3); precisions=(float32 mixed_bfloat16)
fi
folder=/tmp/gometal-stream-png
limit=${LIMIT:-110}  # seconds per precision; the dry run on a busy CPU needs more (LIMIT=900)
for p in "${precisions[@]}"; do
  timeout "$limit" "$PY" -m gometal_keras.bench streaming "${sizes[@]}" --precision "$p" \
    --folder "$folder" --json "$out/streaming_$p.json" 2>&1 \
    | grep -v '^WARNING\|^I0000\|^E0000' | tee "$out/streaming_$p.txt"
done

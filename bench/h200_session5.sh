#!/usr/bin/env bash
# Session 5 on the H200, two calls (each under 10 minutes), results under $OUT:
#   bash bench/h200_session5.sh stream   # issue 11: streaming (JAX f32, bf16) + a torch check
#   bash bench/h200_session5.sh memory   # issue 12: largest batch per precision, wide and cnn
source bench/h200_env.sh
case "${1:-stream}" in
  stream)
    LIMIT=150 bash bench/h200_streaming.sh
    KERAS_BACKEND=torch timeout 120 python3 -m gometal_keras.bench streaming --images 50000 \
      --batch-size 128 --rounds 1 --folder /tmp/gometal-stream-png \
      --json "$out/streaming_torch.json" 2>&1 | quiet | tee "$out/streaming_torch.txt"
    ;;
  memory)
    export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false
    for cfg in "wide 262144" "cnn 16384"; do
      set -- $cfg
      timeout 245 python3 -m gometal_keras.bench --max-batch --configs "$1" \
        --precisions float32,mixed_bfloat16 --max-batch-start "$2" --max-batch-limit 16777216 \
        --json "$out/max_batch_$1.json" 2>&1 | quiet | tee "$out/max_batch_$1.txt"
    done
    ;;
esac

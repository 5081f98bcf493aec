#!/usr/bin/env bash
# Session 7 on the H200, two calls (each under 10 minutes), results under $OUT:
#   bash bench/h200_session7.sh stream   # issue 11: streaming (JAX f32, bf16) with the cache
#                                        #   read by number; then where bf16's time goes
#   bash bench/h200_session7.sh memory   # issue 12: the largest batches narrowed from
#                                        #   session 6's brackets to the search's resolution
#   bash bench/h200_session7.sh scaling  # issue 10: the Trainer against the hand-written JAX
#                                        #   loop, seed and wide MLPs, every precision;
#                                        #   then the torch backend on the GPU (demo, streaming)
source bench/h200_env.sh
case "${1:-stream}" in
  stream)
    LIMIT=165 bash bench/h200_streaming.sh
    export KERAS_BACKEND=jax
    python3 -c 'from gometal_keras.bench.streaming import write_folder as w; w("/tmp/png", 50000)'
    timeout 150 python3 bench/diag_streaming.py /tmp/png mixed_bfloat16 6 2>&1 | quiet \
      | tee "$out/diag_bf16.txt"
    ;;
  memory)
    export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
    narrow() { timeout "$1" python3 bench/max_batch_narrow.py "${@:2}" 2>&1 | quiet \
      | tee -a "$out/narrow.txt"; }
    # Session 6's brackets: wide bf16 1,048,576 / 1,784,288 (out of memory), cnn bf16
    # 93,268 / 121,000 (out of memory), cnn f32 40,960 / 65,536 (ran past 80 s: re-probed).
    narrow 150 wide mixed_bfloat16 --good 1048576 --start 1784288 --limit 1784288 --bad 1784288
    narrow 120 cnn mixed_bfloat16 --good 93268 --start 121000 --limit 121000 --bad 121000
    narrow 300 cnn float32 --good 40960 --start 65536 --limit 65536
    ;;
  scaling)
    export KERAS_BACKEND=jax
    # (Two experiments ran here too: bench/diag_loss_scale.py at 4f20ad0 and
    # bench/diag_commit.py at 28e13c6; neither change was kept: RESULTS.md, session 7.)
    timeout 200 python3 bench/interleave_jax.py seed wide --rounds 40 2>&1 | quiet \
      | tee "$out/interleave_jax.txt"
    KERAS_BACKEND=torch timeout 100 python3 -m gometal_keras demo --epochs 4 2>&1 | quiet \
      | tee "$out/demo_torch.txt"
    KERAS_BACKEND=torch timeout 100 python3 -m gometal_keras.bench streaming --images 5000 \
      --batch-size 128 --rounds 1 --folder /tmp/gometal-stream-png-5k \
      --json "$out/streaming_torch.json" 2>&1 | quiet | tee "$out/streaming_torch.txt"
    ;;
esac

#!/usr/bin/env bash
# Session 6 on the H200, three calls (each under 10 minutes), results under $OUT:
#   bash bench/h200_session6.sh stream   # issue 11: streaming (JAX f32, bf16), calls read one late
#   bash bench/h200_session6.sh auto     # issue 11: where bf16 streaming's time goes; issue 12:
#                                        #   auto vs each fixed precision, interleaved;
#                                        #   and a torch streaming check on the GPU
#   bash bench/h200_session6.sh memory   # issue 12: why float32 fails where it does; the
#                                        #   largest batches narrowed from session 5's bounds
source bench/h200_env.sh
case "${1:-stream}" in
  stream)
    LIMIT=165 bash bench/h200_streaming.sh  # with SLOTS = 3 (from the diag in `auto`)
    ;;
  auto)
    export KERAS_BACKEND=jax GOMETAL_KERAS_CACHE_DIR=/tmp/gometal-keras-cache
    # Where a bf16 streamed epoch's time goes now: arrays vs 2, 3, 4 device slots, interleaved.
    python3 -c 'from gometal_keras.bench.streaming import write_folder as w; w("/tmp/png", 50000)'
    timeout 120 python3 bench/diag_streaming.py /tmp/png mixed_bfloat16 8 2>&1 | quiet \
      | tee "$out/diag_bf16.txt"
    timeout 300 python3 bench/interleave_auto.py seed wide cnn --rounds 60 2>&1 | quiet \
      | tee "$out/interleave_auto.txt"
    KERAS_BACKEND=torch timeout 90 python3 -m gometal_keras.bench streaming --images 5000 \
      --batch-size 128 --rounds 1 --folder /tmp/gometal-stream-png-5k \
      --json "$out/streaming_torch.json" 2>&1 | quiet | tee "$out/streaming_torch.txt"
    ;;
  memory)
    export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false
    probe() { timeout "$1" python3 -m gometal_keras.bench.max_batch "${@:2}" 2>&1 | quiet \
      | grep '^{' | sed "s/^/$2 $3: /" | tee -a "$out/probes.txt"; }
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
    probe 80 wide float32 655360    # failed in session 5 with no reason recorded
    probe 80 cnn float32 65536      # likewise
    probe 80 cnn float32 65535      # one sample less: a 2**31-element limit, or memory?
    narrow() { timeout "$1" python3 bench/max_batch_narrow.py "${@:2}" 2>&1 | quiet \
      | tee -a "$out/narrow.txt"; }
    # From session 5's peaks (bf16 grows ~31 KB a sample on wide, ~424 KB on cnn): near the
    # predicted limits, so two probes bracket them when memory is what limits.
    narrow 190 wide mixed_bfloat16 --good 1048576 --start 4000000 --limit 4800000
    narrow 150 cnn mixed_bfloat16 --good 65536 --start 290000 --limit 348000
    ;;
esac

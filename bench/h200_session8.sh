#!/usr/bin/env bash
# Session 8 on the H200, one call (under 10 minutes), results under $OUT:
#   bash bench/h200_session8.sh scaling  # issue 10: the JAX fused epoch runs optimistically
#                                        #   (every update committed, the guarded epoch run
#                                        #   again only when a step fails its check): the
#                                        #   Trainer against the hand-written JAX loop,
#                                        #   interleaved, then the bench's seed and wide rows
#   bash bench/h200_session8.sh diag     # this tree's program against 47851c1's (each step
#                                        #   checked) and the guard off, interleaved with the
#                                        #   reference (bench/diag_optimistic.py). The device
#                                        #   copy has no git history: carry 47851c1's file,
#                                        #   `git show 47851c1:gometal_keras/engines/jax.py >
#                                        #   bench/head_jax_tmp.py`, and set HEAD_FILE to it
#   bash bench/h200_session8.sh stream   # issue 11's streaming figures again (first run
#                                        #   with streamed calls reading their flag; then
#                                        #   checked step by step: RESULTS.md, session 8)
source bench/h200_env.sh
case "${1:-scaling}" in
  scaling)
    export KERAS_BACKEND=jax
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
    timeout 220 python3 bench/interleave_jax.py seed wide --rounds 40 2>&1 | quiet \
      | tee "$out/interleave_jax.txt"
    timeout 300 python3 -m gometal_keras.bench --configs seed,wide \
      --precisions float32,mixed_float16,mixed_bfloat16,auto \
      --runners gometal,jax-reference,keras --repeats 5 --json "$out/bench_jax.json" \
      2>&1 | quiet | tee "$out/bench_jax.txt"
    ;;
  diag)
    export KERAS_BACKEND=jax
    timeout 500 python3 bench/diag_optimistic.py seed wide --rounds "${ROUNDS:-30}" --head "${HEAD_FILE:-47851c1}" --variants "${VARIANTS:-head,tree,noguard}" 2>&1 | quiet \
      | tee "$out/diag_optimistic.txt"
    ;;
  stream)
    LIMIT=150 bash bench/h200_streaming.sh
    ;;
esac

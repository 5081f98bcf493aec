#!/usr/bin/env bash
# Session 9 on the H200, one call (under 10 minutes), results under $OUT:
#   bash bench/h200_session9.sh where   # issue 10's seed MLP: where its epoch's time goes.
#                                       #   Compiled ops of a step (ours and the reference's,
#                                       #   HLO under $OUT/hlo), the host's share of an epoch
#                                       #   (cProfile), and the ratio at 15 and 150 steps an
#                                       #   epoch (a per-call cost shrinks tenfold, a per-step
#                                       #   one does not)
#   bash bench/h200_session9.sh diag    # the step's compiled ops again, then this tree's
#                                       #   program against e2008e3's, interleaved with the
#                                       #   reference (bench/diag_optimistic.py)
#   bash bench/h200_session9.sh phases  # the seed epoch's wall time phase by phase
#   bash bench/h200_session9.sh final   # bench/interleave_jax.py on seed and wide (40
#                                       #   rounds), then the demo and the bench's Trainer
#                                       #   rows under KERAS_BACKEND=torch
#   bash bench/h200_session9.sh torch   # the torch engine against e2008e3's, interleaved,
#                                       #   then the bench's torch rows again
source bench/h200_env.sh
export KERAS_BACKEND=jax
mkdir -p "$out/hlo"
case "${1:-where}" in
  where)
    for p in float32 mixed_float16 mixed_bfloat16; do
      timeout 120 python3 bench/hlo_count.py seed --precision $p --dump "$out/hlo" 2>&1 | quiet \
        | tee -a "$out/hlo_count.txt"
    done
    timeout 120 python3 bench/host_time.py seed --precision float32 --calls 300 2>&1 | quiet \
      > "$out/host_time.txt"; head -3 "$out/host_time.txt"
    for steps in 15 150; do
      timeout 150 python3 bench/interleave_jax.py seed --steps $steps --rounds 30 2>&1 | quiet \
        | tee -a "$out/interleave_steps.txt"
    done
    ;;
  diag)  # this tree's program against e2008e3's (carry both files: see bench/RESULTS.md)
    for p in float32 mixed_float16 mixed_bfloat16; do
      timeout 100 python3 bench/hlo_count.py seed --precision $p --dump "$out/hlo" 2>&1 | quiet \
        | tee -a "$out/hlo_count.txt"
    done
    (cd "$out" && tar czf hlo.tgz hlo && rm -rf hlo)
    timeout 420 python3 bench/diag_optimistic.py seed wide --rounds "${ROUNDS:-25}" \
      --head bench/head_jax_tmp.py --head-late bench/head_late_tmp.py --variants head,tree \
      2>&1 | quiet | tee "$out/diag_optimistic.txt"
    timeout 100 python3 bench/host_time.py seed --precision float32 --calls 300 2>&1 | quiet \
      > "$out/host_time.txt"; head -3 "$out/host_time.txt"
    ;;
  final)  # the canonical interleaved ratios, then the torch demo and Trainer rows
    timeout 200 python3 bench/interleave_jax.py seed wide --rounds 40 2>&1 | quiet \
      | tee "$out/interleave_jax.txt"
    export KERAS_BACKEND=torch
    timeout 120 python3 examples/mixed_precision_demo.py 2>&1 | quiet | tail -25 \
      | tee "$out/demo_torch.txt"
    timeout 200 python3 -m gometal_keras.bench --configs seed,wide \
      --precisions float32,mixed_float16,mixed_bfloat16,auto --runners gometal,keras --repeats 5 \
      --json "$out/bench_torch.json" 2>&1 | quiet | tail -20 | tee "$out/bench_torch.txt"
    ;;
  torch)  # the torch engine's optimistic guarded epoch against e2008e3's (carry
          # bench/head_torch_tmp.py), then the bench's Trainer and fit rows on torch
    export KERAS_BACKEND=torch
    timeout 240 python3 bench/interleave_torch.py seed wide --head bench/head_torch_tmp.py \
      --rounds 10 2>&1 | quiet | tee "$out/interleave_torch.txt"
    timeout 200 python3 -m gometal_keras.bench --configs seed,wide \
      --precisions float32,mixed_float16,mixed_bfloat16,auto --runners gometal,keras --repeats 5 \
      --json "$out/bench_torch.json" 2>&1 | quiet | tail -20 | tee "$out/bench_torch.txt"
    ;;
  phases)  # the seed epoch's wall time, phase by phase (bench/phases_jax.py)
    for p in float32 mixed_float16; do
      timeout 100 python3 bench/phases_jax.py seed --precision $p 2>&1 | quiet | tee -a "$out/phases.txt"
    done
    ;;
esac

#!/usr/bin/env bash
# Issue 12 on the H200 (JAX, no TensorFlow), from the project root on the device machine:
#   bash bench/h200_auto.sh auto     # precision="auto" against each fixed precision (seed, wide,
#                                    # cnn), and a second Trainer in a new process without trials
#   bash bench/h200_auto.sh memory   # peak memory and the largest batch per precision (wide, cnn)
# Each mode finishes in under 4 minutes and writes at most 8 files under $OUT. Needs the Keras
# wheels in .whl (../shared/device/keras-wheels.sh) carried along. QUICK=1 is the local dry run
# on a CPU (KERAS_BACKEND=jax, the installed packages, tiny sizes): nothing is installed then.
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
export GOMETAL_KERAS_CACHE_DIR=${GOMETAL_KERAS_CACHE_DIR:-/tmp/gometal-keras-cache}
if [ "${QUICK:-0}" = 1 ]; then
  py=${PY:-python3}
  export PYTHONPATH=$PWD
  quick="--quick"; repeats=1; configs_auto=seed; configs_mem=seed; limit=256; precs=float32,mixed_bfloat16
else
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
  py=python3
  quick=""; repeats=5; configs_auto=seed,wide,cnn; configs_mem=wide,cnn; limit=2097152
  precs=float32,mixed_bfloat16
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
fi
quiet() { grep -v '^WARNING\|^I0000\|^E0000\|^W0000'; }
rm -rf "$GOMETAL_KERAS_CACHE_DIR"

case "${1:-auto}" in
  auto)
    # 1. auto against float32, mixed_float16 and mixed_bfloat16, Trainer rows, one run.
    $py -m gometal_keras.bench $quick --configs $configs_auto \
      --precisions float32,mixed_float16,mixed_bfloat16,auto --runners gometal \
      --repeats $repeats --json "$out/bench_auto.json" 2>&1 | quiet | tee "$out/bench_auto.txt"
    # 2. auto's step time over the fastest fixed precision's, per config (done when <= 1.03).
    $py - "$out/bench_auto.json" <<'EOF' 2>&1 | tee "$out/auto_vs_fastest.txt"
import json, sys
rows = [r for r in json.load(open(sys.argv[1]))["results"] if r["seconds_per_step"]]
for config in dict.fromkeys(r["config"] for r in rows):
    mine = {r["precision"]: r for r in rows if r["config"] == config}
    fixed = {p: r["seconds_per_step"] for p, r in mine.items() if p != "auto"}
    best = min(fixed, key=fixed.get)
    auto = mine.get("auto")
    if auto is None:
        print(f"{config}: no auto row"); continue
    ratio = auto["seconds_per_step"] / fixed[best]
    print(f"{config}: auto chose {auto['precision_run']} {auto['seconds_per_step'] * 1e3:.4f} ms/step;"
          f" fastest fixed {best} {fixed[best] * 1e3:.4f} ms/step; auto/fastest {ratio:.3f}"
          f" ({'within' if ratio <= 1.03 else 'NOT within'} 3 %)")
EOF
    # 3. Free the second time: the same Trainer(precision="auto") in two fresh processes, the
    #    first with an empty cache (it times and stores), the second reading the decision.
    rm -rf "$GOMETAL_KERAS_CACHE_DIR"
    for n in 1 2; do
      $py - <<'EOF' 2>&1 | quiet
import time
t0 = time.perf_counter()
from gometal_keras import Trainer
from gometal_keras.bench.configs import configs
from gometal_keras.core.config import TrainerConfig
cfg = configs()["seed"]
t1 = time.perf_counter()
t = Trainer(cfg.builder(), TrainerConfig(batch_size=cfg.batch, precision="auto", seed=42))
t2 = time.perf_counter()
d = t.decision
print(f"import {t1 - t0:.2f} s; Trainer {t2 - t1:.2f} s; origin {d.origin}; trials "
      f"{d.trial_seconds:.2f} s; chosen {d.chosen.label()}; {d.reason}")
for c in d.candidates:
    s = c.spread
    print(f"  {c.plan.label()}: median {c.seconds * 1e3:.4f} ms/step, "
          f"{s.low * 1e3:.4f}-{s.high * 1e3:.4f} over {len(c.samples)} rounds")
EOF
    done | tee "$out/second_process.txt"
    $py -m gometal_keras info 2>&1 | quiet | tail -n 4 | tee "$out/info_cache.txt"
    ;;
  memory)
    # Peak memory at the config's batch and the largest batch that trains, per precision:
    # growth x4 then bisection to 20 %, each probe a fresh process. The allocator grows on
    # demand (no 75 % preallocation), so a probe fails where the whole GPU is used up.
    export XLA_PYTHON_CLIENT_PREALLOCATE=false
    timeout 225 $py -m gometal_keras.bench $quick --max-batch --configs $configs_mem \
      --precisions $precs --max-batch-limit $limit --json "$out/max_batch.json" 2>&1 \
      | quiet | tee "$out/max_batch.txt"
    ;;
esac

#!/usr/bin/env bash
# The H200 runs behind bench/RESULTS.md, from the project root on the device machine
# (JAX and PyTorch with CUDA there, no TensorFlow): `bash bench/h200.sh jax|torch|overhead|verify|demo|plan|interleave`.
# Needs the Keras wheels in .whl (../shared/device/keras-wheels.sh) carried along.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
out=${OUT:-/tmp/out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
python3 -c 'import jax, keras, torch; print("jax", jax.__version__, "keras", keras.__version__, "torch", torch.__version__, jax.devices())' | tee -a "$out/gpu.txt"
case "${1:-jax}" in
  jax)
    python3 -m gometal_keras.bench --configs seed,wide,cnn \
      --precisions float32,float32-full,mixed_float16,mixed_bfloat16,auto \
      --runners gometal,keras,jax-reference --repeats 5 --json "$out/bench_jax.json" \
      2>&1 | grep -v '^WARNING\|^I0000\|^E0000' | tee "$out/bench_jax.txt"
    ;;
  torch)
    python3 -m gometal_keras.bench --configs seed,wide,cnn \
      --precisions float32,float32-full,mixed_float16,mixed_bfloat16 \
      --runners torch-eager,torch-compile --repeats 5 --json "$out/bench_torch.json" \
      2>&1 | grep -v '^WARNING\|^I0000\|^E0000' | tee "$out/bench_torch.txt"
    ;;
  overhead)
    for d in 0 1; do
      flag=$([ "$d" = 1 ] && echo "--devices 1")
      python3 -m gometal_keras.bench --configs seed,wide --runners gometal $flag \
        --precisions float32,mixed_float16,mixed_bfloat16 --repeats 10 \
        --json "$out/bench_devices$d.json" 2>&1 | grep -v '^WARNING\|^I0000\|^E0000' \
        | tee "$out/bench_devices$d.txt"
    done
    for cfg in seed wide; do
      for p in float32 mixed_float16 mixed_bfloat16; do python3 bench/attribute_jax.py $cfg $p; done
    done 2>&1 | grep -v '^WARNING\|^I0000\|^E0000' | tee "$out/attribute.txt"
    ;;
  verify)
    python3 -m gometal_keras.bench --configs seed,wide \
      --precisions float32,mixed_float16,mixed_bfloat16,auto \
      --runners gometal,jax-reference --repeats 10 --json "$out/bench_verify.json" \
      2>&1 | grep -v '^WARNING\|^I0000\|^E0000' | tee "$out/bench_verify.txt"
    ;;
  plan)
    # After the typed-plan redesign: the Trainer against the hand-written JAX loop, the demo
    # on JAX, then the demo and the Trainer / Keras fit rows on PyTorch.
    python3 -m gometal_keras.bench --configs seed,wide \
      --precisions float32,mixed_float16,mixed_bfloat16,auto \
      --runners gometal,jax-reference --repeats 10 --json "$out/bench_verify.json" \
      2>&1 | grep -v '^WARNING\|^I0000\|^E0000' | tee "$out/bench_verify.txt"
    python3 examples/mixed_precision_demo.py 2>&1 | tee "$out/demo_seed_jax.txt"
    export KERAS_BACKEND=torch
    python3 -m gometal_keras info 2>&1 | tee "$out/info_torch.txt"
    python3 examples/mixed_precision_demo.py --json "$out/demo_seed_torch.json" 2>&1 \
      | tee "$out/demo_seed_torch.txt"
    python3 -m gometal_keras.bench --configs seed,wide \
      --precisions float32,mixed_float16,mixed_bfloat16,auto \
      --runners gometal,keras --repeats 5 --json "$out/bench_torch_trainer.json" \
      2>&1 | grep -v '^WARNING\|^I0000\|^E0000' | tee "$out/bench_torch_trainer.txt"
    ;;
  interleave)
    # The Trainer and the hand-written JAX loop with their epochs interleaved, then the
    # demo on PyTorch.
    python3 bench/interleave_jax.py seed wide --rounds 60 2>&1 \
      | grep -v '^WARNING\|^I0000\|^E0000' | tee "$out/interleave_jax.txt"
    KERAS_BACKEND=torch python3 examples/mixed_precision_demo.py \
      --json "$out/demo_seed_torch.json" 2>&1 | tee "$out/demo_seed_torch.txt"
    ;;
  demo)
    python3 -m gometal_keras info 2>&1 | tee "$out/info.txt"
    python3 examples/mixed_precision_demo.py 2>&1 | grep -v '^WARNING\|^I0000\|^E0000' \
      | tee "$out/demo_seed.txt"
    python3 examples/mixed_precision_demo.py --layers 4096,2048 --batch-size 1024 \
      --samples 65536 --epochs 10 --early-stop 0 --json "$out/demo_wide.json" 2>&1 \
      | grep -v '^WARNING\|^I0000\|^E0000' | tee "$out/demo_wide.txt"
    ;;
esac

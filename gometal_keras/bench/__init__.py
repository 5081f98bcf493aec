"""``python -m gometal_keras.bench``: the Trainer against plain Keras ``fit`` and PyTorch AMP.

For each configuration (``seed``, ``wide``, ``cnn``; see `gometal_keras.bench.configs`),
precision (``float32``, ``mixed_float16``, ``mixed_bfloat16``, and ``float32-full`` where
float32 products would otherwise run as TF32) and runner (``gometal``, ``keras``, and on a
CUDA GPU ``torch-eager`` and ``torch-compile``; see `gometal_keras.bench.runners`), it
measures the steady-state seconds per step and sets it against a roofline floor whose two
ceilings are measured in the same run (`gometal_keras.bench.roofline`).

A run has three steps: `gometal_keras.bench.planning` lists the (config, precision,
runner) cells to measure and the skipped ones with their reasons; `.measure` runs each
cell through the runner registered under its name (`runners.RUNNERS`, each taking one
`measurement.RunRequest` and returning a `measurement.Timing`); `.derive` computes the
floors, ratios and speedups of the rows from the measurements.

Derived figures:

* ``tflops`` = training FLOPs per step / seconds per step / 1e12, training FLOPs per step
  = 3 x batch x forward matrix FLOPs (forward = 2 x MACs of dense and conv layers).
* ``floor_seconds`` = max(FLOPs / measured matrix rate of the precision's dtype,
  estimated bytes / measured copy bandwidth); ``bound`` says which term is larger.
* ``ratio_to_floor`` = seconds per step / floor (1.0 is perfect).
* ``speedup_vs_float32`` = the same runner's float32 seconds per step / this row's;
  ``speedup_vs_float32_full`` likewise against ``float32-full`` (where it ran).
* ``loss`` = mean training loss of the last epoch, after ``(warmup + repeats) * steps``
  steps from the same initial weights and data for every runner.

JSON written by ``--json PATH`` (schema ``gometal_keras.bench/1``)::

    {
      "schema": "gometal_keras.bench/1",
      "date": ISO-8601 time the run started, "command": the command line,
      "wall_seconds": float, "backend": "tensorflow" | "jax" | "torch",
      "device": {DeviceInfo fields..., "description": str},
      "versions": `gometal_keras.reporting.environment.versions` ({"python", "keras", ...: version
                  string or null when not installed}),
      "settings": {"quick", "steps" (null = per config), "repeats", "warmup", "seed",
                   "configs", "precisions", "runners", "devices"},
      "rates": {"matmul_flops": {precision: FLOP/s}, "bandwidth": bytes/s,
                "matmul_n": int, "copy_bytes": int},
      "configs": {name: {"batch", "steps", "samples", "parameters",
                         "train_flops_per_step", "layers": [str], "note"}},
      "results": [{"config", "precision", "runner", "seconds_per_step",
                   "epoch_seconds": [float], "steps", "flops_per_step", "bytes_per_step",
                   "tflops", "floor_seconds", "bound": "compute" | "memory",
                   "ratio_to_floor", "speedup_vs_float32", "speedup_vs_float32_full",
                   "loss", "loss_after_steps", "detail", "precision_run" (the Trainer
                   precision that ran: for "auto" the one chosen), "error": null or str}],
      "skipped": [{"config", "precision", "runner", "reason"}]
    }

Unknown figures are ``null``. Nothing here changes Keras' global dtype policy or seeds,
and with ``KERAS_BACKEND=jax`` TensorFlow is never imported.
"""

"""``python -m gometal_keras.bench``: `fit` and `predict` as users call them, beside yardsticks.

For each named configuration (``seed``, ``wide``, ``wide-4096``, ``cnn``, each with its own
batch and steps per epoch, and ``streaming``; see `gometal_keras.bench.configs` and
`.streaming`), precision (``float32``, ``mixed_float16``, ``mixed_bfloat16``,
``float32-full`` where float32 products would otherwise run as TF32, and ``auto``) and
runner (``gometal``: ``Trainer.fit(x, y, epochs=N)`` and ``Trainer.predict``;
``gometal-epoch``: the same Trainer's bare epochs; ``keras``: plain Keras ``fit``;
``jax-reference``: the hand-written JAX loop; on a CUDA GPU ``torch-eager`` and
``torch-compile``; see `gometal_keras.bench.runners`), it measures the steady-state seconds
per step, interleaved round by round, and sets it against a roofline floor whose two
ceilings are measured in the same run (`gometal_keras.bench.roofline`).

A run has three steps: `gometal_keras.bench.planning` lists the (config, precision,
runner) cells to measure and the skipped ones with their reasons; `.measure` builds each
cell's session through the runner registered under its name (`runners.RUNNERS`, each
taking one `measurement.RunRequest` and returning a `measurement.Session`), calls every
session of a configuration once untimed, then in ``--repeats`` rounds, the order rotated
each round, each call ``--epochs`` epochs (the first of each call not counted); `.derive`
computes the floors, ratios and speedups of the rows from the measurements.

Derived figures:

* ``tflops`` = training FLOPs per step / seconds per step / 1e12, training FLOPs per step
  = 3 x batch x forward matrix FLOPs (forward = 2 x MACs of dense and conv layers).
* ``floor_seconds`` = max(FLOPs / measured matrix rate of the precision's dtype,
  estimated bytes / measured copy bandwidth); ``bound`` says which term is larger.
* ``ratio_to_floor`` = seconds per step / floor (1.0 is perfect).
* ``speedup_vs_float32`` = the same runner's float32 seconds per step / this row's;
  ``speedup_vs_float32_full`` likewise against ``float32-full`` (where it ran).
* ``vs_reference`` = median over rounds of (this row's round time / ``jax-reference``'s
  round time, same config and precision), with the 10th and 90th percentiles of those
  ratios (``fit_over_epoch`` likewise: ``gometal`` over ``gometal-epoch``). A round time
  is the median of the round's counted epochs.
* ``call_overhead_seconds`` = median over calls of (call wall time - its epochs' seconds).
* ``predict_samples_per_s`` = samples / median seconds of one prediction over the data.
* ``loss`` = mean training loss of the last epoch, after ``(warmup + repeats) * epochs *
  steps`` steps from the same initial weights and data for every runner.

JSON written by ``--json PATH`` (schema ``gometal_keras.bench/2``; with ``streaming``, its
results under ``"streaming"``)::

    {
      "schema": "gometal_keras.bench/1",
      "date": ISO-8601 time the run started, "command": the command line,
      "wall_seconds": float, "backend": "tensorflow" | "jax" | "torch",
      "device": {DeviceInfo fields..., "description": str},
      "versions": `gometal_keras.reporting.environment.versions` ({"python", "keras", ...: version
                  string or null when not installed}),
      "settings": {"quick", "steps" (null = per config), "repeats", "warmup", "seed",
                   "configs", "precisions", "runners", "devices", "epochs", "predict"},
      "rates": {"matmul_flops": {precision: FLOP/s}, "bandwidth": bytes/s,
                "matmul_n": int, "copy_bytes": int},
      "configs": {name: {"batch", "steps", "samples", "parameters",
                         "train_flops_per_step", "layers": [str], "note"}},
      "results": [{"config", "precision", "runner", "seconds_per_step",
                   "epoch_seconds": [float], "round_seconds": [float], "steps",
                   "flops_per_step", "bytes_per_step", "tflops", "floor_seconds",
                   "bound": "compute" | "memory", "ratio_to_floor",
                   "speedup_vs_float32", "speedup_vs_float32_full",
                   "vs_reference", "fit_over_epoch": null or {"ratio", "p10", "p90",
                   "rounds"}, "call_overhead_seconds", "predict_samples_per_s",
                   "loss", "loss_after_steps", "detail", "precision_run" (the Trainer
                   precision that ran: for "auto" the one chosen), "error": null or str}],
      "skipped": [{"config", "precision", "runner", "reason"}]
    }

Unknown figures are ``null``. Nothing here changes Keras' global dtype policy or seeds,
and with ``KERAS_BACKEND=jax`` TensorFlow is never imported.
"""

from gometal_keras.core.native_logs import import_backend

# This folder's modules import Keras: it starts here, with TensorFlow's and XLA's C++ log
# lines kept off stderr (`gometal_keras.core.native_logs`), whichever module is imported first.
import_backend()

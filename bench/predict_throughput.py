"""Inference throughput: plain `model.predict`, `Predictor` (checkpoint and ONNX), ONNX Runtime.

For the seed MLP (784-512-256-10) and the digits CNN (with BatchNorm), each under float32 and
mixed_bfloat16 weights, this times samples per second of: Keras' ``model.predict``; a
`Predictor` on the `Trainer.save` checkpoint (Keras inside); a `Predictor` on the ONNX export
(ONNX Runtime's CPU provider inside); and a bare ``onnxruntime.InferenceSession.run`` per
batch. The models are untrained (throughput does not depend on the weights' values). Rows
whose library is missing (onnx, onnxruntime) are reported as skipped.

Run: python bench/predict_throughput.py [--samples 8192] [--batch 256] [--repeats 5]
     [--json out.json]   (QUICK=1 in the environment: tiny sizes, for a dry run)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable

import keras
import numpy as np

from gometal_keras import DemoSettings, ModelBuilder, Trainer, TrainerConfig
from gometal_keras.examples import digits_cnn
from gometal_keras.reporting.demo import build_model
from gometal_keras.shipping.predictor import Predictor


def models() -> dict[str, ModelBuilder]:
    """The seed MLP (the demo's model) and the digits CNN with BatchNorm, as builder chains."""
    return {
        "seed_mlp": build_model(DemoSettings(batch_size=64)),
        "digits_cnn": digits_cnn.builder(batchnorm=True),
    }


def best_rate(fn: Callable[[], object], samples: int, repeats: int) -> float:
    """Samples per second of the fastest of `repeats` timed calls, after one warm-up call."""
    fn()
    best = min(_timed(fn) for _ in range(repeats))
    return samples / best


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def runners(
    trainer: Trainer, ckpt: str, onnx_path: str, batch: int, ort: object
) -> dict[str, Callable[[np.ndarray], object]]:
    """What is timed, each a function of the samples: Keras, Predictor, bare ONNX Runtime."""
    model = trainer.model
    timed: dict[str, Callable[[np.ndarray], object]] = {
        "keras model.predict": lambda x: model.predict(x, batch_size=batch, verbose=0),
        "Predictor(checkpoint)": Predictor.load(ckpt, batch_size=batch).predict,
    }
    if ort is not None:
        trainer.export(onnx_path, format="onnx")
        timed["Predictor(onnx)"] = Predictor.load(onnx_path, batch_size=batch).predict
        session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        timed["onnxruntime session.run"] = lambda x: [
            session.run(None, {"input": x[i : i + batch]}) for i in range(0, len(x), batch)
        ]
    return timed


def main(argv: list[str] | None = None) -> int:
    quick = os.environ.get("QUICK") == "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256 if quick else 8192)
    parser.add_argument("--batch", type=int, default=64 if quick else 256)
    parser.add_argument("--repeats", type=int, default=2 if quick else 5)
    parser.add_argument("--json", help="write the rows here as JSON")
    args = parser.parse_args(argv)
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    rows, tmp = [], tempfile.mkdtemp()
    for name, builder in models().items():
        for precision in ("float32", "mixed_bfloat16"):
            config = TrainerConfig(
                batch_size=builder.batch_size, precision=precision, seed=0, jit_compile=False
            )
            trainer = Trainer(builder, config)
            x = np.random.default_rng(0).random(
                (args.samples, *trainer.model.input_shape[1:]), dtype=np.float32
            )
            ckpt, onnx_path = os.path.join(tmp, f"{name}.gmk"), os.path.join(tmp, f"{name}.onnx")
            trainer.save(ckpt)
            timings = runners(trainer, ckpt, onnx_path, args.batch, ort)
            for runner, fn in timings.items():
                rate = best_rate(lambda f=fn, x=x: f(x), len(x), args.repeats)
                rows.append(
                    {
                        "model": name,
                        "precision": precision,
                        "runner": runner,
                        "samples_per_s": round(rate, 1),
                    }
                )
                print(
                    f"{name:>10} {precision:>14} {runner:<26} {rate:12,.0f} samples/s", flush=True
                )
            if ort is None:
                rows.append(
                    {
                        "model": name,
                        "precision": precision,
                        "runner": "onnx rows",
                        "skipped": "onnxruntime is not installed",
                    }
                )
    facts = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "onnxruntime": getattr(ort, "__version__", None),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "samples": args.samples,
        "batch": args.batch,
        "repeats": args.repeats,
    }
    print(json.dumps(facts))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"facts": facts, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Count the compiled ops of one training step: the Trainer's whole-epoch program against
the hand-written JAX loop's (issue 10's seed MLP: where a 15-step epoch's time goes).

On a GPU each top-level instruction of the scan's loop body is roughly one kernel launch
(a fusion, a cuBLAS call, a copy), so on a tiny model the count sets the step time.
Prints the counts by kind, and with ``--dump DIR`` writes both programs' HLO text.

    KERAS_BACKEND=jax python bench/hlo_count.py seed --precision float32
"""

import argparse
import collections
import re
import sys
from typing import ClassVar

sys.path.insert(0, "bench")

import jax
import jax.numpy as jnp
from interleave_jax import fused_trainer

from gometal_keras.bench import configs, reference
from gometal_keras.engines.jax.program import JaxProgram

SKIPPED = ("parameter", "get-tuple-element", "tuple", "constant", "bitcast")


def body_ops(text: str) -> collections.Counter:
    """Kinds of the instructions in the computations a while loop runs as its body."""
    bodies = set(re.findall(r"while\(.*?body=%?([\w.\-]+)", text))
    counts: collections.Counter = collections.Counter()
    current = None
    for line in text.splitlines():
        head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if head:
            current = head.group(1)
            continue
        if line.startswith("}"):
            current = None
        elif current in bodies and "=" in line:
            m = re.search(r"= \S+ ([\w\-]+)\(", line)
            if m and m.group(1) not in SKIPPED:
                kind = m.group(1)
                if kind == "custom-call":
                    t = re.search(r'custom_call_target="([^"]+)"', line)
                    kind += ":" + (t.group(1) if t else "?")
                counts[kind] += 1
    return counts


class Exposed(JaxProgram):
    """The Trainer's JAX program, its compiled epochs and state shown for lowering."""

    made: ClassVar[list] = []

    def _compile(self, *args) -> None:
        super()._compile(*args)
        Exposed.made.append(self)

    def epochs(self) -> dict:
        return {"plain": self._epoch, "optimistic": self._optimistic_epoch}

    def values(self) -> tuple:
        return self._state()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--dump", default="")
    args = parser.parse_args()
    cfg = configs.configs()[args.config]
    _, data = fused_trainer(cfg, args.precision, Exposed)
    program = Exposed.made[-1]
    texts = {}
    for label, fn in program.epochs().items():
        lowered = fn.lower(program.values(), data.xs, data.ys, jnp.bool_(True))
        texts[label] = lowered.compile().as_text()
    builder = cfg.builder()
    params = jax.device_put(reference.init_params(builder, 42))
    zeros = jax.tree.map(jnp.zeros_like, params)
    state = (params, zeros, zeros, jnp.float32(0), jax.random.key(42))
    epoch = reference.make_epoch(builder, args.precision)
    texts["reference"] = epoch.lower(state, data.xs, data.ys).compile().as_text()
    for label, text in texts.items():
        c = body_ops(text)
        print(f"{label:12s} {sum(c.values()):4d} ops in the loop body: {dict(c.most_common())}")
        if args.dump:
            with open(f"{args.dump}/{args.config}_{args.precision}_{label}.hlo", "w") as f:
                f.write(text)


if __name__ == "__main__":
    main()

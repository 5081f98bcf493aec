"""The torch engine's program against an earlier one, epochs interleaved (ABAB...).

Both Trainers are built first (the earlier `TorchProgram` from a file: the device copy has
no git history), then each round runs one epoch of each, alternating which goes first;
prints the median ms a step of each and the median ratio of their rounds. Run from the
project root:

    git show e2008e3:gometal_keras/engines/torch.py > bench/head_torch_tmp.py
    KERAS_BACKEND=torch python bench/interleave_torch.py seed wide --head bench/head_torch_tmp.py
"""

import argparse
import statistics
import sys
import types

sys.path.insert(0, "bench")

from interleave_jax import fused_trainer, spread, timed

from gometal_keras.bench import configs
from gometal_keras.engines.torch import TorchProgram


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--precisions", default="float32,mixed_float16,mixed_bfloat16")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--head", required=True, help="the earlier engines/torch.py")
    args = parser.parse_args()
    head = sys.modules["head_torch"] = types.ModuleType("head_torch")
    with open(args.head) as f:
        exec(compile(f.read(), "head_torch", "exec"), head.__dict__)
    print("config precision        head ms/step  tree ms/step  tree/head (median, p10-p90)")
    for name in args.configs:
        cfg = configs.configs()[name]
        for precision in args.precisions.split(","):
            runs = {}
            for label, program in (("head", head.TorchProgram), ("tree", TorchProgram)):
                trainer, data = fused_trainer(cfg, precision, program)
                runs[label] = lambda t=trainer, d=data: t.train_epoch(d)
            for run in runs.values():
                run(), run()  # warm up
            times = {"head": [], "tree": []}
            for i in range(args.rounds):
                for label in ("head", "tree") if i % 2 == 0 else ("tree", "head"):
                    times[label].append(timed(runs[label]))
            ratios = [t / h for t, h in zip(times["tree"], times["head"], strict=True)]
            ms = {k: statistics.median(v) / cfg.steps * 1e3 for k, v in times.items()}
            print(
                f"{name:6s} {precision:15s} {ms['head']:12.3f} {ms['tree']:13.3f}  {spread(ratios)}"
            )


if __name__ == "__main__":
    main()

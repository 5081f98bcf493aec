"""Go-Metal's mixed-precision demo on Keras 3: train FP32, then mixed precision, and compare.

    python examples/mixed_precision_demo.py                        # the seed's demo
    python examples/mixed_precision_demo.py --layers 1024,512,256  # a wider model
    python examples/mixed_precision_demo.py --precision mixed_float16 --epochs 10

The same model, data and settings as Go-Metal's demo: an MLP 784 -> 512 -> 256 -> 10 with
ReLU and Dropout 0.2, Adam at 1e-3, batches of 64 from 1000 synthetic samples, 20 epochs
with an early stop below a loss of 0.1. The program is `gometal_keras.reporting.demo.run_demo`
(read it as Go-Metal's ``main.go``); this file runs it with the command line's flags, progress
bars, ``--json`` and ``--plot``, exactly as ``gometal-keras demo`` does. ``--help`` lists them.
"""

import sys

from gometal_keras.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))

"""Go-Metal's mixed-precision demo on Keras: FP32 vs mixed precision, measured honestly.

Run: python examples/mixed_precision_demo.py [--precision auto|mixed_float16|mixed_bfloat16]
"""

import sys

from gometal_keras.demo import main

if __name__ == "__main__":
    sys.exit(main())

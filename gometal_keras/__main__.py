"""``python -m gometal_keras``: the same command line as the ``gometal-keras`` script."""

import sys

from gometal_keras.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m gometal_keras"))

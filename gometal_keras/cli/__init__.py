"""The ``gometal-keras`` command line (`gometal_keras.cli.commands`), its ``export``/``predict``
commands (`cli.ship`) and ``tune`` (`cli.tune`)."""

from gometal_keras.cli.commands import main

__all__ = ["main"]

"""gometal_keras: Go-Metal's model builder and mixed-precision trainer on Keras 3."""

__version__ = "0.1.0"

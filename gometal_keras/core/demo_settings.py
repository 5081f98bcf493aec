"""`DemoSettings`: the knobs of Go-Metal's mixed-precision demo, typed at the edge.

The seed README's "Customization": the model's sizes, the data, the epochs, the precision of
phase 2, the timing rule and the interleaved rounds. The command line reads them from flags
(`gometal_keras.cli.demo_flags`), the demo program runs them
(`gometal_keras.reporting.demo.run_demo`) and the JSON report records them. Plain data: no
backend starts here.
"""

from __future__ import annotations

import dataclasses

#: The demo's small transformer (``model="transformer"``): width, heads, feed-forward.
TRANSFORMER_WIDTH, TRANSFORMER_HEADS, TRANSFORMER_FEED_FORWARD = 64, 4, 256
#: The demo's models.
MODELS = ("mlp", "transformer")


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """The demo's knobs (the seed README's "Customization"), with the seed's defaults.

    Example:
        >>> DemoSettings(layers=(1024, 512, 256)).hidden_stack
        (1024, 512, 256)
    """

    hidden: int = 512
    layers: tuple[int, ...] | None = None  # replaces (hidden, 256)
    batch_size: int = 64
    epochs: int = 20
    samples: int = 1000
    features: int = 784
    classes: int = 10
    precision: str = "auto"
    seed: int = 42
    early_stop_loss: float = 0.1
    timing: str = "steady"
    devices: int | None = None  # data parallel over this many local devices
    rounds: int = 6  # interleaved epochs of each phase for the speed comparison (0: none)
    model: str = "mlp"  # or "transformer": the small transformer on token sequences
    tokens: int = 32  # the transformer's sequence length
    vocab: int = 1000  # the transformer's vocabulary

    @property
    def hidden_stack(self) -> tuple[int, ...]:
        """Hidden layer sizes in order."""
        return self.layers if self.layers else (self.hidden, 256)

    def to_dict(self) -> dict[str, object]:
        """Return the settings as JSON-ready data (tuples as lists)."""
        data = dataclasses.asdict(self)
        data["layers"] = list(self.layers) if self.layers else None
        data["hidden_stack"] = list(self.hidden_stack)
        return data

    def table(self) -> dict[str, object]:
        """The configuration lines the report prints.

        Example:
            >>> DemoSettings().table()["Hidden Size"]
            512
            >>> DemoSettings(model="transformer").table()["Model"][:30]
            'small transformer: 32 tokens o'
        """
        if self.model == "transformer":
            shape: dict[str, object] = {"Model": (
                f"small transformer: {self.tokens} tokens of {self.vocab}, width "
                f"{TRANSFORMER_WIDTH}, {TRANSFORMER_HEADS} heads")}
        else:
            shape = {
                "Input Size": self.features,
                "Hidden Sizes" if self.layers else "Hidden Size": (
                    ", ".join(map(str, self.hidden_stack)) if self.layers else self.hidden
                ),
            }
        return {
            "Batch Size": self.batch_size,
            **shape,
            "Classes": self.classes,
            "Samples": self.samples,
            "Epochs": (f"{self.epochs} at most (stops once an epoch's loss is below "
                       f"{self.early_stop_loss:g})" if self.early_stop_loss else self.epochs),
        } | ({"Devices": f"{self.devices} (data parallel)"} if self.devices else {})

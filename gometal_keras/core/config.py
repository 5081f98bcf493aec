"""`TrainerConfig`: Go-Metal's training configuration, validated when it is made."""

from __future__ import annotations

import dataclasses
import enum
import math
import numbers
from typing import Any

import numpy as np

from gometal_keras.core.plan import Loop, LossScaling, Precision
from gometal_keras.core.seeds import check_seed


class Setting(str, enum.Enum):
    """A choice among named values: typed where it is used, its value the name a user writes.

    A setting is a `str` (it equals its name, and JSON writes it as that name), so a config
    given ``loop="step"`` reads back ``config.loop == "step"``; the code compares members.
    """

    def __str__(self) -> str:
        return self.value

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every name a user may write, in order."""
        return tuple(member.value for member in cls)


class PrecisionSetting(Setting):
    """The precision asked for: a dtype policy, or ``"auto"`` (measure and choose).

    Example:
        >>> PrecisionSetting("auto").precision is None, PrecisionSetting("float32").precision
        (True, <Precision.FLOAT32: 'float32'>)
    """

    FLOAT32 = "float32"
    MIXED_FLOAT16 = "mixed_float16"
    MIXED_BFLOAT16 = "mixed_bfloat16"
    AUTO = "auto"

    @property
    def precision(self) -> Precision | None:
        """The `Precision` asked for, or None under ``"auto"``."""
        return None if self is PrecisionSetting.AUTO else Precision(self.value)


class LoopSetting(Setting):
    """How batches reach the compiled step: a `Loop`, or ``"auto"`` (decided per device).

    Example:
        >>> LoopSetting("step").loop, LoopSetting("auto").loop is None
        (<Loop.STEP: 'step'>, True)
    """

    AUTO = "auto"
    FUSED = "fused"
    STEP = "step"

    @property
    def loop(self) -> Loop | None:
        """The `Loop` asked for, or None under ``"auto"``."""
        return None if self is LoopSetting.AUTO else Loop(self.value)


class CachePolicy(Setting):
    """Where a measured plan comes from (see `gometal_keras.planning.decision_cache`)."""

    CACHE = "cache"  # read a stored decision, else time and store
    ALWAYS = "always"  # time again, and store
    NEVER = "never"  # no trials: the plan by device facts alone


class Distribution(Setting):
    """Replicas over this host's devices, or over several hosts."""

    DATA_PARALLEL = "data_parallel"
    MULTI_WORKER = "multi_worker"


OPTIMIZERS = ("adam", "sgd", "rmsprop", "adagrad", "adadelta", "nadam", "adamw", "lbfgs")
PROBLEM_TYPES = ("classification", "regression")
CLASSIFICATION_LOSSES = (
    "sparse_categorical_crossentropy",
    "categorical_crossentropy",
    "binary_crossentropy",
    "bce_with_logits",
)
REGRESSION_LOSSES = ("mse", "mae", "huber")
LOSSES = CLASSIFICATION_LOSSES + REGRESSION_LOSSES
PRECISIONS = PrecisionSetting.names()
LOOPS = LoopSetting.names()
LR_SCHEDULES = ("step", "exponential", "cosine", "plateau")
LR_MODES = ("min", "max")
LR_THRESHOLD_MODES = ("rel", "abs")
DISTRIBUTIONS = Distribution.names()
DECISION_CACHES = CachePolicy.names()


def _shown(value: Any) -> str:
    """``repr(value)``, or a short description of an int too long for Python to print."""
    try:
        return repr(value)
    except ValueError:  # more digits than sys.get_int_max_str_digits()
        return f"an int of {value.bit_length()} bits"


def _choice(field: str, value: Any, valid: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"TrainerConfig.{field} is {value!r}; expected one of {', '.join(valid)}.")


def _as_float(value: int | float) -> float:
    """`value` as a float; an int too large for one is infinite (never OverflowError)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


#: float32's largest and smallest normal magnitudes: every real setting reaches the device
#: as a float32 (learning rate, loss scale, betas), so it is checked as that float32.
FLOAT32_MAX, FLOAT32_TINY = float(np.finfo(np.float32).max), float(np.finfo(np.float32).tiny)
#: Counters that reach the device as int32 (the loss scaler's growth interval).
INT32_MAX = 2**31 - 1


def _as_float32(value: int | float) -> float:
    """`value` as the float32 the device holds: ±inf past float32's range, 0 below its
    normal range (subnormals are flushed to zero on many devices)."""
    number = _as_float(value)
    if not math.isfinite(number) or abs(number) > FLOAT32_MAX:
        return math.copysign(math.inf, number) if not math.isnan(number) else number
    if abs(number) < FLOAT32_TINY:
        return 0.0
    return float(np.float32(number))


def _number(field: str, value: Any, kind: type) -> None:
    real = numbers.Integral if kind is int else numbers.Real
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, real):
        raise TypeError(f"TrainerConfig.{field} is {value!r}; expected a {kind.__name__}.")


def _positive(field: str, value: Any, kind: type = float, high: float = math.inf) -> None:
    _number(field, value, kind)
    # A real is checked as given and as the device's float32 (1e-40 is 0 there, 1e39 inf).
    numbers = (_as_float(value),) if kind is int else (_as_float(value), _as_float32(value))
    if not all(math.isfinite(n) and 0 < n <= high for n in numbers):
        what = "int" if kind is int else "number"
        limit = f" up to {high:g}" if kind is int and high < math.inf else ""
        limit = limit or (" that float32 holds" if kind is float else "")
        raise ValueError(
            f"TrainerConfig.{field} is {_shown(value)}; expected a positive {what}{limit}."
        )


def _in_range(field: str, value: Any, low: float, high: float, high_open: bool = False) -> None:
    _number(field, value, float)
    # Checked as given (-1e-40 is below 0 even though float32 flushes it to -0.0) and as
    # the device holds it (1 - 1e-9 is 1.0 in float32, 1e39 is inf).
    for number in (_as_float(value), _as_float32(value)):
        upper_ok = number < high if high_open else number <= high
        if not (math.isfinite(number) and number >= low and upper_ok):
            bracket = ")" if high_open else "]"
            raise ValueError(
                f"TrainerConfig.{field} is {_shown(value)}; expected a number in [{low}, {high}"
                f"{bracket} as given and as a float32."
            )


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """Go-Metal's `TrainerConfig`, fields in snake_case, defaults as in Go-Metal.

    Go-Metal's `EngineType` has no meaning on Keras and is absent; its loss-scale growth
    and back-off factors are Keras' fixed 2.0 and 0.5.

    Args:
        batch_size: Samples per step; an epoch runs full batches only.
        learning_rate: Optimizer step size.
        optimizer: One of ``OPTIMIZERS``; ``"lbfgs"`` (optax's L-BFGS, the joint step over
            all parameters, `learning_rate` its step: 1.0 is the full one) on JAX only.
        beta1, beta2, epsilon, weight_decay: Adam-family settings.
        momentum, alpha, centered: SGD / RMSProp settings (``alpha`` is RMSProp's rho).
        problem_type: ``"classification"`` or ``"regression"``; the loss must fit it.
        loss: One of ``LOSSES``.
        use_mixed_precision: Go-Metal's switch; means ``"mixed_float16"`` when
            ``precision`` is None.
        precision: None, ``"float32"``, ``"mixed_float16"``, ``"mixed_bfloat16"`` or
            ``"auto"`` (measure the candidates the device runs fast and keep the fastest).
        initial_loss_scale: Starting loss scale under mixed_float16.
        loss_scale_growth_interval: Finite steps before the loss scale doubles.
        seed: Seed for weights, dropout and the auto trial data; None draws one.
        jit_compile: Compile with XLA: True, False, or None to decide by device and measurement.
        loop: ``"fused"`` (a whole epoch per device call), ``"step"`` (one call per batch)
            or ``"auto"`` (fused when the data fits on the device).
        lr_schedule: Go-Metal's learning-rate schedulers, stepped once per epoch: None,
            ``"step"`` (StepLR: times `lr_gamma` every `lr_step_size` epochs),
            ``"exponential"`` (ExponentialLR: times `lr_gamma` every epoch), ``"cosine"``
            (CosineAnnealingLR: from the learning rate to `lr_eta_min` over `lr_t_max`
            epochs) or ``"plateau"`` (ReduceLROnPlateau: times `lr_factor` after more than
            `lr_patience` epochs without the watched value improving, never below `lr_min`).
        lr_step_size, lr_gamma, lr_t_max, lr_eta_min, lr_patience, lr_factor, lr_min: The
            schedules' settings (PyTorch's names and defaults).
        lr_monitor: The value ReduceLROnPlateau watches: ``"loss"``, ``"val_loss"`` (needs
            validation data) or a metric of the epoch's logs (``"accuracy"``, ``"mae"``, ...).
        lr_mode: ``"min"`` (lower is better: losses) or ``"max"`` (higher: accuracy).
        lr_threshold, lr_threshold_mode: How much better counts as better: ``"rel"`` (by the
            fraction `lr_threshold` of the best so far) or ``"abs"`` (by `lr_threshold`).
        distribution: None (one device), ``"data_parallel"`` (replicas on this host's
            devices: TensorFlow's MirroredStrategy, Keras' DataParallel on JAX) or
            ``"multi_worker"`` (several hosts: MultiWorkerMirroredStrategy via TF_CONFIG,
            or DataParallel after ``jax.distributed.initialize()``). `batch_size` is then
            the global batch: per replica x replicas.
        devices: How many of this host's devices `distribution` uses (None = all).
        decision_cache: Where a measured plan comes from (`gometal_keras.planning.decision_cache`):
            ``"cache"`` (read a decision stored for this model and device, else time the
            candidates and store the result), ``"always"`` (time again, and store) or
            ``"never"`` (no trials: the default plan by device facts alone).
        agreement_every: On a device with known faults (Apple GPUs: tensorflow-metal, PyTorch
            MPS), `fit` replays a few steps in float32 on the device and on the CPU every
            this many epochs and after its last, and stops (back at the last agreeing
            weights) when they disagree (`gometal_keras.training.agreement`); None: never.

    Example:
        >>> cfg = TrainerConfig(batch_size=64, use_mixed_precision=True)
        >>> cfg.resolved_precision.value, cfg.loop
        ('mixed_float16', <LoopSetting.AUTO: 'auto'>)
    """

    batch_size: int = 32
    learning_rate: float = 0.001
    optimizer: str = "adam"
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.0
    alpha: float = 0.99
    centered: bool = False
    problem_type: str = "classification"
    loss: str = "sparse_categorical_crossentropy"
    use_mixed_precision: bool = False
    precision: PrecisionSetting | str | None = None
    initial_loss_scale: float = 65536.0
    loss_scale_growth_interval: int = 2000
    seed: int | None = None
    jit_compile: bool | None = None
    loop: LoopSetting | str = "auto"
    lr_schedule: str | None = None
    lr_step_size: int = 30
    lr_gamma: float = 0.1
    lr_t_max: int = 50
    lr_eta_min: float = 0.0
    lr_patience: int = 10
    lr_factor: float = 0.1
    lr_min: float = 0.0
    lr_monitor: str = "loss"
    lr_mode: str = "min"
    lr_threshold: float = 1e-4
    lr_threshold_mode: str = "rel"
    distribution: Distribution | str | None = None
    devices: int | None = None
    decision_cache: CachePolicy | str = "cache"
    agreement_every: int | None = 5

    def __post_init__(self) -> None:
        _positive("batch_size", self.batch_size, int)
        _positive("learning_rate", self.learning_rate)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _in_range("beta1", self.beta1, 0.0, 1.0, high_open=True)
        _in_range("beta2", self.beta2, 0.0, 1.0, high_open=True)
        _positive("epsilon", self.epsilon)
        _in_range("weight_decay", self.weight_decay, 0.0, math.inf)
        _in_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        _in_range("alpha", self.alpha, 0.0, 1.0, high_open=True)
        _choice("problem_type", self.problem_type, PROBLEM_TYPES)
        _choice("loss", self.loss, LOSSES)
        fitting = (
            CLASSIFICATION_LOSSES if self.problem_type == "classification" else REGRESSION_LOSSES
        )
        if self.loss not in fitting:
            raise ValueError(
                f"TrainerConfig.loss {self.loss!r} does not fit problem_type "
                f"{self.problem_type!r}; expected one of {', '.join(fitting)}."
            )
        for flag in ("centered", "use_mixed_precision"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(
                    f"TrainerConfig.{flag} is {getattr(self, flag)!r}; expected a bool."
                )
        if self.precision is not None:
            _choice("precision", self.precision, PRECISIONS)
        _positive("initial_loss_scale", self.initial_loss_scale)
        _positive("loss_scale_growth_interval", self.loss_scale_growth_interval, int, INT32_MAX)
        check_seed(self.seed, "TrainerConfig.seed")
        if self.jit_compile is not None and not isinstance(self.jit_compile, bool):
            raise TypeError(
                f"TrainerConfig.jit_compile is {self.jit_compile!r}; expected a bool or None."
            )
        _choice("loop", self.loop, LOOPS)
        if self.lr_schedule is not None:
            _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        for field in ("lr_step_size", "lr_t_max", "lr_patience"):
            _positive(field, getattr(self, field), int)
        _in_range("lr_gamma", self.lr_gamma, 0.0, 1.0)
        _in_range("lr_factor", self.lr_factor, 0.0, 1.0, high_open=True)
        _in_range("lr_eta_min", self.lr_eta_min, 0.0, math.inf)
        _in_range("lr_min", self.lr_min, 0.0, math.inf)
        if not isinstance(self.lr_monitor, str) or not self.lr_monitor.strip():
            error = TypeError if not isinstance(self.lr_monitor, str) else ValueError
            raise error(
                f"TrainerConfig.lr_monitor is {self.lr_monitor!r}; expected the name of a "
                "value in the epoch's logs, e.g. 'loss', 'val_loss' or 'accuracy'."
            )
        _choice("lr_mode", self.lr_mode, LR_MODES)
        _in_range("lr_threshold", self.lr_threshold, 0.0, math.inf)
        _choice("lr_threshold_mode", self.lr_threshold_mode, LR_THRESHOLD_MODES)
        if self.distribution is not None:
            _choice("distribution", self.distribution, DISTRIBUTIONS)
        if self.devices is not None:
            _positive("devices", self.devices, int)
            if self.distribution is None:
                raise ValueError(
                    f"TrainerConfig.devices is {self.devices} but distribution is None (one "
                    "device); expected distribution='data_parallel' to use several devices."
                )
        _choice("decision_cache", self.decision_cache, DECISION_CACHES)
        if self.agreement_every is not None:
            _positive("agreement_every", self.agreement_every, int)
        if self.use_mixed_precision and self.precision == "float32":
            raise ValueError(
                "TrainerConfig.use_mixed_precision is True but precision is 'float32', which "
                "contradict; expected one of them (precision wins where both are given)."
            )
        _normalise(self)
        _type_settings(self)

    @property
    def resolved_precision(self) -> PrecisionSetting:
        """The precision asked for: `precision`, else what `use_mixed_precision` means.

        Example:
            >>> TrainerConfig(use_mixed_precision=True).resolved_precision.precision
            <Precision.MIXED_FLOAT16: 'mixed_float16'>
        """
        if self.precision is not None:
            return self.precision  # typed in __post_init__
        mixed = self.use_mixed_precision
        return PrecisionSetting.MIXED_FLOAT16 if mixed else PrecisionSetting.FLOAT32

    @property
    def explicit_precision(self) -> Precision | None:
        """The precision the user named (`precision` or `use_mixed_precision`), else None.

        An explicit precision is never replaced: under it only the XLA setting, the loop and
        the placement are chosen.

        Example:
            >>> TrainerConfig().explicit_precision is None
            True
            >>> TrainerConfig(precision="mixed_bfloat16").explicit_precision.label
            'BF16'

        """
        if self.precision is None and not self.use_mixed_precision:
            return None
        return self.resolved_precision.precision

    def loss_scaling_for(self, precision: Precision | str) -> LossScaling | None:
        """The loss scaling a plan under `precision` runs with: this config's, for float16.

        Example:
            >>> TrainerConfig(initial_loss_scale=8.0).loss_scaling_for("mixed_float16")
            LossScaling(initial_scale=8.0, growth_interval=2000)
        """
        if not Precision(precision).needs_loss_scaling:
            return None
        return LossScaling(float(self.initial_loss_scale), self.loss_scale_growth_interval)

    def replace(self, **changes: Any) -> TrainerConfig:
        """Return a copy with `changes` applied (and validated).

        Example:
            >>> TrainerConfig().replace(batch_size=128).batch_size
            128
        """
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as JSON-ready data (settings as their names).

        Example:
            >>> type(TrainerConfig(loop="step").to_dict()["loop"]).__name__
            'str'
        """
        data = dataclasses.asdict(self)
        return {k: v.value if isinstance(v, Setting) else v for k, v in data.items()}


#: The real-valued settings: stored as Python floats (``momentum=0`` is ``0.0``), which is
#: what Keras' optimizers require (SGD refuses an int momentum).
FLOAT_FIELDS = tuple(f.name for f in dataclasses.fields(TrainerConfig) if f.type == "float")


def _normalise(config: TrainerConfig) -> None:
    """Store numpy ints (``np.int64(16)``) as Python ints, every real setting as a float."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name in FLOAT_FIELDS:
            object.__setattr__(config, field.name, float(value))
        elif isinstance(value, np.integer):
            object.__setattr__(config, field.name, int(value))
        elif isinstance(value, np.floating):
            object.__setattr__(config, field.name, float(value))


#: The settings typed at the edge: field -> its type (None stays None where allowed).
SETTINGS = {"precision": PrecisionSetting, "loop": LoopSetting, "decision_cache": CachePolicy,
            "distribution": Distribution}


def _type_settings(config: TrainerConfig) -> None:
    """Store each named choice (already checked by `_choice`) as its `Setting` member."""
    for field, kind in SETTINGS.items():
        value = getattr(config, field)
        if value is not None:
            object.__setattr__(config, field, kind(value))


def as_config(config: TrainerConfig | None) -> TrainerConfig:
    """`config`, or the default `TrainerConfig()` for None; TypeError for anything else.

    Example:
        >>> as_config(None).batch_size == TrainerConfig().batch_size
        True
    """
    if config is None:
        return TrainerConfig()
    if not isinstance(config, TrainerConfig):
        raise TypeError(f"config is a {type(config).__name__}; expected a TrainerConfig.")
    return config

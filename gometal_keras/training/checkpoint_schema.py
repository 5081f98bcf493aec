"""What a checkpoint's ``trainer.json`` must hold, checked field by field before it is used.

A file whose checksums are valid can still carry metadata that is not ours (edited by
hand, written by another version): a missing field, a string where an int belongs, a plan
naming no precision, or a number of the right type out of its range (a negative or NaN
learning rate in the schedule's state, JSON's ``NaN`` and ``Infinity`` included, a loss
scale that is infinite or 0 as a float32, a plateau 'wait' beyond the config's
``lr_patience``). `check` names the first such field in one `ValueError` sentence, so a
malformed checkpoint never reaches `TrainerState.from_metadata` as a `KeyError`,
`TypeError` or a raw ``int()`` message, nor trains.

Example:
    >>> check({"seed": 1, "epoch": "3"}, "run.gmk")
    Traceback (most recent call last):
    ValueError: Checkpoint 'run.gmk' has malformed metadata: trainer.json has no 'config'; \
expected the file Trainer.save wrote.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from gometal_keras.core.config import FLOAT32_MAX, FLOAT32_TINY, INT32_MAX, TrainerConfig
from gometal_keras.core.plan import Loop, Precision
from gometal_keras.core.seeds import SEED_MAX

_DEFAULT_PATIENCE = next(
    f.default for f in dataclasses.fields(TrainerConfig) if f.name == "lr_patience"
)


def _integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _int_in(low: int, high: float = math.inf) -> Callable[[Any], bool]:
    return lambda v: _integer(v) and low <= v <= high


def _float32(value: Any) -> float:
    """`value` (a JSON number) as the device's float32: inf past its range, 0 below its
    normal range (flushed to zero on many devices), NaN stays NaN."""
    try:
        number = float(value)
    except OverflowError:  # a JSON int beyond float range
        return math.inf if value > 0 else -math.inf
    if math.isnan(number) or abs(number) > FLOAT32_MAX:
        return number if math.isnan(number) else math.copysign(math.inf, number)
    return 0.0 if abs(number) < FLOAT32_TINY else float(np.float32(number))


def _rate(v: Any) -> bool:
    """A learning rate as the optimizer holds it: at least 0 and finite, as given and as a
    float32 (a schedule reaches 0 at the end of a cosine or with a factor of 0)."""
    return _real(v) and all(math.isfinite(n) and n >= 0 for n in (_as_float(v), _float32(v)))


def _positive_float32(v: Any) -> bool:
    """A positive number that float32 holds as a positive normal number (a loss scale)."""
    return _real(v) and all(math.isfinite(n) and n > 0 for n in (_as_float(v), _float32(v)))


def _best(v: Any) -> bool:
    """The plateau schedule's best watched value: any number but NaN (±inf before any); a
    loss watched for its minimum is also at least 0 (`check`)."""
    return _real(v) and not math.isnan(_as_float(v))


def _seconds(v: Any) -> bool:
    """A measured time: null or NaN (not measured) or a finite number of at least 0."""
    if v is None:
        return True
    number = _as_float(v) if _real(v) else math.nan
    return _real(v) and (math.isnan(number) or (math.isfinite(number) and number >= 0))


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


#: Field -> (test, what the field must be), for the top level and for ``plan``.
TOP = {
    "config": (lambda v: isinstance(v, dict), "an object"),
    "plan": (lambda v: isinstance(v, dict), "an object"),
    "seed": (_int_in(0, SEED_MAX), f"an int in [0, {SEED_MAX}]"),
    "epoch": (_int_in(0), "a non-negative int"),
}
OPTIONAL = {
    "decision": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "schedule": (lambda v: v is None or isinstance(v, dict), "an object or null"),
}
SCHEDULE = {
    "best": (_best, "a number of at least 0 (a loss) or Infinity"),
    "wait": (_int_in(0), "a non-negative int"),
    "current": (_rate, "a finite number of at least 0 that float32 holds (a learning rate)"),
}
PLAN = {
    "precision": (
        lambda v: isinstance(v, str) and v in {p.value for p in Precision},
        "a precision name",
    ),
    "xla": (lambda v: isinstance(v, bool), "a bool"),
    "loop": (lambda v: isinstance(v, str) and v in {lp.value for lp in Loop}, "'fused' or 'step'"),
    "guard": (lambda v: isinstance(v, bool), "a bool"),
}
PLAN_OPTIONAL = {
    "loss_scaling": (lambda v: v is None or isinstance(v, dict), "null or an object"),
    "replicas": (_int_in(1), "a positive int"),
    "placement": (lambda v: isinstance(v, str), "a string"),
}
LOSS_SCALING = {
    "initial_scale": (_positive_float32, "a positive number that float32 holds"),
    "growth_interval": (_int_in(1, INT32_MAX), f"an int in [1, {INT32_MAX}]"),
}
DECISION_TIMES = {
    "trial_seconds": (
        lambda v: _real(v) and math.isfinite(_as_float(v)) and _as_float(v) >= 0,
        "a finite number of at least 0",
    ),
}
CANDIDATE_TIMES = {
    "seconds": (_seconds, "null, NaN or a finite number of at least 0"),
    "low": (_seconds, "null, NaN or a finite number of at least 0"),
    "high": (_seconds, "null, NaN or a finite number of at least 0"),
    "samples": (
        lambda v: isinstance(v, list) and all(x is not None and _seconds(x) for x in v),
        "a list of finite numbers of at least 0 (or NaN)",
    ),
}


def _fail(path: str, what: str) -> ValueError:
    return ValueError(f"Checkpoint {path!r} has malformed metadata: {what}.")


def _fields(data: dict, required: dict, optional: dict, where: str, path: str) -> None:
    for name in required:
        if name not in data:
            raise _fail(path, f"{where} has no {name!r}; expected the file Trainer.save wrote")
    for name, (test, expected) in {**required, **optional}.items():
        if name in data and not test(data[name]):
            raise _fail(path, f"{where} field {name!r} is {data[name]!r}; expected {expected}")


def check(meta: dict[str, Any], path: str) -> None:
    """Raise ValueError naming `path` and the first malformed field of `meta`, if any.

    Args:
        meta: The parsed ``trainer.json`` (format, version and checksums already checked).
        path: The checkpoint file, for the message.

    Raises:
        ValueError: A field is missing or of the wrong type or range.

    Example:
        >>> plan = {"precision": "float32", "xla": False, "loop": "fused", "guard": "yes"}
        >>> check({"config": {}, "plan": plan, "seed": 0, "epoch": 0}, "a.gmk")
        Traceback (most recent call last):
        ValueError: Checkpoint 'a.gmk' has malformed metadata: trainer.json's plan field \
'guard' is 'yes'; expected a bool.
    """
    _fields(meta, TOP, OPTIONAL, "trainer.json", path)
    _plan(meta["plan"], "trainer.json's plan", path)
    if meta.get("schedule") is not None:
        schedule = meta["schedule"]
        _fields(schedule, SCHEDULE, {}, "trainer.json's schedule", path)
        config = meta["config"]
        watches_loss = config.get("lr_monitor", "loss") in ("loss", "val_loss")
        if watches_loss and config.get("lr_mode", "min") == "min" and schedule["best"] < 0:
            raise _fail(
                path,
                f"trainer.json's schedule field 'best' is {schedule['best']!r}, a loss below 0; "
                "expected a loss of at least 0 (or Infinity before any epoch)",
            )
        patience = _patience(config)
        if patience is not None and schedule["wait"] > patience:
            raise _fail(
                path,
                f"trainer.json's schedule field 'wait' is {schedule['wait']!r}, more than the "
                f"config's lr_patience {patience}; expected at most {patience}",
            )
    if isinstance(meta.get("decision"), dict):
        _decision(meta["decision"], path)


def _plan(plan: dict, where: str, path: str) -> None:
    _fields(plan, PLAN, PLAN_OPTIONAL, where, path)
    if plan.get("loss_scaling") is not None:
        _fields(plan["loss_scaling"], LOSS_SCALING, {}, f"{where}'s loss_scaling", path)
        extra = sorted(set(plan["loss_scaling"]) - set(LOSS_SCALING))
        if extra:
            raise _fail(
                path,
                f"{where}'s loss_scaling has unknown fields {extra}; expected "
                "only 'initial_scale' and 'growth_interval'",
            )


def _patience(config: dict) -> int | None:
    """The config's ``lr_patience`` (its default when absent); None when malformed (the
    config's own check names it)."""
    value = config.get("lr_patience", _DEFAULT_PATIENCE)
    return value if _integer(value) else None


def _decision(decision: dict, path: str) -> None:
    """The numbers of a decision (times); its structure is checked as it is rebuilt."""
    where = "trainer.json's decision"
    _fields(decision, {}, DECISION_TIMES, where, path)
    if isinstance(decision.get("plan"), dict):
        _plan(decision["plan"], f"{where}'s plan", path)
    candidates = decision.get("candidates")
    if isinstance(candidates, dict):
        for label, seconds in candidates.items():
            if not _seconds(seconds):
                raise _fail(
                    path,
                    f"{where}'s candidates field {label!r} is {seconds!r}; "
                    "expected null, NaN or a finite number of at least 0",
                )
    timed = decision.get("timed")
    for i, entry in enumerate(timed if isinstance(timed, list) else ()):
        if isinstance(entry, dict):
            _fields(entry, {}, CANDIDATE_TIMES, f"{where}'s timed[{i}]", path)
            if isinstance(entry.get("plan"), dict):
                _plan(entry["plan"], f"{where}'s timed[{i}] plan", path)


def rebuilt(what: str, path: str, build: Any) -> Any:
    """Return ``build()``; any error it raises becomes one ValueError naming `path` and `what`.

    For the parts whose own constructors check them (the `TrainerConfig`, the decision).

    Example:
        >>> rebuilt("config", "a.gmk", lambda: int("x"))
        Traceback (most recent call last):
        ValueError: Checkpoint 'a.gmk' has malformed metadata: its config does not load \
(ValueError: invalid literal for int() with base 10: 'x').
    """
    try:
        return build()
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        detail = str(err).rstrip(".")
        raise _fail(path, f"its {what} does not load ({type(err).__name__}: {detail})") from None

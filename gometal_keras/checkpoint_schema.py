"""What a checkpoint's ``trainer.json`` must hold, checked field by field before it is used.

A file whose checksums are valid can still carry metadata that is not ours (edited by
hand, written by another version): a missing field, a string where an int belongs, a plan
naming no precision. `check` names the first such field in one `ValueError` sentence, so a
malformed checkpoint never reaches `TrainerState.from_metadata` as a `KeyError`,
`TypeError` or a raw ``int()`` message.

Example:
    >>> check({"seed": 1, "epoch": "3"}, "run.gmk")
    Traceback (most recent call last):
    ValueError: Checkpoint 'run.gmk' has malformed metadata: trainer.json has no 'config'; \
expected the file Trainer.save wrote.
"""

from __future__ import annotations

import numbers
from typing import Any

from gometal_keras.plan import Loop, Precision
from gometal_keras.seeds import SEED_MAX


def _integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


#: Field -> (test, what the field must be), for the top level and for ``plan``.
TOP = {
    "config": (lambda v: isinstance(v, dict), "an object"),
    "plan": (lambda v: isinstance(v, dict), "an object"),
    "seed": (lambda v: _integer(v) and 0 <= v <= SEED_MAX, f"an int in [0, {SEED_MAX}]"),
    "epoch": (lambda v: _integer(v) and v >= 0, "a non-negative int"),
}
OPTIONAL = {
    "decision": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "schedule": (
        lambda v: (
            v is None
            or (
                isinstance(v, dict)
                and _real(v.get("best"))
                and _integer(v.get("wait"))
                and _real(v.get("current"))
            )
        ),
        "null or an object with a number 'best', an int 'wait' and a number 'current'",
    ),
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
    "loss_scaling": (
        lambda v: (
            v is None
            or (
                isinstance(v, dict)
                and set(v) == {"initial_scale", "growth_interval"}
                and _real(v["initial_scale"])
                and _integer(v["growth_interval"])
            )
        ),
        "null or an object with a number 'initial_scale' and an int 'growth_interval'",
    ),
    "replicas": (lambda v: _integer(v) and v >= 1, "a positive int"),
    "placement": (lambda v: isinstance(v, str), "a string"),
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
    _fields(meta["plan"], PLAN, PLAN_OPTIONAL, "trainer.json's plan", path)


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

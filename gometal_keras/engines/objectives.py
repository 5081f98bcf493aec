"""What the trainer optimises and watches: the loss, metrics and optimizer a config names."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

import gometal_keras.engines.guard as guard
from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.plan import LossScaling, RunPlan
from gometal_keras.engines.base import Objective


def outputs_probabilities(model: keras.Model) -> bool:
    """Whether `model` ends in a softmax or sigmoid (so its loss takes probabilities)."""
    last = model.layers[-1] if model.layers else None
    if isinstance(last, keras.layers.Softmax):
        return True
    if isinstance(last, keras.layers.Activation):
        name = getattr(last.activation, "__name__", "")
        return name in ("softmax", "sigmoid")
    return False


def make_loss(config: TrainerConfig, model: keras.Model) -> keras.losses.Loss:
    """Return the Keras loss for `config.loss`, reading logits or probabilities as `model` gives.

    Go-Metal's cross-entropy losses take logits; a model ending in softmax/sigmoid gives
    probabilities, and the loss is told so. `bce_with_logits` always takes logits.
    """
    logits, losses = not outputs_probabilities(model), keras.losses
    name, f32 = config.loss, {"dtype": "float32"}  # float32 whatever Keras' global floatx is
    if name == "sparse_categorical_crossentropy":
        return losses.SparseCategoricalCrossentropy(from_logits=logits, **f32)
    if name == "categorical_crossentropy":
        return losses.CategoricalCrossentropy(from_logits=logits, **f32)
    if name in ("binary_crossentropy", "bce_with_logits"):
        return losses.BinaryCrossentropy(from_logits=logits or name == "bce_with_logits", **f32)
    return {
        "mse": losses.MeanSquaredError,
        "mae": losses.MeanAbsoluteError,
        "huber": losses.Huber,
    }[name](**f32)


def make_objective(config: TrainerConfig, model: keras.Model) -> Objective:
    """Return the loss and the per-batch metrics for a trainer.

    Metrics: accuracy for classification; MAE and MSE for regression (an epoch's RMSE is
    the root of its mean MSE).

    Example:
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> make_objective(TrainerConfig(), m).metric_names
        ('accuracy',)
    """
    ops, logits = keras.ops, not outputs_probabilities(model)
    loss = make_loss(config, model)
    if config.problem_type == "regression":

        def errors(y, y_pred):
            diff = ops.cast(y_pred, "float32") - ops.cast(
                ops.reshape(y, ops.shape(y_pred)), "float32"
            )
            return [ops.mean(ops.abs(diff)), ops.mean(ops.square(diff))]

        return Objective(loss, ("mae", "mse"), errors)

    def accuracy(y, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        if config.loss == "sparse_categorical_crossentropy":
            hit = ops.argmax(y_pred, axis=-1) == ops.cast(ops.reshape(y, (-1,)), "int32")
        elif config.loss == "categorical_crossentropy":
            hit = ops.argmax(y_pred, axis=-1) == ops.argmax(y, axis=-1)
        else:
            cut = 0.0 if (logits or config.loss == "bce_with_logits") else 0.5
            hit = (y_pred > cut) == (ops.cast(y, "float32") > 0.5)
        return [ops.mean(ops.cast(hit, "float32"))]

    return Objective(loss, ("accuracy",), accuracy)


def make_optimizer(config: TrainerConfig, loss_scaling: LossScaling | None = None) -> Any:
    """Return the Keras optimizer for `config`, wrapped in a loss scaler if one is given.

    Args:
        config: The training configuration.
        loss_scaling: The plan's loss scaling (``plan.loss_scaling``), or None.

    Returns:
        A Keras optimizer; with `loss_scaling` a `keras.optimizers.LossScaleOptimizer`
        with its initial scale and growth interval.

    Example:
        >>> type(make_optimizer(TrainerConfig(), LossScaling(1024.0, 100))).__name__
        'LossScaleOptimizer'
    """
    with _float32_floatx():
        return _make_optimizer(config, loss_scaling)


@contextlib.contextmanager
def _float32_floatx() -> Iterator[None]:
    """Keras makes an optimizer's learning-rate variable in the global floatx; a trainer's is
    float32 whatever the user set (float16 there would round the rate). The user's floatx
    is back before this returns (so not while another thread builds a Keras object)."""
    before = keras.config.floatx()
    if before == "float32":
        yield
        return
    keras.config.set_floatx("float32")
    try:
        yield
    finally:
        keras.config.set_floatx(before)


def _make_optimizer(config: TrainerConfig, loss_scaling: LossScaling | None) -> Any:
    c, opt = config, keras.optimizers
    lr, wd = float(c.learning_rate), (float(c.weight_decay) or None)
    if c.optimizer == "adam":
        inner = opt.Adam(lr, c.beta1, c.beta2, c.epsilon, weight_decay=wd)
    elif c.optimizer == "adamw":
        inner = opt.AdamW(lr, c.weight_decay, c.beta1, c.beta2, c.epsilon)
    elif c.optimizer == "nadam":
        inner = opt.Nadam(lr, c.beta1, c.beta2, c.epsilon, weight_decay=wd)
    elif c.optimizer == "sgd":
        inner = opt.SGD(lr, momentum=c.momentum, weight_decay=wd)
    elif c.optimizer == "rmsprop":
        inner = opt.RMSprop(
            lr,
            rho=c.alpha,
            momentum=c.momentum,
            epsilon=c.epsilon,
            centered=c.centered,
            weight_decay=wd,
        )
    elif c.optimizer == "adagrad":
        inner = opt.Adagrad(lr, epsilon=c.epsilon, weight_decay=wd)
    elif c.optimizer == "lbfgs":
        from gometal_keras.engines.lbfgs import LBFGS

        inner = LBFGS(lr, weight_decay=wd)  # refuses a weight decay, and other backends
    else:
        inner = opt.Adadelta(lr, epsilon=c.epsilon, weight_decay=wd)
    if loss_scaling is None:
        return inner
    return opt.LossScaleOptimizer(
        inner,
        initial_scale=loss_scaling.initial_scale,
        dynamic_growth_steps=loss_scaling.growth_interval,
    )


def non_finite_message(plan: RunPlan, where: str, diverged: bool = False) -> str:
    """One sentence on a non-finite loss at `where`, true to what `plan` did with the step.

    Args:
        plan: The plan that ran.
        where: E.g. ``"epoch 1, step 3"``.
        diverged: The step's loss and gradients were finite but its update was not, and
            the loss scaler's plan held it back (`guard.DIVERGED`).

    Example:
        >>> from gometal_keras.core.plan import Precision
        >>> non_finite_message(RunPlan(Precision.FLOAT32, xla=True), "the batch")[:41]
        'Training became non-finite in the batch; '
    """
    if diverged:
        what = (
            "its loss and gradients were finite but its update was not (backing off the loss "
            "scale cannot fix that), so the step was not applied and every variable holds its "
            "value from the step before"
        )
    elif plan.guard:
        what = (
            "its loss, gradients or new weights were not finite, so the step was skipped and "
            "every variable holds its value from the step before"
        )
    elif plan.loss_scaling is not None:
        what = (
            "its loss or gradients were not finite, so the step was skipped, as was every "
            "step of the epoch, and the weights are unchanged"
        )
    else:
        what = (
            f"this plan runs without the non-finite guard ({plan.placement}), so the update "
            "was applied and the weights may no longer be finite"
        )
    return (
        f"Training became non-finite in {where}; {what}. Check the learning rate and the data."
    )


def epoch_logs(
    objective: Objective, plan: RunPlan, values: np.ndarray, epoch: int
) -> dict[str, float]:
    """Reduce an epoch's per-step values to its logs: mean loss and metrics, RMSE from MSE.

    Args:
        objective: Names the metric columns after the loss.
        plan: The plan that ran (whether a loss scaler skipped non-finite steps).
        values: Per-step rows ``(steps, 1 + metrics)`` from the training loop.
        epoch: 0-based epoch number, for the error message.

    Returns:
        ``{"loss": ..., "accuracy": ...}`` or ``{"loss": ..., "mae": ..., "rmse": ...}``.

    Raises:
        FloatingPointError: A loss was non-finite and no loss scaler skipped the step, or
            a loss-scaled update diverged (`guard.DIVERGED`); the message names the epoch
            and step and says what happened to the weights. Steps a loss scaler skipped
            are left out of the means instead.

    Example:
        >>> from gometal_keras.core.plan import Precision
        >>> obj, plan = Objective(loss=None, metric_names=("mse",)), RunPlan("float32", True)
        >>> epoch_logs(obj, plan, np.array([[1.0, 4.0], [3.0, 4.0]]), 0)
        {'loss': 2.0, 'rmse': 2.0}
    """
    finite = np.isfinite(values[:, 0])
    if not finite.all():
        step = int(np.argmin(finite))
        diverged = guard.diverged(values[:, 0]) if plan.loss_scaling is not None else None
        if diverged is not None and diverged.any():  # the loss scaler cannot skip these
            where = f"epoch {epoch + 1}, step {int(np.argmax(diverged)) + 1}"
            raise FloatingPointError(non_finite_message(plan, where, diverged=True))
        if plan.loss_scaling is None or not finite.any():
            where = f"epoch {epoch + 1}, step {step + 1}"
            raise FloatingPointError(non_finite_message(plan, where))
        values = values[finite]
    means = values.mean(axis=0)
    logs = {"loss": float(means[0])}
    for name, mean in zip(objective.metric_names, means[1:], strict=True):
        if name == "mse":
            logs["rmse"] = float(np.sqrt(mean))
        else:
            logs[name] = float(mean)
    return logs


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax over the last axis, stable for large logits.

    Example:
        >>> softmax(np.array([[0.0, 0.0], [1000.0, 0.0]])).round(3).tolist()
        [[0.5, 0.5], [1.0, 0.0]]
    """
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def to_probabilities(outputs: np.ndarray, are_probabilities: bool) -> np.ndarray:
    """Class probabilities ``(n, classes)`` from a model's outputs (logits or probabilities).

    One output column is a binary classifier: it becomes ``[1 - p, p]``.

    Example:
        >>> to_probabilities(np.array([[0.0]]), are_probabilities=False).tolist()
        [[0.5, 0.5]]
    """
    outputs = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    if outputs.shape[1] == 1:
        p = outputs[:, 0] if are_probabilities else 1.0 / (1.0 + np.exp(-outputs[:, 0]))
        return np.stack([1.0 - p, p], axis=1)
    return outputs if are_probabilities else softmax(outputs)

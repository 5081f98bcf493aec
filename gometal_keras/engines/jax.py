"""JAX engine: pure functions over Keras' stateless API, a whole epoch as one `lax.scan`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import keras
import numpy as np

from gometal_keras import guard, pixels
from gometal_keras.engines.base import Engine, Objective, Placement, Program, host_free_memory_bytes
from gometal_keras.engines.jax_parallel import JaxDataParallel
from gometal_keras.engines.late_checks import LateCall, LateChecks
from gometal_keras.precision import DeviceInfo, cpu_device


class JaxProgram(Program):
    """Step and epoch compiled by `jax.jit`; the model's state lives on the device.

    Both take the model's variable values and return new ones (nothing is donated: an
    interrupted call must leave the model its last weights, and a guarded epoch that a
    check stops runs again from them), and write them back, so the Keras model always
    holds the current weights.
    """

    def _compile(
        self, model: keras.Model, objective: Objective, optimizer: Any, placement: Placement
    ) -> None:
        plan = self.plan
        self._model, self._optimizer = model, optimizer
        # Loss scaling without the guard: a divergent update stops the epoch (see below).
        scaled = self._scaled = plan.loss_scaling is not None and not plan.guard
        # Commit every value where it lives now (replicated under data parallelism): the
        # program's outputs are committed, and a first call on uncommitted inputs would
        # otherwise compile the program twice.
        self._write_back(tuple([jax.device_put(v, v.sharding) for v in g] for g in self._state()))
        # A first call's `going`, a scalar committed where the state's scalars are (the
        # step counter's place), as a later call's is.
        self._going = jax.device_put(True, optimizer.iterations.value.sharding)

        def scaled_loss(trainable, non_trainable, opt_vars, x, y):
            x = pixels.to_model_input(x)
            y_pred, non_trainable, losses = model.stateless_call(
                trainable, non_trainable, x, training=True, return_losses=True
            )
            loss = objective.loss(y, y_pred)
            if losses:
                loss = loss + sum(losses)
            loss = loss.astype("float32")
            values = jnp.stack([loss, *objective.metrics(y, y_pred)])
            mapping = list(zip(optimizer.variables, opt_vars, strict=True))
            with keras.StatelessScope(state_mapping=mapping):
                scaled = optimizer.scale_loss(loss)
            return scaled, (values, non_trainable)

        grad_fn = jax.value_and_grad(scaled_loss, has_aux=True)

        def select(keep_new, new, old):
            # An element-wise select (a lax.cond choosing the state measured the same on an
            # H200: bench/RESULTS.md, session 7).
            return jax.tree.map(lambda n, o: jnp.where(keep_new, n, o), new, old)

        def train_step(carry, batch, optimistic=False):
            # `optimistic`: commit every update, and carry instead whether each step so far
            # passed the checks that need no pass over the new weights (`optimistic_epoch`).
            (trainable, non_trainable, opt_vars), ok = carry
            (_, (values, new_non_trainable)), grads = grad_fn(
                trainable, non_trainable, opt_vars, *batch
            )
            new_trainable, new_opt = optimizer.stateless_apply(opt_vars, grads, trainable)
            if scaled:
                # The loss scaler skips a step whose gradients are not finite (and backs
                # off the scale); an update that is not finite with finite gradients is
                # a divergence: not committed, and no later step is (`guard.scaled_verdict`).
                loss_ok, grads_ok = jnp.isfinite(values[0]), guard.all_finite(grads)
                written = [] if optimistic else [*new_trainable, *new_opt]
                keep_update, keep_forward, going = guard.scaled_verdict(
                    ok, loss_ok, grads_ok, written
                )
                new_non_trainable = select(keep_forward, new_non_trainable, non_trainable)
                if optimistic:
                    new = (new_trainable, new_non_trainable, new_opt)
                    return (new, keep_update & going), values
                new_trainable, new_opt = select(
                    keep_update, (new_trainable, new_opt), (trainable, opt_vars)
                )
                new = (new_trainable, new_non_trainable, new_opt)
                return (new, going), guard.scaled_reported(values, going)
            new = (new_trainable, new_non_trainable, new_opt)
            if optimistic:
                # Not the gradients either: a non-finite gradient makes the update, so the
                # weights or optimizer values, non-finite too.
                step_ok = jnp.isfinite(values[0]) & guard.all_finite(new_non_trainable)
                return (new, ok & step_ok), values
            update_ok = guard.all_finite([values[0], *grads])
            if not plan.guard:
                # Without the guard and a loss scaler, the update is applied; the forward
                # pass's BatchNorm statistics and random-generator state are put back.
                new_non_trainable = select(update_ok, new_non_trainable, non_trainable)
                return ((new_trainable, new_non_trainable, new_opt), ok), values
            # A guarded step is committed only when everything it writes is finite.
            ok = ok & update_ok & guard.all_finite([*new_trainable, *new_non_trainable, *new_opt])
            state = select(ok, new, (trainable, non_trainable, opt_vars))
            return (state, ok), guard.reported(values, ok)

        def plain_epoch(state, xs, ys, going):
            (state, going), values = jax.lax.scan(train_step, (state, going), (xs, ys))
            return state, values, going

        def optimistic_epoch(state, xs, ys, going):
            # Checking every new weight and optimizer value each step is a pass over all
            # of them: about 0.12 ms a step on the wide MLP on an H200 (bench/RESULTS.md).
            # So the call first runs with every update committed, checking each step's
            # loss and forward-pass state (BatchNorm statistics: small), and the weights
            # and optimizer values once, at the end. A value the optimizer wrote that was
            # not finite stays not finite in later steps (an update is arithmetic on the
            # value before it, and NaN and infinity absorb), so the end check sees it.
            # When a check fails (rare), the call keeps its first state and reports no
            # step committed; `epoch` runs it again, each step guarded (a `lax.cond` doing
            # that here cost about 0.7 ms a call on an H200), or `LateChecks` does.
            def optimistic(carry, batch):
                return train_step(carry, batch, optimistic=True)

            (new, all_ok), values = jax.lax.scan(optimistic, (state, jnp.bool_(True)), (xs, ys))
            committed = going & all_ok & guard.all_finite([*new[0], *new[2]])
            report = guard.scaled_reported if scaled else guard.reported
            values = jax.vmap(report, in_axes=(0, None))(values, committed)
            return select(committed, new, state), values, committed

        def one_step(state, x, y, going):
            (state, going), values = train_step((state, going), (x, y))
            return state, values, going

        # Calls that run optimistically: compiled ones (run eagerly, a call traces its
        # scan anew, and the optimistic one would only add to that).
        self._optimistic = (plan.guard or scaled) and plan.xla
        wrap = jax.jit if plan.xla else (lambda f: f)
        self._step, self._epoch = wrap(one_step), wrap(plain_epoch)
        self._optimistic_epoch = wrap(optimistic_epoch)
        self._latch = guard.EpochLatch(optimizer) if scaled else None
        self._late = LateChecks(self._again, self._hold)

    def _state(self) -> tuple[list, list, list]:
        m, o = self._model, self._optimizer
        return (
            [v.value for v in m.trainable_variables],
            [v.value for v in m.non_trainable_variables],
            [v.value for v in o.variables],
        )

    def _write_back(self, state: tuple[list, list, list]) -> None:
        m, o = self._model, self._optimizer
        groups = (m.trainable_variables, m.non_trainable_variables, o.variables)
        for variables, values in zip(groups, state, strict=True):
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)

    def _start(self, going: Any) -> Any:
        """The flag a call starts from: under loss scaling, no divergence yet this epoch."""
        held = self._held()
        if held is None:
            return self._going if going is True else going
        return held if going is True else jnp.logical_and(held, going)

    def step(self, x: Any, y: Any) -> Any:
        state, values, going = self._step(self._state(), x, y, self._start(True))
        self._write_back(state)
        self._hold(going)
        return values

    def epoch(self, xs: Any, ys: Any, going: Any = True, read_late: bool = False) -> Any:
        going = self._start(going)
        if not self._optimistic:
            values, after = self._again(xs, ys, going)
            self._hold(after)
            return values
        first = self._state()
        # Optimistic (see `optimistic_epoch`): its flag is read here, with the values, or
        # when they are read (`confirm`), so that the device runs the calls back to back.
        state, values, committed = self._optimistic_epoch(first, xs, ys, going)
        self._write_back(state)  # while the device runs
        self._hold(committed)
        if read_late:
            self._late.add(LateCall(values, xs, ys, going, committed))
            return values
        values.copy_to_host_async()  # one wait for both
        if bool(committed):
            return values
        values, after = self._again(xs, ys, going)  # the first state: nothing committed
        self._hold(after)
        return values

    def _again(self, xs: Any, ys: Any, going: Any) -> tuple[Any, Any]:
        """The batches from the current state, each step checked; the state written back."""
        state, values, after = self._epoch(self._state(), xs, ys, going)
        self._write_back(state)
        return values, after

    def confirm(self, values: Any) -> Any:
        return self._late.confirm(values)

    def settle(self) -> None:
        self._late.settle()


class JaxEngine(Engine):
    """Keras on JAX: CPU, CUDA GPUs (TF32 for float32 matmuls by default) and others."""

    name = "jax"
    program_class = JaxProgram
    #: ``memory_stats()["peak_bytes_in_use"]`` is the process' peak: JAX cannot reset it.
    resets_peak_memory = False

    def __init__(self) -> None:
        self._device = jax.devices()[0]

    def describe_device(self) -> DeviceInfo:
        d = self._device
        if d.platform == "cpu":
            return cpu_device(self.name, xla=True)
        if d.platform in ("gpu", "cuda"):
            cc = tuple(int(p) for p in str(getattr(d, "compute_capability", "0.0")).split(".")[:2])
            default_precision = jax.config.jax_default_matmul_precision
            return DeviceInfo(
                self.name,
                "cuda",
                d.device_kind,
                xla=True,
                fp16_fast=cc >= (7, 0),
                bf16_fast=cc >= (8, 0),
                tf32=cc >= (8, 0) and default_precision in (None, "tensorfloat32", "default"),
                compute_capability=cc,
            )
        apple = d.platform.lower() == "metal"
        kind = "metal" if apple else d.platform
        return DeviceInfo(self.name, kind, d.device_kind, True, True, not apple)

    def placement(self, distribution: Any = None, devices: int | None = None) -> Placement:
        if distribution is None:
            return Placement(self)
        if isinstance(
            distribution, (keras.distribution.DataParallel, keras.distribution.ModelParallel)
        ):
            return JaxDataParallel(self, distribution)
        if distribution == "multi_worker":
            # One process per host; jax.distributed.initialize() must have run (see
            # docs/distributed.md): then list_devices() spans every host.
            distribution = "data_parallel"
        if distribution == "data_parallel":
            found = keras.distribution.list_devices()
            chosen = found if devices is None else found[:devices]
            if devices is not None and len(chosen) < devices:
                raise ValueError(f"{devices} devices asked for, but only {len(found)} found.")
            return JaxDataParallel(self, keras.distribution.DataParallel(devices=chosen))
        return super().placement(distribution, devices)

    def to_device(self, array: np.ndarray) -> Any:
        return jax.device_put(array, self._device)

    def sync(self, model: keras.Model | None = None) -> None:
        if model is not None:
            jax.block_until_ready([v.value for v in model.variables])
        jax.effects_barrier()

    def use_compilation_cache(self, folder: str) -> None:
        """Keep compiled programs in `folder` across processes (process-wide; off by default)."""
        jax.config.update("jax_compilation_cache_dir", str(folder))

    def peak_memory_bytes(self, reset: bool = False) -> int | None:
        stats = self._device.memory_stats() if self._device.platform != "cpu" else None
        return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None

    def free_memory_bytes(self) -> int | None:
        stats = self._device.memory_stats() if self._device.platform != "cpu" else None
        if not stats:
            return host_free_memory_bytes()
        return int(stats.get("bytes_limit", 0)) - int(stats.get("bytes_in_use", 0))

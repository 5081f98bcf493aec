"""The PyTorch runners of the benchmark: a hand-written AMP loop, eager and compiled.

The same architecture as a bench config's builder chain, as a ``torch.nn.Sequential``
(NCHW, as Go-Metal), trained with ``torch.autocast`` (+ ``GradScaler`` for float16) on
device-resident data. CUDA only; `torch_cuda` says why not elsewhere.
"""

from __future__ import annotations

import math
from typing import Any

from gometal_keras.bench.measurement import RunRequest, Timing, time_epochs, timing_of
from gometal_keras.bench.precisions import FULL, compute_dtype, torch_float32


def torch_module(builder: Any) -> Any:
    """A ``torch.nn.Sequential`` of the builder's layers (NCHW, as Go-Metal)."""
    from torch import nn

    mods: list[Any] = []
    for s in builder.layers:
        a = s.args
        if s.kind == "dense":
            if len(s.input_shape) == 3:
                mods.append(nn.Flatten())
            mods.append(nn.Linear(math.prod(s.input_shape), a["units"], bias=a["use_bias"]))
        elif s.kind == "conv2d":
            mods.append(
                nn.Conv2d(
                    s.input_shape[0],
                    a["filters"],
                    a["kernel_size"],
                    a["stride"],
                    a["padding"],
                    bias=a["use_bias"],
                )
            )
        elif s.kind == "maxpool2d":
            mods.append(nn.MaxPool2d(a["pool_size"], a["stride"] or a["pool_size"]))
        elif s.kind == "relu":
            mods.append(nn.ReLU())
        elif s.kind == "dropout":
            mods.append(nn.Dropout(a["rate"]))
        else:
            raise ValueError(f"The torch runner has no {s.kind!r} layer.")
    return nn.Sequential(*mods)


def run_torch(request: RunRequest, compiled: bool = False, device: str = "cuda") -> Timing:
    """Train and time a hand-written PyTorch AMP loop (eager, or with `torch.compile`).

    Args:
        request: The config, precision, data, epochs and seed.
        compiled: Compile the model and loss with `torch.compile` (``torch-compile``).
        device: The torch device.

    Returns:
        The `Timing` of the timed epochs, with the loss of the last.
    """
    import torch

    cfg, precision = request.config, request.precision
    amp = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(compute_dtype(precision))
    image = len(cfg.builder().input_shape) == 3
    fmt = torch.channels_last if image else torch.contiguous_format
    forks = [0] if device == "cuda" else []
    with torch.random.fork_rng(devices=forks), torch_float32(full=precision == FULL):
        torch.manual_seed(request.seed)
        model = torch_module(cfg.builder()).to(device, memory_format=fmt)
        xs, ys = _device_batches(request, device, fmt)
        opt = torch.optim.Adam(model.parameters(), 1e-3, (0.9, 0.999), 1e-8, fused=device == "cuda")
        scaler = torch.amp.GradScaler(
            device, 65536.0, growth_interval=2000, enabled=amp is torch.float16
        )
        step = _make_step(model, opt, scaler, amp, device, compiled)

        def epoch() -> list[float]:
            losses = [step(xs[i], ys[i]) for i in range(cfg.steps)]
            return torch.stack(losses).cpu().tolist()  # waits for the device

        model.train()
        times, losses = time_epochs(epoch, request.warmup, request.repeats)
    detail = ("torch.compile" if compiled else "eager") + (
        ", GradScaler" if scaler.is_enabled() else ""
    )
    return timing_of(times, cfg.steps, losses, detail)


def _device_batches(request: RunRequest, device: str, fmt: Any) -> tuple[Any, Any]:
    """The request's data on the device as ``(steps, batch, ...)`` (NCHW images)."""
    import torch

    cfg, (x, y) = request.config, request.data
    xs = torch.as_tensor(x).to(device)
    if xs.ndim == 4:
        xs = xs.permute(0, 3, 1, 2).contiguous(memory_format=fmt)
    xs = xs.reshape(cfg.steps, cfg.batch, *xs.shape[1:])
    return xs, torch.as_tensor(y).long().to(device).reshape(cfg.steps, cfg.batch)


def _make_step(model: Any, opt: Any, scaler: Any, amp: Any, device: str, compiled: bool) -> Any:
    """Return ``step(xb, yb) -> loss``: one autocast forward, scaled backward and update."""
    import torch
    from torch.nn import functional

    def loss_of(xb: Any, yb: Any) -> Any:
        return functional.cross_entropy(model(xb).float(), yb)

    forward = torch.compile(loss_of) if compiled else loss_of

    def step(xb: Any, yb: Any) -> Any:
        with torch.autocast(device, dtype=amp or torch.float32, enabled=amp is not None):
            loss = forward(xb, yb)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss.detach()

    return step


def torch_cuda() -> str | None:
    """None when the torch runners can run here (torch with CUDA), else why not."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    return None if torch.cuda.is_available() else "no CUDA GPU for torch"

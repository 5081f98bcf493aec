"""The PyTorch runners of the benchmark: a hand-written AMP loop, eager and compiled.

The same architecture as a bench config's builder chain, as a ``torch.nn.Sequential``
(NCHW, as Go-Metal), trained with ``torch.autocast`` (+ ``GradScaler`` for float16) on
device-resident data. CUDA only; `torch_cuda` says why not elsewhere.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gometal_keras.bench.measurement import Call, RunRequest, timed, timed_epochs
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


class TorchSession:
    """A hand-written PyTorch AMP loop of a request, eager or compiled (a `Session`).

    Args:
        request: The config, precision, data, epochs and seed.
        compiled: Compile the model and loss with `torch.compile` (``torch-compile``).
        device: The torch device.
    """

    def __init__(self, request: RunRequest, compiled: bool = False, device: str = "cuda"):
        import torch

        cfg, precision = request.config, request.precision
        self.request, self.device, self.precision = request, device, ""
        self.amp = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(
            compute_dtype(precision)
        )
        image = len(cfg.builder().input_shape) == 3
        self.fmt = torch.channels_last if image else torch.contiguous_format
        self._full = precision == FULL
        forks = [0] if device == "cuda" else []
        with torch.random.fork_rng(devices=forks), torch_float32(full=self._full):
            torch.manual_seed(request.seed)
            self.model = torch_module(cfg.builder()).to(device, memory_format=self.fmt)
            self.xs, self.ys = _device_batches(request, device, self.fmt)
            opt = torch.optim.Adam(
                self.model.parameters(), 1e-3, (0.9, 0.999), 1e-8, fused=device == "cuda"
            )
            scaler = torch.amp.GradScaler(
                device, 65536.0, growth_interval=2000, enabled=self.amp is torch.float16
            )
            self.step = _make_step(self.model, opt, scaler, self.amp, device, compiled)
        self.detail = ("torch.compile" if compiled else "eager") + (
            ", GradScaler" if scaler.is_enabled() else ""
        )

    def _epoch(self) -> list[float]:
        import torch

        losses = [self.step(self.xs[i], self.ys[i]) for i in range(self.request.config.steps)]
        return torch.stack(losses).cpu().tolist()  # waits for the device

    def call(self) -> Call:
        with torch_float32(full=self._full):
            self.model.train()
            return timed_epochs(self._epoch, self.request.epochs)

    def predict(self) -> float:
        import torch

        x = self.request.data[0]

        def run() -> np.ndarray:
            xs = torch.as_tensor(x).to(self.device)
            if xs.ndim == 4:
                xs = xs.permute(0, 3, 1, 2).contiguous(memory_format=self.fmt)
            batch, outs = self.request.config.batch, []
            with (
                torch.no_grad(),
                torch.autocast(
                    self.device, dtype=self.amp or torch.float32, enabled=self.amp is not None
                ),
            ):
                for i in range(0, len(xs) - batch + 1, batch):
                    outs.append(self.model(xs[i : i + batch]).float())
            return torch.cat(outs).cpu().numpy()  # waits for the device

        with torch_float32(full=self._full):
            self.model.eval()
            return timed(run)


def prepare_torch(request: RunRequest, compiled: bool = False, device: str = "cuda") -> Any:
    """The ``torch-eager`` / ``torch-compile`` runners: a `TorchSession`."""
    return TorchSession(request, compiled, device)


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

"""The PyTorch runners of the benchmark: a hand-written AMP loop, eager and compiled.

The same architecture as a bench config's builder chain, as a ``torch.nn.Sequential``
(NCHW, as Go-Metal), trained with ``torch.autocast`` (+ ``GradScaler`` for float16) on
device-resident data. CUDA only; `torch_cuda` says why not elsewhere.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

from gometal_keras.bench.configs import BenchConfig
from gometal_keras.bench.runners import Timing, timing_of


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


@contextlib.contextmanager
def _torch_float32(precision: str):
    """float32 runs TF32 (as JAX does by default); float32-full runs full float32."""
    import torch

    before = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    torch.set_float32_matmul_precision("highest" if precision == "float32-full" else "high")
    torch.backends.cudnn.allow_tf32 = precision != "float32-full"
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]


def run_torch(
    cfg: BenchConfig,
    precision: str,
    data: tuple,
    warmup: int,
    repeats: int,
    seed: int,
    compiled: bool = False,
    device: str = "cuda",
) -> Timing:
    """A hand-written PyTorch AMP loop (eager, or with `torch.compile`)."""
    import torch
    from torch.nn import functional

    amp = {"mixed_float16": torch.float16, "mixed_bfloat16": torch.bfloat16}.get(precision)
    image = len(cfg.builder().input_shape) == 3
    fmt = torch.channels_last if image else torch.contiguous_format
    with torch.random.fork_rng(devices=[0] if device == "cuda" else []), _torch_float32(precision):
        torch.manual_seed(seed)
        model = torch_module(cfg.builder()).to(device, memory_format=fmt)
        x, y = data
        xs = torch.as_tensor(x).to(device)
        if image:
            xs = xs.permute(0, 3, 1, 2).contiguous(memory_format=fmt)
        xs = xs.reshape(cfg.steps, cfg.batch, *xs.shape[1:])
        ys = torch.as_tensor(y).long().to(device).reshape(cfg.steps, cfg.batch)
        opt = torch.optim.Adam(model.parameters(), 1e-3, (0.9, 0.999), 1e-8, fused=device == "cuda")
        scaler = torch.amp.GradScaler(
            device, 65536.0, growth_interval=2000, enabled=amp is torch.float16
        )

        def loss_of(xb, yb):
            return functional.cross_entropy(model(xb).float(), yb)

        forward = torch.compile(loss_of) if compiled else loss_of

        def epoch() -> list[float]:
            out = []
            for i in range(cfg.steps):
                with torch.autocast(device, dtype=amp or torch.float32, enabled=amp is not None):
                    loss = forward(xs[i], ys[i])
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                out.append(loss.detach())
            return torch.stack(out).cpu().tolist()  # waits for the device

        model.train()
        losses = None
        for _ in range(warmup):
            losses = epoch()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            losses = epoch()
            times.append(time.perf_counter() - start)
    detail = ("torch.compile" if compiled else "eager") + (
        ", GradScaler" if scaler.is_enabled() else ""
    )
    return timing_of(times, cfg.steps, losses, detail)


def torch_cuda() -> str | None:
    """None when the torch runners can run here (torch with CUDA), else why not."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    return None if torch.cuda.is_available() else "no CUDA GPU for torch"

"""Several hosts, for real: two worker processes on 127.0.0.1 train one model together.

docs/distributed.md's recipe, run as a user runs it: each worker is a fresh interpreter with
its role (TensorFlow's ``TF_CONFIG``; JAX's ``jax.distributed.initialize`` with gloo CPU
collectives) and the same script with ``TrainerConfig(distribution="multi_worker")``, under
the defaults and under ``precision="auto"``. Both workers must train (their plans made alike,
by rule: per-worker trials ran different collectives and aborted), end with the same weights,
and match a one-process run over the same global batches (the oracle). Free ports are picked
here; every process is bounded in time and killed if it overstays.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

WORKER = textwrap.dedent("""
    import json, os, sys
    role, ports, backend, precision = sys.argv[1], sys.argv[2].split(","), sys.argv[3], sys.argv[4]
    os.environ["KERAS_BACKEND"] = backend
    distribution = None
    if role != "single":
        distribution, index = "multi_worker", int(role)
        if backend == "tensorflow":
            os.environ["TF_CONFIG"] = json.dumps({
                "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                "task": {"type": "worker", "index": index}})
        else:
            import jax
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
            jax.distributed.initialize(coordinator_address=f"127.0.0.1:{ports[0]}",
                                       num_processes=len(ports), process_id=index)
    import numpy as np
    from gometal_keras import ModelBuilder, Trainer, TrainerConfig
    builder = ModelBuilder([16, 20]).add_dense(32).add_relu().add_dense(4)
    config = TrainerConfig(batch_size=16, seed=3, distribution=distribution,
                           precision=None if precision == "default" else precision)
    if role == "single":  # the oracle: the workers' plan on one device
        config = config.replace(jit_compile=backend == "jax", loop="fused")
    trainer = Trainer(builder, config)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 20)).astype("float32"), rng.integers(0, 4, 64)
    run = trainer.fit(x, y, epochs=2)
    decision = trainer.decision
    print("RESULT " + json.dumps({
        "weights": [w.tolist() for w in trainer.model.get_weights()], "losses": run.losses,
        "plan": trainer.plan.to_dict(),
        "reason": decision.reason if decision else "",
        "origin": decision.origin if decision else ""}))
""")


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_processes(roles: list[str], backend: str, precision: str, tmp_path) -> list[dict]:
    ports = ",".join(map(str, free_ports(2)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", GOMETAL_KERAS_CACHE_DIR=str(tmp_path))
    env.pop("TF_CONFIG", None)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, role, ports, backend, precision],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for role in roles]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
            assert proc.returncode == 0 and lines, err[-3000:]
            results.append(json.loads(lines[-1][len("RESULT "):]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


CASES = [("tensorflow", "default"), ("tensorflow", "auto"), ("jax", "auto")]


@pytest.mark.parametrize(("backend", "precision"), CASES)
def test_two_workers_train_alike_and_match_one_process(backend, precision, tmp_path):
    if backend == "jax":
        pytest.importorskip("jax")
    workers = run_processes(["0", "1"], backend, precision, tmp_path)
    for index, worker in enumerate(workers):
        assert worker["origin"] == "rule", worker["reason"]
        assert f"worker {index} of 2" in worker["reason"]
    assert workers[0]["plan"] == workers[1]["plan"]
    for a, b in zip(workers[0]["weights"], workers[1]["weights"], strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # every worker alike
    # The oracle runs the workers' plan: under "auto" a one-process run would time its own
    # trials and could pick another precision than the workers' rule.
    in_force = workers[0]["plan"]["precision"]
    (single,) = run_processes(["single"], backend, in_force, tmp_path / "single")
    assert single["plan"]["precision"] == in_force
    np.testing.assert_allclose(workers[0]["losses"], single["losses"], rtol=1e-5)
    for a, b in zip(workers[0]["weights"], single["weights"], strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)

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

import contextlib
import fcntl
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

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


@contextlib.contextmanager
def one_cluster_at_a_time() -> Iterator[None]:
    """Hold a lock shared by every test process on this machine while a cluster runs.

    pytest-xdist's workers would otherwise start two clusters at once (5-7 processes on a
    2-core machine): a worker starved of the CPU misses TensorFlow's coordination-service
    heartbeats and its peers abort the run as if it had crashed.
    """
    with open(Path(tempfile.gettempdir()) / "gometal-keras-multi-worker.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run_processes(roles: list[str], backend: str, precision: str, tmp_path) -> list[dict]:
    with one_cluster_at_a_time():
        return _run_processes(roles, backend, precision, tmp_path)


def _run_processes(roles: list[str], backend: str, precision: str, tmp_path) -> list[dict]:
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


#: TensorFlow under the defaults is docs/distributed.md's recipe, run as written below
#: (`test_docs_recipe_runs_as_written_on_two_workers`, against one process too).
CASES = [("tensorflow", "auto"), ("jax", "auto")]


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


# --- TensorFlow workers from TF_CONFIG: docs/distributed.md's recipe as written, a stream,
# checkpoints across worker counts, a lost worker. One pair of worker processes runs them all
# in turn (a process start costs seconds); the one-process oracles run in this process.

COMMON = textwrap.dedent("""
    import keras
    import numpy as np
    from gometal_keras import ModelBuilder, TrainerConfig
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 20)).astype("float32"), rng.integers(0, 4, 64)
    builder = ModelBuilder([16, 20]).add_dense(32).add_relu().add_dense(4)
    config = TrainerConfig(batch_size=16, seed=3, distribution="multi_worker")

    class Stream(keras.utils.PyDataset):  # batches of 10, re-cut to global batches of 16
        def __len__(self):
            return 7
        def __getitem__(self, i):
            return x[::-1][i * 10 : (i + 1) * 10], y[::-1][i * 10 : (i + 1) * 10]
""")

SCENARIO = textwrap.dedent("""
    import json, os, sys, time
    role, folder, recipe = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    os.chdir(os.path.join(folder, f"host{role}"))  # the recipe, as the page shows it
    exec(compile(recipe, "<docs/distributed.md recipe>", "exec"), {"__name__": "__main__"})
    print("RECIPE done", flush=True)
""") + COMMON + textwrap.dedent("""
    from gometal_keras import Trainer
    weights = lambda t: [w.tolist() for w in t.model.get_weights()]
    out = {}
    streamed = Trainer(builder, config)
    streamed.fit(Stream(), epochs=2)
    out["stream"] = weights(streamed)
    resumed = Trainer.load(os.path.join(folder, "one.gmk"), distribution="multi_worker")
    resumed.fit(x, y, epochs=1)
    out["from_one"] = weights(resumed)
    trainer = Trainer(builder, config)
    trainer.fit(x, y, epochs=1)
    if role == 0:
        trainer.save(os.path.join(folder, "two.gmk"))
    trainer.fit(x, y, epochs=1)
    out["arrays"] = weights(trainer)
    print("RESULT " + json.dumps(out), flush=True)

    class Stall(keras.callbacks.Callback):  # worker 1 waits here to be killed
        def on_epoch_begin(self, epoch, logs=None):
            if role == 1:
                print("STALLED", flush=True)
                time.sleep(300)

    start = time.monotonic()
    try:
        trainer.fit(x, y, epochs=1, callbacks=[Stall()])
        error = None
    except RuntimeError as err:
        error = str(err)
    print("STOPPED " + json.dumps({"error": error, "seconds": time.monotonic() - start}))
""")


class TFWorkers:
    """Two TensorFlow worker processes on 127.0.0.1 (`TF_CONFIG` in their environment, set
    before Python starts, as docs/distributed.md says) running `code` with `args`, their
    output lines read as they come. Bounded: every wait has a timeout, and leaving the block
    kills what still runs."""

    def __init__(self, code: str, args: list[str], tmp_path: Path):
        ports = free_ports(2)
        self.lines: list[list[str]] = [[], []]
        self.procs = []
        self.errors = [tmp_path / f"worker{index}.err" for index in range(2)]
        for index in range(2):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow",
                       GOMETAL_KERAS_CACHE_DIR=str(tmp_path / f"cache{index}"),
                       TF_CONFIG=json.dumps({
                           "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                           "task": {"type": "worker", "index": index}}))
            with open(self.errors[index], "w") as err:  # the child keeps its own handle
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-c", code, str(index), *args], env=env,
                    stdout=subprocess.PIPE, stderr=err, text=True))
        self.readers = [threading.Thread(target=self._read, args=(i,), daemon=True)
                        for i in range(2)]
        for reader in self.readers:
            reader.start()

    def _read(self, index: int) -> None:
        for line in self.procs[index].stdout:
            self.lines[index].append(line.rstrip("\n"))

    def line(self, index: int, prefix: str, timeout: float = 240) -> str:
        """The first line of worker `index` starting with `prefix` (its text after it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [ln for ln in self.lines[index] if ln.startswith(prefix)]
            if found:
                return found[0][len(prefix):]
            if not self.readers[index].is_alive():  # its output ended
                break
            time.sleep(0.05)
        raise AssertionError(f"worker {index} printed no {prefix!r}: "
                             + self.errors[index].read_text()[-3000:])

    def __enter__(self) -> TFWorkers:
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


def recipe() -> str:
    """docs/distributed.md's "Several hosts" script, as the page shows it."""
    text = (ROOT / "docs" / "distributed.md").read_text(encoding="utf-8")
    section = text.split("\n## Several hosts", 1)[1].split("\n## ", 1)[0]
    return re.search(r"^```python\n(.*?)^```", section, re.S | re.M).group(1)


def weights_of(trainer) -> list[np.ndarray]:
    return [np.asarray(w) for w in trainer.model.get_weights()]


def assert_same(workers: list, oracle: list[np.ndarray]) -> None:
    """Both workers' weights alike, and equal to the oracle's within float tolerance."""
    for a, b, ref in zip(*workers, oracle, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_allclose(np.asarray(a), ref, rtol=1e-4, atol=1e-5)


def one_process(config):
    """A one-process oracle's config: the plan the workers run, on this process' device."""
    return config.replace(distribution=None, jit_compile=False, loop="fused")


@pytest.fixture(scope="module")
def tf_workers(tmp_path_factory) -> dict:
    """The one-process oracles, then one pair of TensorFlow workers through `SCENARIO`."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow workers")
    from gometal_keras import Trainer
    from gometal_keras.planning.decision_cache import ENV

    tmp = tmp_path_factory.mktemp("tf-workers")
    names: dict = {}
    exec(COMMON, names)
    x, y, builder, config = names["x"], names["y"], names["builder"], names["config"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV, str(tmp / "cache"))
        oracles = {}
        for name, data in (("unbroken", (x, y)), ("stream", (names["Stream"](), None))):
            trainer = Trainer(builder, one_process(config))
            trainer.fit(*data, epochs=2)
            oracles[name] = weights_of(trainer)
        one = Trainer(builder, one_process(config))
        one.fit(x, y, epochs=1)
        one.save(str(tmp / "one.gmk"))  # resumed by the two workers
        for index in range(2):
            (tmp / f"host{index}").mkdir()
        with one_cluster_at_a_time(), TFWorkers(SCENARIO, [str(tmp), recipe()], tmp) as workers:
            results = [json.loads(workers.line(i, "RESULT ")) for i in range(2)]
            workers.line(1, "STALLED")
            workers.procs[1].kill()  # dies while worker 0 is in the epoch's first all-reduce
            stopped = json.loads(workers.line(0, "STOPPED ", timeout=120))
        # The recipe's one-process oracle: the same script, the workers' plan, one process.
        code = recipe()
        alone = code.replace('distribution="multi_worker"',
                             'distribution=None, jit_compile=False, loop="fused"')
        assert alone != code
        (tmp / "alone").mkdir()
        patch.chdir(tmp / "alone")
        exec(compile(alone, "<recipe, one process>", "exec"), {"__name__": "__recipe__"})
    return {"results": results, "stopped": stopped, "oracles": oracles, "folder": tmp,
            "x": x, "y": y}


def test_docs_recipe_runs_as_written_on_two_workers(tf_workers):
    from gometal_keras import Trainer

    folder = tf_workers["folder"]
    saved = [Trainer.load(str(folder / f"host{i}" / "run.gmk"), distribution=None)
             for i in range(2)]
    assert "worker 0 of 2" in saved[0].decision.reason, saved[0].decision.reason
    assert saved[0].epoch == saved[1].epoch == 2
    oracle = weights_of(Trainer.load(str(folder / "alone" / "run.gmk")))
    assert_same([weights_of(t) for t in saved], oracle)


def test_a_stream_on_two_workers_matches_one_process(tf_workers):
    """Every worker reads the whole stream and trains its slice of each global batch."""
    results = tf_workers["results"]
    assert_same([r["stream"] for r in results], tf_workers["oracles"]["stream"])
    assert_same([r["arrays"] for r in results], tf_workers["oracles"]["unbroken"])


def test_checkpoints_resume_across_worker_counts(tf_workers):
    """One process's checkpoint on two workers, and two workers' checkpoint in one process:
    after one more epoch, the weights of an unbroken two-epoch run."""
    from gometal_keras import Trainer

    unbroken = tf_workers["oracles"]["unbroken"]
    assert_same([r["from_one"] for r in tf_workers["results"]], unbroken)
    resumed = Trainer.load(str(tf_workers["folder"] / "two.gmk"), distribution=None)
    assert resumed.epoch == 1 and resumed.plan.replicas == 1
    resumed.fit(tf_workers["x"], tf_workers["y"], epochs=1)
    for a, ref in zip(weights_of(resumed), unbroken, strict=True):
        np.testing.assert_allclose(a, ref, rtol=1e-4, atol=1e-5)


def test_a_killed_worker_is_named_by_the_other(tf_workers):
    """Worker 1 killed mid-run: worker 0 stops (within the wait's bound) with one sentence
    naming it; the last checkpoint resumes (test_checkpoints_resume_across_worker_counts)."""
    error = tf_workers["stopped"]["error"]
    assert error and error.startswith("Worker 1 of 2 stopped answering"), error
    assert "\n" not in error and error.endswith("(Trainer.load)."), error
    assert error.count(". ") == 0, error  # one sentence


# --- JAX workers (gloo CPU collectives): the defaults, a stream, checkpoints across worker
# counts, a lost worker. Two workers and a one-process oracle run side by side; the
# checkpoints cross between them through files, each side waiting (bounded) for the other's.

JAX_PREAMBLE = textwrap.dedent("""
    import json, os, sys, time
    role, port, folder = sys.argv[1], sys.argv[2], sys.argv[3]
    os.environ["KERAS_BACKEND"] = "jax"
    if role != "oracle":
        import jax
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                                   process_id=int(role))

    def wait_for(name):
        path = os.path.join(folder, name)
        for _ in range(1200):
            if os.path.exists(path + ".done"):
                return path
            time.sleep(0.1)
        raise TimeoutError(path)

    def saved(trainer, name):
        trainer.save(os.path.join(folder, name))
        open(os.path.join(folder, name + ".done"), "w").close()
""") + COMMON + textwrap.dedent("""
    from gometal_keras import Trainer
    weights = lambda t: [w.tolist() for w in t.model.get_weights()]
    out = {}
    if role == "oracle":  # the workers' plan (XLA, fused) in one process
        config = config.replace(distribution=None, jit_compile=True, loop="fused")
    trainer = Trainer(builder, config)
    trainer.fit(x, y, epochs=1)
    if role in ("oracle", "0"):
        saved(trainer, "one.gmk" if role == "oracle" else "two.gmk")
    trainer.fit(x, y, epochs=1)
    out["arrays"] = weights(trainer)
    streamed = Trainer(builder, config)
    streamed.fit(Stream(), epochs=2)
    out["stream"] = weights(streamed)
    other = wait_for("two.gmk" if role == "oracle" else "one.gmk")
    resumed = Trainer.load(other, distribution=None if role == "oracle" else "multi_worker")
    resumed.fit(x, y, epochs=1)
    out["resumed"], out["plan"] = weights(resumed), trainer.plan.to_dict()
    out["reason"] = trainer.decision.reason if trainer.decision else ""
    print("RESULT " + json.dumps(out), flush=True)
    if role == "1":
        os._exit(3)  # dies between two fits: worker 0's next collective finds it gone
    if role == "0":
        try:
            trainer.fit(x, y, epochs=1)
            error = None
        except Exception as err:
            error = f"{type(err).__name__}: {err}"
        print("STOPPED " + json.dumps({"error": error, "epoch": trainer.epoch}), flush=True)
    os._exit(0)  # not jax.distributed's shutdown, which waits for the dead worker's heartbeat
""")


def _run_jax_scenario(roles: list[str], port: int, folder: Path, env: dict) -> dict:
    """Each role of `JAX_PREAMBLE`'s script in its own process; their (stdout, stderr)."""
    procs = [subprocess.Popen([sys.executable, "-c", JAX_PREAMBLE, role, str(port), str(folder)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for role in roles]
    outputs = {}
    try:
        for role, proc in zip(roles, procs, strict=True):
            outputs[role] = proc.communicate(timeout=240)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return outputs


@pytest.fixture(scope="module")
def jax_workers(tmp_path_factory) -> dict:
    """Two JAX workers and the one-process oracle through `JAX_PREAMBLE`'s script."""
    pytest.importorskip("jax")
    folder = tmp_path_factory.mktemp("jax-workers")
    (port,) = free_ports(1)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", GOMETAL_KERAS_CACHE_DIR=str(folder))
    roles = ["0", "1", "oracle"]
    with one_cluster_at_a_time():
        outputs = _run_jax_scenario(roles, port, folder, env)

    def line(role: str, prefix: str) -> dict:
        out, err = outputs[role]
        found = [ln for ln in out.splitlines() if ln.startswith(prefix)]
        assert found, f"{role} printed no {prefix!r}: {err[-3000:]}"
        return json.loads(found[-1][len(prefix):])

    return {"results": [line(r, "RESULT ") for r in roles], "stopped": line("0", "STOPPED ")}


def test_jax_workers_under_the_defaults_match_one_process(jax_workers):
    zero, one, oracle = jax_workers["results"]
    assert zero["plan"] == one["plan"] and "worker 0 of 2" in zero["reason"], zero["reason"]
    assert zero["plan"]["precision"] == oracle["plan"]["precision"]
    assert_same([zero["arrays"], one["arrays"]], [np.asarray(w) for w in oracle["arrays"]])


def test_a_stream_on_two_jax_workers_matches_one_process(jax_workers):
    zero, one, oracle = jax_workers["results"]
    assert_same([zero["stream"], one["stream"]], [np.asarray(w) for w in oracle["stream"]])


def test_jax_checkpoints_resume_across_worker_counts(jax_workers):
    """The oracle's one-epoch checkpoint resumed on two workers, the workers' resumed in one
    process: after one more epoch each, the weights of an unbroken two-epoch run."""
    zero, one, oracle = jax_workers["results"]
    unbroken = [np.asarray(w) for w in oracle["arrays"]]
    assert_same([zero["resumed"], one["resumed"]], unbroken)
    for a, ref in zip(oracle["resumed"], unbroken, strict=True):
        np.testing.assert_allclose(np.asarray(a), ref, rtol=1e-4, atol=1e-5)


def test_a_lost_jax_worker_is_named_by_the_other(jax_workers):
    """Worker 1 gone: worker 0's next collective (laying out the data, or a training call)
    stops with the same one sentence as on TensorFlow, its completed epochs kept."""
    stopped = jax_workers["stopped"]
    error = stopped["error"]
    assert error and error.startswith("RuntimeError: Worker 1 of 2 stopped answering in a "
                                      "training collective ("), error
    assert "Gloo" in error and error.endswith("(Trainer.load).") and "\n" not in error
    assert stopped["epoch"] == 2


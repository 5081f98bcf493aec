"""A trial's first run in a child process, so that a device that kills its process kills only that.

tensorflow-metal's hard failures do not raise: ``failed assertion [MPSNDArray
initWithDevice:descriptor:] ... total bytes of NDArray > 2**32`` aborts the process,
``malloc: *** error for object`` and segfaults end it (tensorflow#83371, #60395). A trial
run in the user's process would take the user's program with it. So on a device with known
faults (`verify.KNOWN_FAULTS`) each plan's program is first built and run once (its warm-up,
on the trial's synthetic batches) in a fresh Python process (`subprocess`, not
`multiprocessing`: a spawned child would re-run a user's script that has no ``if __name__ ==
"__main__"`` guard). Only a plan whose child finished is then tried in this process. A child
that dies is one sentence naming its signal and its last line on stderr; one that outlasts the
time limit is killed (a thread cannot be), and counts as a hang.

The child gets the model (pickled, weights and dtype policies included), the placement with
its engine, the config, the plan and the seed; `trial_runner.run_child` is its whole work.
The child writes ``("started", None)`` once it has loaded the job, then ``("ran", None)`` or
``("ran", error)``: a child that could not load the job (a model that does not unpickle
there) leaves the plan to be tried in this process, with a warning.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
import warnings
from typing import Any

import keras

#: The child's program: read the job's sys.path, then the job; run it; write the outcome.
_CHILD = (
    "import pickle, sys\n"
    "job = open(sys.argv[1], 'rb')\n"
    "sys.path[:] = pickle.load(job)\n"
    "from gometal_keras.planning.trial_runner import run_child\n"
    "run_child(job, sys.argv[2])\n"
)


def first_run(job: dict[str, Any], seconds: float) -> str | None:
    """Run `job`'s program once in a child process: None where it ran, else why not.

    A job that cannot reach the child (its model does not pickle, or does not load there,
    e.g. a custom layer the child cannot import) is not a failure of the plan: it is said in
    a RuntimeWarning and None is returned, so the plan is tried in this process as before.

    Args:
        job: ``model`` (a built `keras.Model`), ``config``, ``engine``, ``plan``, ``place``
            (a `Placement` of that engine) and ``seed``: what `TrialRunner` would run.
        seconds: The time limit; a child still running then is killed.

    Returns:
        None; or one clause: the error the run raised (``"NotFoundError: ..."``), the signal
        that ended the child and its last line on stderr.

    Raises:
        TimeoutError: The child did not finish within `seconds` (it was killed).
    """
    with tempfile.TemporaryDirectory(prefix="gometal-trial-") as folder:
        job_path, result_path = os.path.join(folder, "job"), os.path.join(folder, "result")
        try:
            with open(job_path, "wb") as file:
                pickle.dump(list(sys.path), file)
                pickle.dump(job, file)
        except Exception as error:  # e.g. a Lambda layer's closure
            return _in_process(job, f"{type(error).__name__}: {error}")
        env = {**os.environ, "KERAS_BACKEND": keras.backend.backend()}
        try:
            done = subprocess.run(
                [sys.executable, "-c", _CHILD, job_path, result_path],
                capture_output=True, text=True, errors="replace", timeout=seconds, env=env,
            )
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"did not finish within {seconds:g} s") from None
        result = None
        if os.path.exists(result_path):
            with open(result_path, "rb") as file:
                result = pickle.load(file)
        stage, said = outcome(done.returncode, result, done.stderr)
        return _in_process(job, said) if stage == "setup" else said


def outcome(code: int, result: tuple[str, str | None] | None, stderr: str
            ) -> tuple[str, str | None]:  # fmt: skip
    """What a child's end means: ``("ran", None)``, ``("ran", why)`` or ``("setup", why)``.

    Args:
        code: The child's exit status (negative: the signal that killed it).
        result: What it wrote: ``(stage, text)``, or None where it wrote nothing.
        stderr: What it printed on stderr.

    Returns:
        ``"ran"`` with what the child wrote once the plan's run ended (None: it ran; else
        the error it raised), or with why it crashed (a signal that ended the child before
        that, or an exit once the job had started); ``"setup"`` with why the job never
        started (the child could not load it, or exited before it had).

    Example:
        >>> outcome(0, ("ran", None), "")
        ('ran', None)
        >>> outcome(-6, ("started", None), "failed assertion")[1].split(";")[0]
        'its trial process was killed by SIGABRT (it would have ended this program)'
        >>> outcome(1, None, "ModuleNotFoundError: No module named 'mine'")
        ('setup', "exit status 1: ModuleNotFoundError: No module named 'mine'")
    """
    stage, text = result if result is not None else ("setup", None)
    if stage == "ran":  # the plan's run ended (how the process ended after it, does not count)
        return "ran", text
    if code < 0 or (stage == "started" and code != 0):  # a crash: a signal, or an exit mid-run
        return "ran", _death(code, stderr)
    if stage == "setup" and text is not None:
        return "setup", text
    last = [line.strip() for line in stderr.splitlines() if line.strip()]
    return "setup", f"exit status {code}" + (f": {last[-1][:200]}" if last else "")


def _in_process(job: dict[str, Any], why: str) -> None:
    """Say that `job` could not be run in a child (`why`), so it runs here."""
    warnings.warn(f"{job['plan'].label()} could not be tried in a child process ({why}); it "
                  "is tried in this process, where a crash would end the program.",
                  RuntimeWarning, 4)


def _death(code: int, stderr: str) -> str:
    """One clause for a child that ended with `code` (negative: a signal) and its stderr."""
    if code >= 0:
        how = f"ended with exit status {code}"
    else:
        try:
            how = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    last = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = f"; its last words: {last[-1][:200]}" if last else ""
    return f"its trial process was {how} (it would have ended this program){said}"

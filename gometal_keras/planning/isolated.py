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
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
from typing import Any

import keras

#: The child's program: read the job's sys.path, then the job; run it; write the outcome.
_CHILD = (
    "import pickle, sys\n"
    "job = open(sys.argv[1], 'rb')\n"
    "sys.path[:] = pickle.load(job)\n"
    "from gometal_keras.planning.trial_runner import run_child\n"
    "run_child(pickle.load(job), sys.argv[2])\n"
)


def first_run(job: dict[str, Any], seconds: float) -> str | None:
    """Run `job`'s program once in a child process: None where it ran, else why not.

    Args:
        job: ``model`` (a built `keras.Model`), ``config``, ``engine``, ``plan``, ``place``
            (a `Placement` of that engine) and ``seed``: what `TrialRunner` would run.
        seconds: The time limit; a child still running then is killed.

    Returns:
        None; or one clause: the error the run raised (``"NotFoundError: ..."``), the signal
        or exit status that ended the child and its last line on stderr.

    Raises:
        TimeoutError: The child did not finish within `seconds` (it was killed).
    """
    with tempfile.TemporaryDirectory(prefix="gometal-trial-") as folder:
        job_path, result_path = os.path.join(folder, "job"), os.path.join(folder, "result")
        with open(job_path, "wb") as file:
            pickle.dump(list(sys.path), file)
            pickle.dump(job, file)
        env = {**os.environ, "KERAS_BACKEND": keras.backend.backend()}
        try:
            done = subprocess.run(
                [sys.executable, "-c", _CHILD, job_path, result_path],
                capture_output=True, text=True, errors="replace", timeout=seconds, env=env,
            )
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"did not finish within {seconds:g} s") from None
        if done.returncode == 0 and os.path.exists(result_path):
            with open(result_path, "rb") as file:
                return pickle.load(file)
        return _death(done.returncode, done.stderr)


def _death(code: int, stderr: str) -> str:
    """One clause for a child that ended with `code` and wrote `stderr`."""
    if code < 0:
        try:
            how = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    else:
        how = f"ended with exit status {code}"
    last = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = f"; its last words: {last[-1][:200]}" if last else ""
    return f"its trial process was {how} (it would have ended this program){said}"

# Sourced by bench/h200_session*.sh on the H200: installs the carried Keras wheels (.whl),
# sets the environment, and defines $out (results) and `quiet` (drops XLA's log lines).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
out=${OUT:-/tmp/out}; mkdir -p "$out"
quiet() { grep --line-buffered -v '^WARNING\|^I0000\|^E0000\|^W0000'; }

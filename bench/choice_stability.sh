#!/usr/bin/env bash
# Issue 12's "decisions that hold": N fresh processes (default 10) each time precision="auto"'s
# candidates for the demo's seed MLP afresh (`gometal-keras tune`: decision_cache="always", so
# no process reads another's decision) and print the chosen plan and the reason, one line each.
#   bash bench/choice_stability.sh [N]        # from the project root, with .venv made
set -uo pipefail
n=${1:-10}
py=${PY:-.venv/bin/python}
export TF_CPP_MIN_LOG_LEVEL=3 GOMETAL_KERAS_CACHE_DIR=$(mktemp -d)
for i in $(seq "$n"); do
  "$py" -m gometal_keras tune 2>/dev/null | awk -v i="$i" '
    /^Chosen:/ { sub(/^Chosen: +/, ""); chosen = $0 }
    /^Reason:/ { sub(/^Reason: +/, ""); print "process " i ": " chosen " | " $0 }'
done

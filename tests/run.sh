#!/usr/bin/env bash
# The test command: lint, then the whole suite (with doctests) on TensorFlow,
# then the multi-backend subset on JAX and on PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONWARNINGS=ignore::DeprecationWarning MPLBACKEND=Agg

"$PY" -m ruff check .
"$PY" -m ruff format --check .

echo "== TensorFlow backend: all tests and doctests"
KERAS_BACKEND=tensorflow "$PY" -m pytest -q -x "$@"

for backend in jax torch; do
  echo "== $backend backend: multi-backend subset"
  if ! "$PY" -c "import $backend" 2>/dev/null; then
    echo "$backend is not installed: skipped (pip install jax / torch to run it)"
    continue
  fi
  KERAS_BACKEND=$backend "$PY" -m pytest -q -x -m multibackend -o addopts="-p no:cacheprovider" "$@" tests
done

#!/usr/bin/env bash
# CI, release part: the docs build strictly, every example runs in --smoke
# mode, and the built sdist and wheel install and work in a fresh venv.
# Needs the `docs` extra and `build`: pip install -e ".[all,docs]" build
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
case $PY in /*) ;; *) PY="$PWD/$PY" ;; esac
ROOT=$PWD
export TF_CPP_MIN_LOG_LEVEL=3 MPLBACKEND=Agg NO_MKDOCS_2_WARNING=1

echo "== mkdocs build --strict"
site=$(mktemp -d)
"$PY" -m mkdocs build --strict --site-dir "$site"
rm -rf "$site"

echo "== examples --smoke"
out=$(mktemp -d)
for example in examples/*.py; do
  echo "-- $example"
  (cd "$out" && KERAS_BACKEND=tensorflow "$PY" "$ROOT/$example" --smoke)
done
rm -rf "$out"

echo "== sdist and wheel in a fresh virtual environment"
bash scripts/check_dist.sh "$PY"

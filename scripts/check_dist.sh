#!/usr/bin/env bash
# Release check: build the sdist and the wheel, install the wheel in a fresh
# virtual environment (no system site-packages), and smoke-test it from
# outside the source tree. Usage: bash scripts/check_dist.sh [python]
set -euo pipefail
cd "$(dirname "$0")/.."
# Only the built distributions may be seen: no source tree on the path.
unset PYTHONPATH PYTHONHOME
PY=${1:-${PYTHON:-.venv/bin/python}}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 TF_CPP_MIN_LOG_LEVEL=3 MPLBACKEND=Agg
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)

echo "== build sdist and wheel"
"$PY" -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
ls -l "$WORK/dist"
sdist=$(ls "$WORK"/dist/*.tar.gz)
wheel=$(ls "$WORK"/dist/*.whl)

echo "== contents"
listing=$(tar -tzf "$sdist")
for f in keras_lr/data/fashion_mnist_sample.npz keras_lr/data/LICENSE-fashion-mnist.txt LICENSE; do
  grep -qx "keras_lr-[^/]*/$f" <<<"$listing" || { echo "sdist lacks $f"; exit 1; }
done
echo "sdist: data and licences present"
"$PY" - "$wheel" <<'PYEOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
for need in ("keras_lr/data/fashion_mnist_sample.npz",
             "keras_lr/data/LICENSE-fashion-mnist.txt", "keras_lr/cli.py"):
    if need not in names:
        sys.exit(f"wheel lacks {need}")
if not any(n.endswith("/LICENSE") or "licenses/LICENSE" in n for n in names):
    sys.exit("wheel lacks LICENSE")
print(f"wheel: {len(names)} files, data and licences present")
PYEOF

echo "== fresh virtual environment, install the wheel"
"$PY" -c "import sys; print(sys.version)"
BASE=$("$PY" -c "import sys; print(sys.base_prefix)")/bin/python3
"$BASE" -m venv "$WORK/venv"
t0=$(date +%s)
"$WORK/venv/bin/pip" install -q "$wheel"
echo "install took $(( $(date +%s) - t0 )) s"

echo "== smoke test, from outside the source tree"
cd "$WORK"
"$WORK/venv/bin/python" - <<'PYEOF'
import keras_lr, keras_lr.data, numpy as np
assert "site-packages" in keras_lr.__file__, keras_lr.__file__
(x, y), _ = keras_lr.data.load_fashion_mnist_sample()
assert x.shape == (3000, 28, 28), x.shape
lrs = np.geomspace(1e-6, 1.0, 100)
losses = 2.3 - 2.0 / (1 + np.exp(-3 * (np.log10(lrs) + 3))) + 30 * lrs**2
r = keras_lr.LRRangeTestResult(lrs, losses, diverged=True)
print("import ok:", keras_lr.__version__, "suggestion", f"{r.suggestion():.3g}")
PYEOF
"$WORK/venv/bin/keras-lr" demo --steps 20 --quiet --output "$WORK/demo.png"
test -s "$WORK/demo.png"

echo "== the sdist installs too (same venv, dependencies already there)"
"$WORK/venv/bin/pip" install -q --force-reinstall --no-deps "$sdist"
"$WORK/venv/bin/python" -c "
import keras_lr.data as d, keras_lr
assert 'site-packages' in keras_lr.__file__
(x, y), _ = d.load_fashion_mnist_sample()
print('sdist install ok:', keras_lr.__version__, x.shape)"
echo "== dist check passed in $(( $(date +%s) - start )) s"

#!/usr/bin/env bash
# Install comcl into a local virtual environment (default .venv), exactly as pinned.
# Safe to run again: what is installed already is skipped. Called by `make run` / `make test`.
set -euo pipefail

VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nINSTALL FAILED: %s\n' "$*" >&2; exit 1; }
trap 'fail "the command on line $LINENO exited with an error (see above)"' ERR

step "Python"
"$PYTHON" - <<'PY' || fail "comcl needs Python 3.11 (set PYTHON=/path/to/python3.11)"
import sys
assert sys.version_info[:2] == (3, 11), sys.version
PY

if [ ! -x "$VENV/bin/python" ]; then
    step "Creating the virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

step "pip"
"${PIP[@]}" install --quiet pip==25.3

step "Pinned dependencies (requirements.lock; torch alone is a ~3 GB download the first time)"
"${PIP[@]}" install --no-deps --progress-bar on -r requirements.lock

if "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("mmcv") != "2.1.0")' 2>/dev/null; then
    step "mmcv 2.1.0: installed"
else
    step "mmcv 2.1.0 from source against torch (no wheels exist; the first time ~5-25 min for CPU operators, more for CUDA ones)"
    # CUDA or CPU operators, from what torch and nvcc answer; the reason is printed, the build's environment comes back.
    build_env=$("$VENV/bin/python" scripts/mmcv_build.py \
        --again "uninstall mmcv ($VENV/bin/python -m pip uninstall -y mmcv) and run scripts/install.sh again") ||
        fail "mmcv cannot be built as asked (see above)"
    # In a subshell: a CPU build hides the GPU from mmcv's setup, not from the check below.
    (eval "$build_env" && MAX_JOBS=${MAX_JOBS:-$(nproc)} "${PIP[@]}" install --no-deps --no-build-isolation mmcv==2.1.0)
fi

step "comcl (editable)"
"${PIP[@]}" install --quiet --no-deps --no-build-isolation -e .

step "Checking the environment"
"$VENV/bin/python" - <<'PY'
import torch, torchvision, mmcv, mmdet, mmengine, snakemake, comcl
from mmcv.ops import get_compiling_cuda_version, nms  # the compiled operators that MMDetection needs
from comcl.devices import MMCV_CUDA_FIX, mmcv_cuda_problem
operators = get_compiling_cuda_version()
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, mmcv {mmcv.__version__}, "
      f"mmdet {mmdet.__version__}, mmengine {mmengine.__version__}, comcl {comcl.__version__}, "
      f"CUDA available: {torch.cuda.is_available()}, "
      f"mmcv operators: {'CPU only' if operators == 'not available' else f'CPU and CUDA {operators}'}")
# An mmcv installed before (skipped above) may lack what this machine's GPU needs: said here, not hours into a job.
if torch.cuda.is_available() and (problem := mmcv_cuda_problem(torch.device("cuda"))):
    print(f"\nWARNING: {problem}: the detector stages would run on the CPU. To use the GPU, {MMCV_CUDA_FIX}.")
PY
printf '\ncomcl is installed in %s\n' "$VENV"

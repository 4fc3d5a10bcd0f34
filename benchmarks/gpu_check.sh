#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) with whatever Python and PyTorch this machine has, not only
# the pinned .venv: PYTHON=/path/to/python (default: the python on PATH). Every argument goes to the
# script (--help lists them).
#
#   bash benchmarks/gpu_check.sh                            # a CUDA machine, the paper's sizes
#   bash benchmarks/gpu_check.sh --device cpu --quick       # tiny sizes, any machine, well under a minute
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHONPATH="$ROOT/src:$ROOT/benchmarks" exec "${PYTHON:-python}" "$ROOT/benchmarks/gpu_check.py" "$@"

#!/usr/bin/env bash
# The supervised baseline alone, on config/evidence.yaml's data drawn at other lesion scales: how much
# does low quality cost it? Larger lesions stay visible through every degradation; smaller ones make
# the task hard to learn at the 64 px fine-tuning input. For each scale it writes the configuration,
# fine-tunes ResNet-18 on the original, 70 % and 100 % versions for seeds 0-2 (no detector, no
# pretraining), copies every run's metrics and training log into docs/evidence/lesion_scale_sweep/,
# and writes there summary.md, test kappa and accuracy as mean +- std over the seeds.
#
#   bash scripts/lesion_scale_sweep.sh 1.0 1.4        # two scales, one core each: 15 min on 2 cores
#   bash scripts/lesion_scale_sweep.sh                 # the summary of the files already there
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
CORES=${CORES:-all}
OUT=${OUT:-docs/evidence/lesion_scale_sweep}
VERSIONS=(original lq70 lq100)
mkdir -p "$OUT"

for scale in "$@"; do
    results=results/sweep/ls$scale
    config=$OUT/ls$scale.yaml
    sed -e "s#results/evidence#$results#g" -e "s/lesion_scale: .*/lesion_scale: $scale/" config/evidence.yaml > "$config"
    targets=()
    for version in "${VERSIONS[@]}"; do
        for seed in 0 1 2; do
            targets+=("$results/eyeq/$version/finetune/resnet18/seed$seed/metrics.json")
        done
    done
    "$VENV/bin/snakemake" "${targets[@]}" --cores "$CORES" --configfile "$config"
    for version in "${VERSIONS[@]}"; do
        for seed in 0 1 2; do
            run=$results/eyeq/$version/finetune/resnet18/seed$seed
            cp "$run/metrics.json" "$OUT/ls${scale}_eyeq_${version}_resnet18_seed$seed.json"
            cp "$run/training_log.csv" "$OUT/ls${scale}_eyeq_${version}_resnet18_seed$seed.csv"
        done
    done
done

"$VENV/bin/python" - "$OUT" <<'PY'
import json, re, sys
from collections import defaultdict
from pathlib import Path

import numpy as np

folder = Path(sys.argv[1])
runs = defaultdict(list)
for file in sorted(folder.glob("ls*_eyeq_*_resnet18_seed*.json")):
    scale, version = re.match(r"ls([\d.]+)_eyeq_(\w+?)_resnet18_seed\d+\.json", file.name).groups()
    runs[float(scale), version].append(json.loads(file.read_text())["test"])
versions = ("original", "lq70", "lq100")
lines = [
    "# ResNet-18 alone, by lesion scale (test, mean ± std over seeds)",
    "",
    "Written by `scripts/lesion_scale_sweep.sh` from the runs' metrics in this folder.",
    "",
    "| lesion scale | seeds | " + " | ".join(f"{v} kappa | {v} ACC" for v in versions) + " |",
    "|---|---|" + "---|---|" * len(versions),
]
for scale in sorted({scale for scale, _ in runs}):
    cells = []
    for version in versions:
        tests = runs.get((scale, version), [])
        for key in ("kappa", "accuracy"):
            values = np.array([test[key] for test in tests], float)
            cells.append(f"{values.mean():.3f} ± {values.std(ddof=1):.3f}" if len(values) > 1 else "-")
    seeds = min(len(runs.get((scale, version), [])) for version in versions)
    lines.append(f"| {scale:g} | {seeds} | " + " | ".join(cells) + " |")
(folder / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY

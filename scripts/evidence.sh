#!/usr/bin/env bash
# Runs config/evidence.yaml from an empty results folder and copies the run's own files into
# docs/evidence/: the tables (CSV, Markdown, LaTeX, HTML), the t-SNE, Grad-CAM and fine-tuning figures,
# the pretraining logs and curves (K_t and the selected share of every step), every fine-tuning's metrics and
# training log (per seed: what the tables average, and the validation kappa of every epoch), every linear evaluation's
# metrics, the t-SNE summaries (the levels' silhouettes), the resolved configuration, and
# run.md (the command, the commit, the machine and the wall time). Nothing in them is edited by hand.
#
#   bash scripts/evidence.sh            # all cores
#   CORES=2 bash scripts/evidence.sh    # as measured in docs/evidence
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
CORES=${CORES:-all}
RESULTS=results/evidence
OUT=docs/evidence
command=("$VENV/bin/snakemake" --cores "$CORES" --configfile config/evidence.yaml)

if [[ -e $RESULTS ]]; then
    echo "$RESULTS exists: the evidence is a run from nothing. Move or delete it first (rm -rf $RESULTS)." >&2
    exit 1
fi
commit=$(git rev-parse HEAD)
[[ -z $(git status --porcelain -- src workflow config Snakefile) ]] || commit="$commit (with uncommitted changes)"
start=$(date +%s)
"${command[@]}"
wall=$(( $(date +%s) - start ))

rm -rf "$OUT/tables" "$OUT/figures" "$OUT/pretrain" "$OUT/finetune" "$OUT/linear" "$OUT/tsne"
mkdir -p "$OUT/tables" "$OUT/figures" "$OUT/pretrain" "$OUT/finetune" "$OUT/linear" "$OUT/tsne"
cp "$RESULTS"/tables/* "$OUT/tables/"
cp "$RESULTS"/figures/{tsne,gradcam,finetune,outcomes,pretrain}_*.png "$RESULTS/figures/benchmarks.png" "$OUT/figures/"
for log in "$RESULTS"/*/*/pretrain/*/training_log.csv; do
    IFS=/ read -r _ _ dataset version _ variant _ <<< "$log"
    cp "$log" "$OUT/pretrain/${dataset}_${version}_${variant}.csv"
done
for run in "$RESULTS"/*/*/finetune/*/seed*; do
    IFS=/ read -r _ _ dataset version _ method seed <<< "$run"
    cp "$run/metrics.json" "$OUT/finetune/${dataset}_${version}_${method}_${seed}.json"
    cp "$run/training_log.csv" "$OUT/finetune/${dataset}_${version}_${method}_${seed}.csv"
done
for file in "$RESULTS"/*/*/linear/metrics.json "$RESULTS"/*/*/tsne.json; do
    IFS=/ read -r _ _ dataset version _ <<< "$file"
    case $file in
        */linear/*) cp "$file" "$OUT/linear/${dataset}_${version}.json" ;;
        *) cp "$file" "$OUT/tsne/${dataset}_${version}.json" ;;
    esac
done
cp "$RESULTS/config.yaml" "$OUT/config.yaml"
cat > "$OUT/run.md" <<EOF
# The run that wrote this folder

- command: \`${command[*]}\`, from an empty \`$RESULTS\`
- commit: $commit
- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, GPU: $("$VENV/bin/python" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none')")
- finished: $(date -u '+%Y-%m-%d %H:%M UTC')
- wall time: $(( wall / 60 )) min $(( wall % 60 )) s
EOF
echo "wrote $OUT (wall time $(( wall / 60 )) min)"

#!/usr/bin/env bash
# The token-path measurements of docs/tokens.md, in order (2-core machine: nice, 1 thread).
# Each step can be run alone: bash experiments/tokens/run_all.sh <step>...
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
PY="nice -n 10 .venv/bin/python"
EVAL="$PY experiments/tokens/eval.py"
R=experiments/tokens/results
HEAD_METHODS="text-sim/topk text-sim/recoverable text-sim/prumerge text-sim/visionzip cls-attn/topk cls-attn/prumerge random/topk grid/topk"

step() {
  case "$1" in
    codebooks)  # committed codebooks: semcom/assets/codebooks/<model>-k<bits>-l2.npz
      nice -n 10 .venv/bin/semcom train codebook --model blip --bits 6 8 10 12 --images 1000 --iters 10
      nice -n 10 .venv/bin/semcom train codebook --model llava --bits 6 8 10 12 --images 1000 --iters 10 ;;
    budgets-llava) $EVAL --model llava --images 200 --exp budgets ;;
    budgets-blip)  $EVAL --model blip --images 100 --exp budgets ;;
    headline-llava) $EVAL --model llava --images 1000 --exp budgets --budgets 16 \
                      --methods $HEAD_METHODS --out $R/headline-llava.json ;;
    quant-llava) $EVAL --model llava --images 300 --exp quant --budget 16 --method text-sim/topk ;;
    quant-blip)  $EVAL --model blip --images 100 --exp quant --budget 16 --method text-sim/topk ;;
    mdc-llava)   $EVAL --model llava --images 200 --exp mdc --budget 16 --method text-sim/topk \
                   --quant edge.quant.type=codebook edge.quant.bits=12 ;;
    mdc-llava-500) $EVAL --model llava --images 500 --exp mdc --budget 16 --method text-sim/topk \
                     --quant edge.quant.type=codebook edge.quant.bits=12 --probs 0 0.2 0.5 \
                     --out $R/mdc-llava-500.json ;;
    runner-check)  # the same points through `semcom run` (records in experiments/runs/tokens)
      nice -n 10 .venv/bin/semcom run -c experiments/tokens/configs/vqa-k16.yaml --overwrite -q
      nice -n 10 .venv/bin/semcom run -c experiments/tokens/configs/vqa-k16.yaml --overwrite \
        --set edge.select.scorer=random -q
      nice -n 10 .venv/bin/semcom run -c experiments/tokens/configs/mdc-d4.yaml --overwrite -q
      nice -n 10 .venv/bin/semcom run -c experiments/tokens/configs/mdc-d4.yaml --overwrite \
        --set channel.loss_prob=0 -q ;;
    plot) $PY experiments/tokens/plot.py ;;
    *) echo "unknown step $1" >&2; exit 2 ;;
  esac
}

if [ $# -eq 0 ]; then
  set -- codebooks budgets-llava headline-llava quant-llava mdc-llava mdc-llava-500 budgets-blip \
    quant-blip runner-check plot
fi
for s in "$@"; do echo "== $s ($(date -u +%H:%M:%S))"; step "$s"; done

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
    codebooks)  # committed: semcom/assets/codebooks/<model>-prior.npz and <model>-k<bits>-l2.npz
      nice -n 10 .venv/bin/semcom train codebook --model llava --bits 6 8 10 --train-budget 16 --shipped
      nice -n 10 .venv/bin/semcom train codebook --model blip --bits 8 --stages 6 --train-budget 32 \
        --images 6000 --shipped ;;
    candidates)  # the other quantisers of `quantisers-*`, in experiments/scratch/codebooks
      C=experiments/scratch/codebooks
      T="nice -n 10 .venv/bin/semcom train codebook"
      $T --model llava --bits 8 --residual none --weighting all --out $C/llava/plain-all
      $T --model llava --bits 8 --residual none --out $C/llava/plain-selected
      $T --model llava --bits 8 --residual none --weighting all --method running-mean \
         --importance cls-attn --out $C/llava/running-mean
      $T --model llava --bits 8 --weighting all --out $C/llava/residual-all
      $T --model llava --bits 6 --stages 2 --out $C/llava/residual-2x6
      $T --model blip --bits 8 10 --residual none --weighting all --out $C/blip/plain-all
      $T --model blip --bits 8 --train-budget 32 --out $C/blip/residual-1
      $T --model blip --bits 8 --stages 4 --train-budget 32 --out $C/blip/residual-4 ;;
    heldout-llava)  # world seed 2026, used for nothing else: the held-out token numbers
      $EVAL --model llava --images 500 --world-seed 2026 --exp quantisers --budgets 10 12 24 \
        --method text-sim/topk --out $R/quantisers-llava-2026.json
      $EVAL --model llava --images 500 --world-seed 2026 --exp mdc --budget 12 \
        --method text-sim/topk --quant edge.quant.type=codebook --probs 0 0.2 0.5 --D 1 2 4 \
        --out $R/mdc-llava-2026.json ;;
    where-llava)  # world seed 7777, used for nothing else: "where" with 2,000 questions
      $EVAL --model llava --images 2000 --world-seed 7777 --exp quantisers --budgets 10 12 24 \
        --method text-sim/topk --only float16 "(default)" \
        --out $R/quantisers-llava-7777.json ;;
    heldout-blip)
      $EVAL --model blip --images 500 --world-seed 2026 --exp quantisers --budgets 32 \
        --method text-sim/topk --out $R/quantisers-blip-2026.json ;;
    quantisers-llava) $EVAL --model llava --images 600 --world-seed 101 --exp quantisers \
                        --budgets 12 24 --method text-sim/topk ;;
    quantisers-blip) $EVAL --model blip --images 300 --world-seed 101 --exp quantisers \
                       --budgets 32 --method text-sim/topk ;;
    budgets-llava) $EVAL --model llava --images 200 --exp budgets ;;
    budgets-blip)  $EVAL --model blip --images 100 --exp budgets ;;
    headline-llava) $EVAL --model llava --images 1000 --exp budgets --budgets 16 \
                      --methods $HEAD_METHODS --out $R/headline-llava.json ;;
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
  set -- codebooks candidates budgets-llava headline-llava quantisers-llava heldout-llava where-llava \
    budgets-blip quantisers-blip heldout-blip runner-check plot
fi
for s in "$@"; do echo "== $s ($(date -u +%H:%M:%S))"; step "$s"; done

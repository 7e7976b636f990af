#!/usr/bin/env bash
# Train the six committed projectors (TokenPacker, VisualPrism x s = 2, 3, 4) for the
# embedded tiny LLaVA, all six at once, each on one thread at nice 10 and at most LIMIT
# CPU seconds of training (default 75, what the committed files got; see
# docs/projectors.md). Logs: $LOGS/<type>-s<scale>.log. MODEL_PATH: another LLaVA
# directory than the embedded tiny one.
set -euo pipefail
cd "$(dirname "$0")/../.."
LIMIT=${LIMIT:-75}
IMAGES=${IMAGES:-2000}
LOGS=${LOGS:-/tmp/semcom-projectors/logs}
mkdir -p "$LOGS"
for s in 4 3 2; do
  for t in tokenpacker visualprism; do
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/semcom train projector --type "$t" --scale "$s" \
      --time-limit "$LIMIT" --train-images "$IMAGES" --calib-images 256 \
      ${MODEL_PATH:+--model-path "$MODEL_PATH"} $([ -n "${OUT:-}" ] && echo --out "$OUT" || echo --shipped) \
      > "$LOGS/$t-s$s.log" 2>&1 &
  done
done
wait

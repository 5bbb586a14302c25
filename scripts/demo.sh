#!/usr/bin/env bash
# Runs the whole system locally: a sampler, a trainer on Fashion-MNIST, then a client call that writes
# a grid of generated images. Run again to resume training from the checkpoint in the same store.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
STORE=${STORE:-demo-store}
STEPS=${STEPS:-4000}
SAMPLER_PORT=${SAMPLER_PORT:-50051}
TRAINER_PORT=${TRAINER_PORT:-50052}
OUT=${OUT:-demo-output/grid.png}
mkdir -p "$STORE" "$(dirname "$OUT")"

echo "== starting the sampler on 127.0.0.1:$SAMPLER_PORT (log: $STORE/sampler.log)"
"$PYTHON" -m sampler_service --store "$STORE" --port "$SAMPLER_PORT" >"$STORE/sampler.log" 2>&1 &
sampler_pid=$!
trap 'kill $sampler_pid 2>/dev/null || true; wait $sampler_pid 2>/dev/null || true' EXIT

echo "== training $STEPS steps of the default recipe (watch: $PYTHON -m client watch --target 127.0.0.1:$TRAINER_PORT)"
# --no-evaluate keeps the demo short: scoring first trains the quality judge (minutes on a CPU);
# score afterwards with: $PYTHON -m trainer_service.evaluate --store $STORE
"$PYTHON" -m trainer_service --store "$STORE" --steps "$STEPS" --publish-every $(( (STEPS + 2) / 3 )) \
  --checkpoint-every 100 --port "$TRAINER_PORT" --no-evaluate

echo "== waiting for the sampler to serve the newest version"
for _ in $(seq 60); do
  version=$("$PYTHON" -m client info --target "127.0.0.1:$SAMPLER_PORT" 2>/dev/null \
            | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["model_version"])' 2>/dev/null || true)
  [ "$version" = "$STEPS" ] && break
  sleep 1
done
"$PYTHON" -m client generate --target "127.0.0.1:$SAMPLER_PORT" --count 25 --seed 7 --out "$OUT"
echo "== done: $OUT (the trainer's own grids: $STORE/models/*/samples.png)"

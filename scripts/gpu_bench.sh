#!/usr/bin/env bash
# GPU figures for docs/performance.md: a T5-large-shaped model (random weights) in bf16 on
# one H100/H200, offline, from what travels with the repository (no install needed beyond
# the wheels in .whl/ when fastapi/uvicorn/pydantic are missing). About 4 minutes.
#
#   scripts/gpu_bench.sh OUT_DIR            # the real run (cuda, t5-large shape)
#   scripts/gpu_bench.sh OUT_DIR --small    # the same steps on the CPU with a tiny shape (tests the script)
#
# Writes OUT_DIR/{batching,coldload,engines,serve_load,naive_load}.json and a log.
set -uo pipefail
OUT=${1:?usage: scripts/gpu_bench.sh OUT_DIR [--small]}
mkdir -p "$OUT"
SHAPE=t5-large DEVICE=cuda DTYPE=bfloat16 B=64 KS="1 16 64" SLOTS=64 DURATION=12
RATES="25,50,100" NAIVE_RATES="2,4,8" TOKENS=16 ENGINES=hf,static,continuous,compiled
if [ "${2:-}" = "--small" ]; then
  SHAPE=tiny DEVICE=cpu DTYPE=float32 B=8 KS="1 4" SLOTS=8 DURATION=3 RATES="5,10" NAIVE_RATES="2,4" TOKENS=4
  ENGINES=hf,static,continuous  # (compiling on a CPU takes minutes)
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
IT="python3 -m server.cli"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

step "device"
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"

step "bench batching: B=$B, K=$KS"
$IT bench batching --shape $SHAPE --device $DEVICE --dtype $DTYPE -B $B -K $KS --new-tokens 8 \
  --repeats 3 --skip-naive --json > "$OUT/batching.json" || echo "batching failed"

step "cold adapter loads"
$IT bench coldload --shape $SHAPE --device $DEVICE --dtype $DTYPE --count 40 --json > "$OUT/coldload.json" \
  || echo "coldload failed"

step "base and adapters on disk"
python3 - "$WORK/base" "$SHAPE" <<'PY' || exit 1
import sys, torch
from adapters.testing import build_random_base, save_base
save_base(build_random_base("t5", sys.argv[2], seed=0, dtype=torch.bfloat16), sys.argv[1])
PY
step "bench engines: HF vs static vs continuous vs continuous compiled (CUDA graphs), rows $KS"
# random token ids (the E2E data does not travel to the device); CTranslate2 is not installed there
$IT bench engines --model "$WORK/base" --device $DEVICE --dtype $DTYPE --rows "${KS// /,}" \
  --inputs $((B * 2)) --random-inputs 48 --new-tokens $TOKENS --repeats 3 \
  --engines $ENGINES --json "$OUT/engines.json" || echo "engines failed"

$IT adapters synth --base "$WORK/base" --count $SLOTS --out "$WORK/adapters" > /dev/null || exit 1


# load_sweep NAME PORT RATES SERVER-COMMAND...: start the server, sweep the rates, stop it (SIGTERM).
load_sweep() {
  local name=$1 port=$2 rates=$3
  shift 3
  "$@" --model "$WORK/base" --adapter-dir "$WORK/adapters" --device $DEVICE --dtype $DTYPE --port "$port" &
  local pid=$!
  if wait_ready "$port"; then
    $IT loadtest --url "http://127.0.0.1:$port" --sweep --rates "$rates" --duration $DURATION --adapters $SLOTS \
      --zipf 1.0 --max-new-tokens $TOKENS --min-new-tokens $TOKENS --no-progress --json \
      --plot-dir "$WORK/plots" > "$OUT/${name}_load.json" || echo "$name load test failed"
  fi
  kill -TERM $pid; wait $pid
}

step "load test: inputtune serve (continuous, mixed batching) at $RATES req/s"
load_sweep serve 8100 "$RATES" $IT serve --device-slots $SLOTS --host-slots $SLOTS --max-batch-size 64 \
  --max-queue 4096 --log-level warning

step "load test: naive baseline at $NAIVE_RATES req/s"
load_sweep naive 8101 "$NAIVE_RATES" $IT serve-naive
step "done"

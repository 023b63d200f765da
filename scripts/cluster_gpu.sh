#!/usr/bin/env bash
# Ray Serve figures for docs/cluster.md: N replicas on N GPUs (one engine per GPU) against one process on
# one GPU, with and without adapter affinity, on a T5-large-shaped model (random weights, bf16) and 256
# adapters drawn with Zipf popularity. Needs `pip install 'inputtune[cluster]'` (ray[serve]). About
# 6 minutes with 8 GPUs.
#
#   scripts/cluster_gpu.sh OUT_DIR            # the real run: N = every visible GPU (or REPLICAS=N)
#   scripts/cluster_gpu.sh OUT_DIR --small    # the same steps on the CPU, tiny shape, 2 replicas (tests the script)
#
# Writes OUT_DIR/{single,cluster,cluster_noaffinity}_load.json (inputtune loadtest --sweep --json), their
# plots in OUT_DIR/plots-NAME/, and a log.
set -uo pipefail
OUT=${1:?usage: scripts/cluster_gpu.sh OUT_DIR [--small]}
mkdir -p "$OUT"
SHAPE=t5-large DEVICE=cuda DTYPE=bfloat16 ADAPTERS=256 SLOTS=64 DURATION=15 TOKENS=16 RATE_PER_GPU="25,50,100"
REPLICAS=${REPLICAS:-$(python3 -c "import torch; print(max(1, torch.cuda.device_count()))")}
GPUS=1 CPUS=4
if [ "${2:-}" = "--small" ]; then
  SHAPE=tiny DEVICE=cpu DTYPE=float32 ADAPTERS=20 SLOTS=4 DURATION=3 TOKENS=4 RATE_PER_GPU="4,8" REPLICAS=2
  GPUS=0 CPUS=1
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
IT="python3 -m server.cli"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
scaled() { python3 -c "import sys; print(','.join(str(float(r) * int(sys.argv[2])) for r in sys.argv[1].split(',')))" "$1" "$2"; }

step "devices: $REPLICAS replica(s)"
python3 -c "import torch, ray; print(torch.__version__, 'ray', ray.__version__, [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] or 'cpu')" || exit 1

step "base and $ADAPTERS adapters on disk"
python3 - "$WORK/base" "$SHAPE" <<'PY' || exit 1
import sys, torch
from adapters.testing import build_random_base, save_base
save_base(build_random_base("t5", sys.argv[2], seed=0, dtype=torch.bfloat16), sys.argv[1])
PY
$IT adapters synth --base "$WORK/base" --count $ADAPTERS --out "$WORK/adapters" > /dev/null || exit 1


# load_sweep NAME PORT RATES SERVER-COMMAND...: start the server, sweep the rates, stop it (SIGTERM).
load_sweep() {
  local name=$1 port=$2 rates=$3
  shift 3
  "$@" --model "$WORK/base" --adapter-dir "$WORK/adapters" --device $DEVICE --dtype $DTYPE --port "$port" \
    --device-slots $SLOTS --host-slots $ADAPTERS --max-batch-size 64 --max-queue 4096 --log-level warning &
  local pid=$!
  if wait_ready "$port" 1200; then
    $IT loadtest --url "http://127.0.0.1:$port" --sweep --rates "$rates" --duration $DURATION --adapters all \
      --zipf 1.0 --max-new-tokens $TOKENS --min-new-tokens $TOKENS --no-progress --verify 20 --json \
      --plot-dir "$OUT/plots-$name" \
      > "$OUT/${name}_load.json" || echo "$name load test failed"
  else
    echo "$name never became ready"
  fi
  kill -TERM $pid; wait $pid
}

step "one process on one device at $RATE_PER_GPU req/s"
CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} load_sweep single 8200 "$RATE_PER_GPU" $IT serve

RATES=$(scaled "$RATE_PER_GPU" "$REPLICAS")
step "Ray Serve: $REPLICAS replicas, affinity on, at $RATES req/s"
load_sweep cluster 8201 "$RATES" $IT cluster serve --replicas "$REPLICAS" --num-gpus $GPUS --num-cpus $CPUS

step "Ray Serve: $REPLICAS replicas, affinity off, at $RATES req/s"
load_sweep cluster_noaffinity 8202 "$RATES" $IT cluster serve --replicas "$REPLICAS" --num-gpus $GPUS \
  --num-cpus $CPUS --no-affinity
step "done"

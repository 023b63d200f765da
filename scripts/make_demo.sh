#!/usr/bin/env bash
# Rebuild demo/: the pretrained base and the demo adapters, then their scores and demo/README.md.
# Every step is an `inputtune` command; a step whose output exists is skipped, so the script
# resumes where it stopped. Run from the repository root with the data in ../shared/data
# (or INPUTTUNE_DATA_DIR). On 2 CPU cores: ~20 min for the base, ~1 h of adapters.
#
#   scripts/make_demo.sh            # everything
#   STAGES="adapters compare report" scripts/make_demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
IT=${IT:-inputtune}
STAGES=${STAGES:-"pretrain adapters compare report"}
RUNS=runs/demo
DEMO=demo
PROMPT=16           # prompt length of every demo adapter (input- and prompt-tuning alike)
STEPS=${STEPS:-500}  # optimizer steps per adapter (batch 32): ~10 min each on one core
LANES=${LANES:-2}   # trainings run side by side, one thread each
mkdir -p "$RUNS" "$DEMO/adapters"
has() { [[ " $STAGES " == *" $1 "* ]]; }

if has pretrain && [ ! -f "$DEMO/base/config.json" ]; then
    # `inputtune pretrain` with the cpu preset (~20 min on 2 cores; training/pretrain/presets/cpu.json says
    # why these settings). A base that fails its gate stops the script here: nothing ships.
    [ -f runs/demo_base/config.json ] || $IT pretrain --preset cpu --out runs/demo_base --device cpu --no-progress
    mkdir -p "$DEMO/base"
    for f in runs/demo_base/*.safetensors runs/demo_base/*.json; do
        [ "$(basename "$f")" = pretrain_log.jsonl ] || cp "$f" "$DEMO/base/"
    done
fi

train() {  # name method task extra-args...
    local name=$1 method=$2 task=$3; shift 3
    local out=$RUNS/$name.safetensors
    [ "$method" = fine-tuning ] && out=$RUNS/$name  # a model folder
    [ -e "$out" ] && return 0
    OMP_NUM_THREADS=1 $IT train --model "$DEMO/base" --task "$task" --method "$method" --out "$out" \
        --prompt-length $PROMPT --max-steps "$STEPS" --batch-size 32 --eval-every 250 --eval-samples 200 \
        --patience 3 --device cpu --no-progress "$@" > "$RUNS/$name.log" 2>&1 \
        || { echo "training $name failed: see $RUNS/$name.log" >&2; return 1; }
}

run_lanes() {  # each argument is one quoted `train ...` call; LANES of them at a time
    local running=0
    for job in "$@"; do
        eval "$job" &
        running=$((running + 1))
        if [ "$running" -ge "$LANES" ]; then wait -n; running=$((running - 1)); fi
    done
    wait
}

if has compare; then
    # E2E: the three methods, same prompt length and step budget, a small learning-rate sweep each.
    run_lanes \
        "train e2e-it-p0.3-a1e-3 input-tuning e2e --lr-prompt 0.3 --lr-adapter 1e-3" \
        "train e2e-it-p0.03-a3e-3 input-tuning e2e --lr-prompt 0.03 --lr-adapter 3e-3" \
        "train e2e-pt-p0.3 prompt-tuning e2e --lr-prompt 0.3" \
        "train e2e-pt-p0.03 prompt-tuning e2e --lr-prompt 0.03" \
        "train e2e-ft-5e-4 fine-tuning e2e --lr 5e-4"
fi

if has adapters; then
    run_lanes \
        "train dart input-tuning dart" \
        "train overnight input-tuning overnight" \
        "train fr-en input-tuning fr-en" \
        "train de-en input-tuning de-en" \
        "train e2e-long input-tuning e2e --lr-prompt 0.03 --lr-adapter 3e-3 --max-steps 1500 --eval-every 500"
fi

if has report; then
    # e2e-long (the sweep's best input-tuning settings, trained 3x longer) ships as e2e, the best
    # prompt-tuning run as e2e-prompt; every shipped adapter is scored on its test split.
    python3 scripts/demo_report.py --runs "$RUNS" --demo "$DEMO"
fi

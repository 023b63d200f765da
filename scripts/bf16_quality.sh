#!/usr/bin/env bash
# bf16 against fp32 on the embedded demo's dev sets: BLEU/chrF of each adapter in both precisions and
# the share of outputs that are the same text. Writes docs/perf/bf16_quality.json (read by
# docs/performance.md's decode-speed section). About 40 minutes on 2 cores.
#
#   scripts/bf16_quality.sh [DATA_DIR] [LIMIT]
set -euo pipefail
DATA=${1:-../shared/data} LIMIT=${2:-200}
IT=${IT:-inputtune}
WORK=runs/bf16
mkdir -p "$WORK"
for a in e2e dart fr-en de-en overnight e2e-prompt; do
  task=$a; [ "$a" = e2e-prompt ] && task=e2e
  for d in float32 bfloat16; do
    echo "== $a $d"
    $IT eval --model demo/base --adapter "demo/adapters/$a.safetensors" --task $task --split dev --data-dir "$DATA" \
      --limit "$LIMIT" --batch-size 32 --dtype $d --device cpu --out "$WORK/$a.$d.json" --outputs "$WORK/$a.$d.txt"
  done
done
python3 - "$WORK" "$LIMIT" <<'PY'
import json, sys
from pathlib import Path
work, rows = Path(sys.argv[1]), []
for a in ["e2e", "dart", "fr-en", "de-en", "overnight", "e2e-prompt"]:
    s = {d: json.loads((work / f"{a}.{d}.json").read_text())["scores"] for d in ("float32", "bfloat16")}
    f, b = ((work / f"{a}.{d}.txt").read_text().splitlines() for d in ("float32", "bfloat16"))
    rows.append({"adapter": a, "items": len(f), "same_text": round(sum(x == y for x, y in zip(f, b)) / len(f), 4),
                 "bleu": {d: round(v["bleu"], 2) for d, v in s.items()}, "chrf": {d: round(v["chrf"], 2) for d, v in s.items()}})
out = Path("docs/perf/bf16_quality.json")
out.write_text(json.dumps({"split": "dev", "limit": int(sys.argv[2]), "adapters": rows}, indent=1))
print(out.read_text())
PY

#!/usr/bin/env bash
# A non-editable install into a fresh virtual environment works on its own: the CLI, the training
# commands' help, and `inputtune serve` on the embedded demo (installed with the package), answered
# over HTTP and stopped with SIGTERM. Used by .ci/run; run it from the repository root.
#   scripts/check_install.sh [VENV_DIR]      (default: a temporary folder, removed afterwards)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-$(mktemp -d)/venv}
work=$(mktemp -d)
trap 'rm -rf "$work"; [ -n "${server:-}" ] && kill "$server" 2>/dev/null || true' EXIT

python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q torch==2.13.0 .
cd "$work"  # away from the checkout: only the installed package can be imported
"$venv/bin/python" - <<'PY'
import server, inputtune_demo
from pathlib import Path
assert "site-packages" in server.__file__, f"server imported from {server.__file__}, not the install"
demo = Path(next(iter(inputtune_demo.__path__)))
assert (demo / "base" / "config.json").is_file() and any((demo / "adapters").glob("*.safetensors")), demo
print(f"installed: {Path(server.__file__).parent.parent}, demo {demo}")
PY
"$venv/bin/inputtune" --help >/dev/null
"$venv/bin/inputtune" pretrain --help >/dev/null
"$venv/bin/inputtune" train --help >/dev/null
"$venv/bin/inputtune" eval --help >/dev/null
port=$("$venv/bin/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
INPUTTUNE_CACHE="$work/cache" "$venv/bin/inputtune" serve --port "$port" --log-level warning >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "$work/serve.log"; echo "check_install: the server exited" >&2; exit 1; }
    sleep 0.2
done
answer=$(curl -sf -X POST "http://127.0.0.1:$port/generate?adapter=fr-en" -H 'content-type: application/json' \
    -d '{"inputs": "Un homme fait du vélo dans la rue.", "parameters": {"max_new_tokens": 8}}')
echo "fr-en: $answer"
"$venv/bin/python" -c "import json, sys; body = json.loads(sys.argv[1]); assert body['generated_text'].strip(), body" "$answer"
kill -TERM "$server"
wait "$server"
server=
echo "check_install: non-editable install serves the demo"

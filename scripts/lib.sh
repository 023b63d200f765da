# Shared by the benchmark scripts (source it): a timestamped step line, and waiting for a server.

step() { echo "== $(date +%T) $*"; }

# wait_ready PORT [TRIES]: until http://127.0.0.1:PORT/ready answers 200, polling every 0.5 s
# (default 600 tries: 5 minutes); returns 1 if it never does.
wait_ready() {
  for _ in $(seq "${2:-600}"); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$1/ready')" 2>/dev/null && return 0
    sleep 0.5
  done
  return 1
}

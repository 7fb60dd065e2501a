#!/usr/bin/env bash
# The demo: the agent against the bundled COM simulator, on loopback, in a
# temp directory. Shows the agent connecting, `comagent status`, COM's view of
# the agent and a job round trip, then stops both and exits 0.
#
#   scripts/demo.sh PATH/TO/comagent
set -euo pipefail

bin=$(realpath "${1:-build/host/comagent}")
top=$(cd "$(dirname "$0")/.." && pwd)
py=/usr/bin/python3
comsim="$top/tests/comsim/comsim.py"
tmp=$(mktemp -d /tmp/comagent-demo.XXXXXX)
sim_pid="" agent_pid=""

cleanup() {
  [[ -n "$agent_pid" ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
  [[ -n "$sim_pid" ]] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Polls a condition with a deadline; a demo must never hang.
wait_for() {
  local what=$1 secs=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS >= end )); then
      echo "demo: timed out waiting for $what" >&2
      [[ -f "$tmp/agent.log" ]] && tail -20 "$tmp/agent.log" >&2
      exit 1
    fi
    sleep 0.1
  done
}

step "Starting the COM simulator (test CA, WSS on an ephemeral loopback port)"
mkdir -p "$tmp/com" "$tmp/root"
"$py" "$comsim" serve --dir "$tmp/com" --port 0 2>"$tmp/comsim.log" &
sim_pid=$!
wait_for "comsim to listen" 20 test -s "$tmp/com/comsim.json"
port=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$tmp/com/comsim.json")
echo "COM simulator on wss://localhost:$port/agent/v1"

step "Writing the agent's configuration (profile linux, root $tmp/root)"
ini="$tmp/comagent.ini"
install -m 0600 /dev/null "$ini"
cat > "$ini" <<INI
[com]
url = wss://localhost:$port/agent/v1
ca_file = $tmp/com/ca.pem
ping_interval = 10s
idle_timeout = 30s
retry_min = 200ms
retry_max = 5s

[system]
profile = linux
customer_id = C1001
system_name = pbx-hq
version = 11.1.3.0
root = $tmp/root

[service_user]
name = COMAdmin
password = pw

[log]
level = info
INI
"$bin" check-config -c "$ini"

step "Starting comagent"
"$bin" run -c "$ini" 2>"$tmp/agent.log" &
agent_pid=$!
connected() { "$bin" status -c "$ini" --json 2>/dev/null | grep -q '"code":"connected"'; }
wait_for "the agent to connect" 20 connected
sed 's/^/  agent log | /' "$tmp/agent.log"

step "comagent status"
"$bin" status -c "$ini"

step "COM's view of the agent"
"$py" "$comsim" ctl --dir "$tmp/com" agents

step "COM sends a backup job (this agent version answers: rejected, unsupported)"
"$py" "$comsim" ctl --dir "$tmp/com" job C1001 pbx-hq backup
answered() { "$py" "$comsim" ctl --dir "$tmp/com" events | grep -q '"job.state"'; }
wait_for "the job answer" 10 answered
"$py" "$comsim" ctl --dir "$tmp/com" events | "$py" -c '
import json, sys
for e in json.load(sys.stdin):
    m = e.get("msg") or {}
    if e["kind"] == "message" and m.get("type") == "job.state":
        print("  agent answered:", json.dumps(m))'

step "Stopping the agent (SIGTERM) and the simulator"
kill -TERM "$agent_pid"
rc=0; wait "$agent_pid" || rc=$?
agent_pid=""
echo "comagent exited with status $rc"
tail -3 "$tmp/agent.log" | sed 's/^/  agent log | /'
[[ $rc -eq 0 ]] || exit 1
step "Demo finished"

#!/usr/bin/env bash
# The demo: the agent against the bundled COM simulator, on loopback, in a
# temp directory. Shows the agent connecting, `comagent status`, COM's view of
# the agent, a backup job (the platform hook archives the configuration, the
# agent uploads it, COM stores it) and a remote-support tunnel (curl through
# COM's proxy to an HTTPS service on this "PBX"), the PBX's syslog reaching
# COM through "fetch new logs", COM's custom files (CustomData.xml applied at
# the first connect, a three-folder refresh started by a technician on the
# box, the manifest of what was installed), an alarm the PBX raises reaching
# COM's alarm and customer lists, then stops everything, exits 0.
#
#   scripts/demo.sh PATH/TO/comagent
set -euo pipefail

bin=$(realpath "${1:-build/host/comagent}")
top=$(cd "$(dirname "$0")/.." && pwd)
py=/usr/bin/python3
comsim="$top/tests/comsim/comsim.py"
tmp=$(mktemp -d /tmp/comagent-demo.XXXXXX)
sim_pid="" agent_pid="" web_pid="" curl_pid=""
kit="$top/tests/integration/tunnelkit.py"

cleanup() {
  for p in "$curl_pid" "$web_pid"; do
    [[ -n "$p" ]] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
  done
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
# The customer record names a reseller: custom files come from three folders.
printf '%s\n' '[{"customer":"C1001","system":"pbx-hq","user":"COMAdmin","password":"pw","state":"ok","reseller":"R-demo"}]' > "$tmp/customers.json"
"$py" "$comsim" serve --dir "$tmp/com" --port 0 --customers "$tmp/customers.json" 2>"$tmp/comsim.log" &
sim_pid=$!
wait_for "comsim to listen" 20 test -s "$tmp/com/comsim.json"
jget() { "$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }
port=$(jget "$tmp/com/comsim.json" port)
proxy_port=$(jget "$tmp/com/comsim.json" proxy_port)
echo "COM simulator on wss://localhost:$port/agent/v1, remote-support proxy on localhost:$proxy_port"

step "Starting an HTTPS service on this \"PBX\" (stands in for the web control panel)"
"$py" "$kit" https --dir "$tmp/web" --name C1001.maint.com.example.test > "$tmp/web.json" 2>"$tmp/web.log" &
web_pid=$!
wait_for "the HTTPS service" 10 test -s "$tmp/web.json"
web_port=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$tmp/web.json")
echo "HTTPS service on 127.0.0.1:$web_port"

# A free port for the syslog receiver (TCP and UDP).
syslog_port=$("$py" -c '
import socket
for _ in range(50):
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p))
    except OSError:
        continue
    print(p)
    break')

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

[services]
# COM's port 443 (HTTPS) is this service's port here.
https = $web_port

[service_user]
name = COMAdmin
password = pw

[log]
level = info

[jobs]
# The platform hooks of this checkout (installed: /usr/libexec/comagent).
hooks_dir = $top/scripts
auto_backup = off

[logs]
# Where this "PBX" sends its syslog.
syslog = 127.0.0.1:$syslog_port
INI
"$bin" check-config -c "$ini"
# Some configuration for the backup to hold, and the system's version.
mkdir -p "$tmp/root/etc/ipoffice" "$tmp/root/var/lib/ipoffice"
echo "11.1.3.0" > "$tmp/root/etc/ipoffice-version"
printf '<config system="pbx-hq"/>\n' > "$tmp/root/etc/ipoffice/config.xml"
head -c 200000 /dev/urandom > "$tmp/root/var/lib/ipoffice/users.db"

step "COM's custom files: CustomData.xml and phone-file / template tars (provider, reseller, system folders)"
cf() { "$py" "$comsim" ctl --dir "$tmp/com" custom_file "$1" >/dev/null; }
cf '{"level":"provider","name":"CustomData.xml","content_b64":"'"$(printf '%s' \
  '<customdata version="1"><security><centralmgmt>0</centralmgmt><logtransfer>1</logtransfer><remoteupgrade>0</remoteupgrade></security><vmpro><backupconfig>1</backupconfig></vmpro></customdata>' | base64 -w0)"'"}'
cf '{"level":"provider","name":"CustomPhoneFiles.tar","files":{"46xxspecials.txt":"SET SCREENSAVERON 240\n","provider-logo.png":"PNG(provider)"}}'
cf '{"level":"provider","name":"CustomTemplates.tar","files":{"SIP-provider.xml":"<template/>"}}'
cf '{"level":"reseller","reseller":"R-demo","name":"CustomTemplates.tar","files":{"SIP-reseller.xml":"<template/>"}}'
cf '{"level":"system","customer":"C1001","system":"pbx-hq","name":"CustomPhoneFiles.tar","files":{"provider-logo.png":"PNG(this system overrides it)"}}'
echo "provider: CustomData.xml, CustomPhoneFiles.tar, CustomTemplates.tar; reseller R-demo: CustomTemplates.tar;"
echo "system pbx-hq: CustomPhoneFiles.tar"

step "Starting comagent"
"$bin" run -c "$ini" 2>"$tmp/agent.log" &
agent_pid=$!
connected() { "$bin" status -c "$ini" --json 2>/dev/null | grep -q '"code":"connected"'; }
wait_for "the agent to connect" 20 connected
sed 's/^/  agent log | /' "$tmp/agent.log"

step "First connect: CustomData.xml applied once, then a first refresh of the custom files"
custom_done() { "$bin" status -c "$ini" --json 2>/dev/null | grep -q '"refresh":"succeeded"'; }
wait_for "the first custom-files refresh" 20 custom_done
"$bin" status -c "$ini" | grep -E '^(Settings on|CustomData|Custom files):'
"$bin" custom-files -c "$ini"

step "comagent status"
"$bin" status -c "$ini"

step "COM's view of the agent"
"$py" "$comsim" ctl --dir "$tmp/com" agents

step "COM sends a backup job; remote operations are off, so it is rejected"
"$py" "$comsim" ctl --dir "$tmp/com" job C1001 pbx-hq backup J-demo-1 >/dev/null
# The job's states as the agent sent them to COM; exit 0 once one is final.
job_states() {
  "$py" "$comsim" ctl --dir "$tmp/com" events | "$py" -c '
import json, sys
done = False
for e in json.load(sys.stdin):
    m = e.get("msg") or {}
    if e["kind"] == "message" and m.get("type") == "job.state" and m.get("job") == sys.argv[1]:
        if sys.argv[2] == "show":
            print("  agent:", json.dumps({k: m[k] for k in m if k not in ("type", "id", "re")}))
        done = done or m["state"] in ("succeeded", "failed", "rejected")
sys.exit(0 if done else 1)' "$1" "$2"
}
show_job() { job_states "$1" show || true; }
final() { job_states "$1" quiet; }
wait_for "the job answer" 10 final J-demo-1
show_job J-demo-1

step "Turn on remoteupgrade and send the backup job again"
"$bin" settings -c "$ini" set remoteupgrade=1
"$py" "$comsim" ctl --dir "$tmp/com" job C1001 pbx-hq backup J-demo-2 >/dev/null
wait_for "the backup" 30 final J-demo-2
show_job J-demo-2
echo "COM stores:"
"$py" "$comsim" ctl --dir "$tmp/com" backups C1001 pbx-hq
"$bin" jobs -c "$ini"

step "The PBX raises an alarm: COM's alarm list and customer list show it"
echo "\$ comagent alarm raise --type Trunk --severity major --id trunk-3 SIP trunk 3 out of service"
"$bin" alarm -c "$ini" raise --type Trunk --severity major --id trunk-3 SIP trunk 3 out of service
alarm_at_com() { "$py" "$comsim" ctl --dir "$tmp/com" alarms C1001 pbx-hq | grep -q '"trunk-3"'; }
wait_for "the alarm at COM" 10 alarm_at_com
echo "COM's alarm list:"
"$py" "$comsim" ctl --dir "$tmp/com" alarms C1001 pbx-hq
amber() { "$py" "$comsim" ctl --dir "$tmp/com" customer_list | grep -q '"amber"'; }
wait_for "the customer list to show it" 10 amber
echo "COM's customer list (amber: a major alarm is active):"
"$py" "$comsim" ctl --dir "$tmp/com" customer_list
echo "COM cannot clear it while it is active:"
"$py" "$comsim" ctl --dir "$tmp/com" alarm_clear C1001 pbx-hq trunk-3 || true
"$bin" alarm -c "$ini" clear --id trunk-3

step "Remote support: turn on remoteaccess, then fetch a page through COM's proxy"
"$bin" settings -c "$ini" set remoteaccess=1
proxy_args=(--silent --show-error --proxy "https://localhost:$proxy_port"
            --proxy-user reseller1:proxypw --proxy-cacert "$tmp/com/ca.pem"
            --cacert "$tmp/web/srvca.pem")
echo "\$ curl --proxy https://localhost:$proxy_port ... https://C1001.maint.com.example.test/page"
curl "${proxy_args[@]}" https://C1001.maint.com.example.test/page
echo "A slow download keeps a tunnel open while we look at the agent:"
curl "${proxy_args[@]}" --limit-rate 2M -o "$tmp/big" https://C1001.maint.com.example.test/big &
curl_pid=$!
tunnel_open() { "$bin" status -c "$ini" --json 2>/dev/null | grep -q '"target"'; }
wait_for "the tunnel to show in status" 10 tunnel_open
"$bin" status -c "$ini" | sed -n '/^Settings/,$p'
wait "$curl_pid"; curl_pid=""
echo "downloaded $(stat -c %s "$tmp/big") bytes through the tunnel"
grep -E 'stream: tunnel' "$tmp/agent.log" | sed 's/^/  agent log | /'
step "A target the settings do not allow is refused, with the reason"
curl "${proxy_args[@]}" https://C1001.maint.com.example.test:8443/ 2>&1 | sed 's/^/  /' || true
refused() { grep -q 'stream: tunnel .* refused' "$tmp/agent.log"; }
wait_for "the refusal in the agent log" 5 refused
grep 'stream: tunnel .* refused' "$tmp/agent.log" | sed 's/^/  agent log | /'

step "The PBX's syslog: a few lines over UDP and TCP, then COM's \"fetch new logs\""
"$bin" settings -c "$ini" set logtransfer=1
printf '<13>Dec  1 10:00:01 pbx-hq ipoffice: call 42 connected' > "/dev/udp/127.0.0.1/$syslog_port"
printf '<34>1 2026-12-01T10:00:02Z pbx-hq ipoffice 1234 ID47 - trunk 3 up' > "/dev/udp/127.0.0.1/$syslog_port"
printf '<14>tcp line: extension 201 registered\n' > "/dev/tcp/127.0.0.1/$syslog_port"
stored() { "$bin" status -c "$ini" --json | "$py" -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["logs"]["stored"] >= 3 else 1)'; }
wait_for "the syslog lines to be stored" 10 stored
"$bin" status -c "$ini" | grep -E '^(Syslog|Log store):' | sed 's/^/  /'
"$py" "$comsim" ctl --dir "$tmp/com" job C1001 pbx-hq fetch_logs J-demo-logs >/dev/null
wait_for "the log upload" 30 final J-demo-logs
show_job J-demo-logs
echo "COM stores:"
"$py" -c '
import gzip, http.client, json, sys, urllib.parse
sys.path.insert(0, sys.argv[1])
import comsim
port = comsim.read_info(sys.argv[2])["admin_port"]
st, logs = comsim.admin_call(port, "GET", "/logs?customer=C1001&system=pbx-hq")
for m in logs:
    print("  %s  %d bytes, sha256 %s..." % (m["name"], m["size"], m["sha256"][:16]))
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/logs/file?" + urllib.parse.urlencode(
        {"customer": "C1001", "system": "pbx-hq", "name": m["name"]}))
    for line in gzip.decompress(c.getresponse().read()).decode().splitlines():
        print("    | " + line)
' "$top/tests/comsim" "$tmp/com"
"$bin" logs -c "$ini" --system | sed 's/^/  agent: /'

step "A technician refreshes the custom files on the box (COM's admin changed the system folder)"
cf '{"level":"system","customer":"C1001","system":"pbx-hq","name":"CustomPhoneFiles.tar","files":{"provider-logo.png":"PNG(new)","46xxspecials.txt":"SET SCREENSAVERON 120\n"}}'
"$bin" refresh-custom-files -c "$ini"
"$bin" custom-files -c "$ini"

step "Stopping the agent (SIGTERM) and the simulator"
kill -TERM "$agent_pid"
rc=0; wait "$agent_pid" || rc=$?
agent_pid=""
echo "comagent exited with status $rc"
tail -3 "$tmp/agent.log" | sed 's/^/  agent log | /'
[[ $rc -eq 0 ]] || exit 1
step "Demo finished"

#!/usr/bin/python3
"""comsim -- a stand-in for COM's cloud side of agent/PROTOCOL.md (version 1).

    comsim.py serve --dir DIR [--host 127.0.0.1] [--port 0] [--admin-port 0]
                    [--proxy-port 0] [--com-domain com.example.test]
                    [--customers FILE] [--cert-name localhost]
                    [--today YYYY-MM-DD] [--upload-max BYTES]
                    [--log-retention-days N]
    comsim.py ctl --dir DIR agents | events [SINCE] | drop C S | stall C S |
                  unstall C S | job C S OP | send C S JSON | restart [MS] |
                  tunnels | proxy_account JSON | backups C S | uploads C S |
                  customer_list | alarms C S | alarm_clear C S ID |
                  today [DATE|real] | upload_fault JSON | jobs C S |
                  library [JSON] | signing_keys [new] | download_fault JSON |
                  logs C S [FROM [TO]] | log_retention [DAYS] |
                  custom_files C S | custom_file JSON | custom_list_fault JSON

Agent uploads (PROTOCOL.md 3.3) are stored under DIR/backups/<customer>/
<system>/ and COM's backup retention (retention.py) is applied to them;
uploads with "content":"log" under DIR/logs/<customer>/<system>/, kept for
--log-retention-days days.
Downloads (3.4) serve those backups to restore jobs and the software library
(library.py: DIR/library/, signing keys in DIR/pki/) to transfer jobs.
Jobs may be scheduled (POST /job "at"), paused, resumed, stopped; GET /jobs
is their history.
COM's custom files (3.5, guide ch. 18) live under DIR/custom/: provider/,
resellers/<R>/ and customers/<C>/<S>/, the folders of the levels provider,
reseller (the customer record's "reseller") and system, each with
CustomPhoneFiles.tar, CustomTemplates.tar, CustomData.xml (10 MiB each).
Admin: POST /custom_files {level, reseller | customer + system, name,
content_b64 | files {member: text}}, POST /custom_files/delete {level, ...,
name}, GET /custom_files?customer=&system= (the levels that apply, their
files).  An agent's custom.list is answered custom.files (per level
phones/templates {size, sha256}, levels without a tar left out; customdata
{level, size, sha256}: the system's, else the reseller's, else the
provider's); POST /custom_list_fault {customer, system, mode: error |
silent | none, count?} answers it with error "unavailable" or not at all,
until mode none or for the next `count` lists.  Downloads with
"content":"custom" and "level" serve those files, job "" or a
refresh_custom job; POST /job {"op":"refresh_custom","prune":true} issues
a refresh.  Events custom_list (n: how many lists so far) and
custom_download (level, name, offset, job).
The last status message of each agent (customdata, custom_refresh, ...) is
in GET /agents as "status".  GET /customer_list is COM's customer list: per
system red / amber / green, COM's message (Connection successful, the
wording of the first reason the agent reports, Not reachable or offline for
the last N, a refusal's wording, Waiting for initial connection) and the
status fields (servers, alarms by severity, last operation, reasons).
Alarms (2.7): GET /alarms?customer=&system= is COM's list by type then
severity, active and cleared; POST /alarm_clear {customer, system, alarm}
asks the connected agent (alarm.clear) and removes the entry unless the
alarm is still active (409).

Python 3 asyncio + websockets 10.4 (legacy API); stdlib otherwise.  The test
PKI is made with the `openssl` command.  See README.md in this folder.
"""

import argparse
import asyncio
import asyncio.sslproto
import base64
import binascii
import collections
import datetime
import hashlib
import hmac
import http
import http.client
import io
import ipaddress
import json
import logging
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse

import websockets
import websockets.exceptions
import websockets.legacy.server
from websockets.legacy.server import WebSocketServerProtocol

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import retention  # noqa: E402  (COM's backup retention rule, next to this file)
import library  # noqa: E402  (COM's software library and signing keys)

SUBPROTOCOL = "com-agent.v1"
PATH = "/agent/v1"
MAX_TEXT = 65536                 # PROTOCOL.md: text frame limit
MAX_BINARY = 4 + 32768           # PROTOCOL.md: binary frame limit
WS_MAX_SIZE = 1 << 20            # what websockets itself accepts; we check
MAX_STREAMS = 64
WINDOW = 65536
ID_MAX = 2**53 - 1
CREDIT_MAX = 2**31 - 1           # PROTOCOL.md section 3: allowance limit

# The remote-support proxy (PROTOCOL.md sections 3, 3.1).
FRAME_DATA = 16384               # payload bytes per data frame comsim sends
CREDIT_BATCH = 16384             # grant credit back in steps of at least this
CLIENT_READ_HIGH = 256 * 1024    # pause reading a proxy client above this...
CLIENT_READ_LOW = 64 * 1024      # ...and resume below this
PROXY_HEAD_MAX = 8192            # request header block limit
PROXY_REALM = "COM remote support"
PAC_PATH = "/com/remoteproxy/proxy.pac"
CAPTURE_MAX = 1 << 20            # admin streams keep this much agent data
# custom files (guide ch. 18, PROTOCOL.md 3.5): levels, file names, size
# cap per file; the keys of a custom.files answer for the two tars
CUSTOM_LEVELS = ("provider", "reseller", "system")
CUSTOM_NAMES = ("CustomPhoneFiles.tar", "CustomTemplates.tar", "CustomData.xml")
CUSTOM_TARS = (("phones", "CustomPhoneFiles.tar"), ("templates", "CustomTemplates.tar"))
CUSTOM_DATA = "CustomData.xml"
CUSTOM_MAX = 10 << 20
CUSTOM_LIST_FAULTS = ("error", "silent", "none")   # POST /custom_list_fault mode

DEFAULT_PROXY_ACCOUNTS = [{"user": "reseller1", "password": "proxypw"}]

# Uploads (PROTOCOL.md section 3.3).
UPLOAD_MAX = 2 << 30             # default cap on an upload's size (2 GiB)
UPLOAD_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
PART_NAME_RE = re.compile(r"[0-9a-f]{64}\.part(?:\.json)?")   # comsim's own files
SIDECAR = ".meta.json"           # <name>.meta.json next to each stored backup
HASH_CHUNK = 1 << 20
CONTENTS = ("backup", "log")      # an upload's `content` (PROTOCOL.md 3.3)
LOG_RETENTION_DAYS = 30          # COM's default log retention
LOG_NAME_RE = re.compile(r"log-(.+)-([0-9]{8})-([0-9]{3})\.log\.gz")
JOBS_KEPT = 1000                 # job ids remembered per system
JOB_STATES_KEPT = 500            # job.state messages kept per job (history)

# Downloads (PROTOCOL.md section 3.4).
MANIFEST_OPS = ("transfer", "transfer_upgrade", "upgrade")
# COM's words for a job's status (REQUIREMENTS ch. 8), by the agent's state.
JOB_STATUS = {"accepted": "in progress", "running": "in progress",
              "succeeded": "completed", "failed": "failed", "rejected": "rejected"}

# PROTOCOL.md section 2.3: reason -> COM wording.
REASONS = {
    "auth_failed": "Authorization failed",
    "credentials_invalid": "Credentials invalid",
    "insufficient_permissions": "Insufficient permissions",
    "legacy": "Legacy",
    "max_sessions": "Maximum concurrent sessions exceeded",
    "password_change_required": "Service user needs a new password",
    "no_authorisation": "No authorisation supplied, features limited",
    "no_rights": "No user rights enabled for this system",
    "remote_ops_not_allowed": "Remote operations not allowed",
    "monitor_read_disabled": "Service-monitor read not enabled",
    "disabled_by_admin": "Service user disabled by administrator",
    "user_locked": "Service user temporarily locked",
    "user_disabled": "Service user disabled",
    "password_expired": "Service user password expired",
    "not_primary": "Not reachable / not a valid primary IP Office",
    "upgrade_rights": "Upgrade rights not enabled",
    "protocol": "Connection failed",
}

# Customer-record `state` -> refusal reason.
STATES = {
    "disabled": "user_disabled",
    "locked": "user_locked",
    "expired": "password_expired",
    "insufficient": "insufficient_permissions",
    "new_password": "password_change_required",
}

FINAL_JOB_STATES = ("succeeded", "failed", "rejected")

DEFAULT_CUSTOMERS = [{"customer": "C1001", "system": "pbx-hq",
                      "user": "COMAdmin", "password": "pw", "state": "ok"}]


def state_reason(state):
    """The refusal reason for a customer-record state, None for ok."""
    if state in (None, "", "ok"):
        return None
    return STATES.get(state, state)


def wording(reason):
    return REASONS.get(reason, "Connection failed")


def _ago(secs):
    """COM's "for the last N s|min|h"."""
    secs = int(secs)
    if secs < 120:
        return "%d s" % secs
    if secs < 7200:
        return "%d min" % (secs // 60)
    return "%d h" % (secs // 3600)


# Alarms (PROTOCOL.md 2.7): COM's types in its list order, the severities
# most severe first, the agent's id rule and cap.
ALARM_TYPES = ("Configuration", "Trunk", "Link", "Service", "QoS", "Security")
ALARM_SEVERITIES = ("critical", "major", "minor", "warning")
ALARM_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
ALARM_MAX = 64


# ---------------------------------------------------------------- test PKI

def _openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (args[0], r.stderr.strip()))


def _write_cnf(path, text):
    with open(path, "w") as f:
        f.write(text)


def _ec_key(path):
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-out", path)
    os.chmod(path, 0o600)


def make_ca(directory, stem="ca", cn="comsim test CA"):
    """Create <stem>.pem/<stem>.key (EC P-256, CA:TRUE) in directory,
    replacing what is there.  Returns (pem, key)."""
    os.makedirs(directory, exist_ok=True)
    pem = os.path.join(directory, stem + ".pem")
    key = os.path.join(directory, stem + ".key")
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        cnf = os.path.join(tmp, "ca.cnf")
        _write_cnf(cnf, (
            "[req]\ndistinguished_name = dn\nprompt = no\n"
            "[dn]\nCN = %s %s\n"
            "[v3_ca]\nbasicConstraints = critical,CA:TRUE\n"
            "keyUsage = critical,keyCertSign,cRLSign\n"
            "subjectKeyIdentifier = hash\n"
            "authorityKeyIdentifier = keyid:always\n") % (cn, secrets.token_hex(4)))
        tkey = os.path.join(tmp, "k")
        tpem = os.path.join(tmp, "c")
        _ec_key(tkey)
        _openssl("req", "-x509", "-new", "-config", cnf, "-extensions", "v3_ca",
                 "-key", tkey, "-sha256", "-days", "3650", "-out", tpem)
        os.replace(tkey, key)
        os.replace(tpem, pem)
    return pem, key


def make_server_cert(directory, ca_pem, ca_key, name):
    """Create server-<name>.pem/.key signed by the CA, SAN DNS:<name>."""
    pem = os.path.join(directory, "server-%s.pem" % name)
    key = os.path.join(directory, "server-%s.key" % name)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        cnf = os.path.join(tmp, "srv.cnf")
        _write_cnf(cnf, (
            "[req]\ndistinguished_name = dn\nprompt = no\n"
            "[dn]\nCN = %s\n"
            "[v3_srv]\nbasicConstraints = critical,CA:FALSE\n"
            "keyUsage = critical,digitalSignature\n"
            "extendedKeyUsage = serverAuth\n"
            "subjectAltName = DNS:%s\n"
            "subjectKeyIdentifier = hash\n"
            "authorityKeyIdentifier = keyid\n") % (name, name))
        tkey = os.path.join(tmp, "k")
        csr = os.path.join(tmp, "r")
        tpem = os.path.join(tmp, "c")
        _ec_key(tkey)
        _openssl("req", "-new", "-config", cnf, "-key", tkey, "-out", csr)
        _openssl("x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key,
                 "-set_serial", "0x" + secrets.token_hex(12), "-days", "825",
                 "-sha256", "-extfile", cnf, "-extensions", "v3_srv",
                 "-out", tpem)
        os.replace(tkey, key)
        os.replace(tpem, pem)
    return pem, key


def ensure_pki(directory, name="localhost"):
    """Reuse or create ca.pem/ca.key and server-<name>.pem/.key."""
    os.makedirs(directory, exist_ok=True)
    ca_pem = os.path.join(directory, "ca.pem")
    ca_key = os.path.join(directory, "ca.key")
    new_ca = not (os.path.exists(ca_pem) and os.path.exists(ca_key))
    if new_ca:
        make_ca(directory)
    pem = os.path.join(directory, "server-%s.pem" % name)
    key = os.path.join(directory, "server-%s.key" % name)
    if new_ca or not (os.path.exists(pem) and os.path.exists(key)):
        make_server_cert(directory, ca_pem, ca_key, name)
    return os.path.abspath(ca_pem), os.path.abspath(pem), os.path.abspath(key)


# ---------------------------------------------------------------- messages

class Malformed(Exception):
    def __init__(self, text, msg_id=None):
        super().__init__(text)
        self.msg_id = msg_id


def _reject_constant(name):
    raise ValueError("%s is not JSON" % name)


def _check_limits(v, depth=1):
    if isinstance(v, str):
        if len(v.encode("utf-8", "surrogatepass")) > 4096:
            raise ValueError("string longer than 4096 bytes")
    elif isinstance(v, dict):
        if depth > 8:
            raise ValueError("nesting deeper than 8 levels")
        for k, x in v.items():
            _check_limits(k, depth + 1)
            _check_limits(x, depth + 1)
    elif isinstance(v, list):
        if depth > 8:
            raise ValueError("nesting deeper than 8 levels")
        for x in v:
            _check_limits(x, depth + 1)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def parse_message(text):
    """Parse one control message per PROTOCOL.md section 2.
    Returns the dict; raises Malformed (with the id when readable)."""
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise Malformed("not JSON: %s" % e)
    if not isinstance(obj, dict):
        raise Malformed("not a JSON object")
    mid = obj.get("id")
    readable = mid if _is_int(mid) else None
    if "type" not in obj:
        raise Malformed("no type", readable)
    t = obj["type"]
    if not isinstance(t, str) or not t or len(t) > 31:
        raise Malformed("type must be a string of 1..31 characters", readable)
    if "id" not in obj:
        raise Malformed("no id")
    if not _is_int(mid) or not 1 <= mid <= ID_MAX:
        raise Malformed("id must be an integer 1..2^53-1",
                        readable if readable is not None and 1 <= readable <= ID_MAX else None)
    if "re" in obj and not _is_int(obj["re"]):
        raise Malformed("re must be an integer", mid)
    if len(obj) > 64:
        raise Malformed("more than 64 fields", mid)
    try:
        _check_limits(obj)
    except ValueError as e:
        raise Malformed(str(e), mid)
    return obj


# ---------------------------------------------------------------- the sim

def parse_day(text):
    """A YYYY-MM-DD date; ValueError otherwise."""
    if not isinstance(text, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        raise ValueError("date must be YYYY-MM-DD, not %r" % (text,))
    return datetime.date.fromisoformat(text)


def now_iso():
    return datetime.datetime.now().isoformat(timespec="milliseconds")


def short(v, n=400):
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=False)
    return s if len(s) <= n else s[:n] + "...(%d chars)" % len(s)


class Link:
    """One WebSocket connection from an agent."""

    def __init__(self, num, ws, peer):
        self.num = num
        self.ws = ws
        self.peer = peer
        self.customer = None
        self.system = None
        self.session = None
        self.next_id = 1
        self.up = False          # welcome sent
        self.stalled = False
        self.close_by = None     # "comsim" once we started closing
        self.record = {}         # the customer record it authenticated as
        self.closed = False
        self.gate = SendGate()
        self.streams = {}        # stream id -> Tunnel, opening or open
        self.closed_streams = collections.OrderedDict()  # id -> Tunnel, ended
        self.unknown_answered = collections.OrderedDict()  # ids answered unknown_stream
        self.next_stream = 2     # comsim opens even ids (PROTOCOL.md section 3)
        self.violations = 0
        self.agent_ids = set()   # stream ids the agent opened (never reused)
        self.alarm_sync = None   # {"count", "seen"} while an alarm.sync runs
        self.pending = {}        # (request type, key) -> future of the agent's answer

    def take_id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def take_stream(self):
        i = self.next_stream
        self.next_stream += 2
        return i

    def retire(self, tunnel):
        """Move an ended stream out of the open table.  Its id is kept for a
        while: data the agent sent before it saw our stream.close is still
        legitimate (within the credit it had)."""
        if self.streams.get(tunnel.sid) is tunnel:
            del self.streams[tunnel.sid]
        self.closed_streams[tunnel.sid] = tunnel
        while len(self.closed_streams) > 4096:
            self.closed_streams.popitem(last=False)


class SendGate:
    """One writer at a time on a link.  Control messages waiting for the
    link go before data frames waiting for it (PROTOCOL.md section 1:
    "a queued control message is written before the next data frame");
    data frames of different streams take turns in arrival order."""

    def __init__(self):
        self.busy = False
        self.ctl = collections.deque()
        self.data = collections.deque()

    async def acquire(self, control):
        if not self.busy:
            self.busy = True
            return
        fut = asyncio.get_running_loop().create_future()
        q = self.ctl if control else self.data
        q.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()       # it was handed to us as we were cancelled
            else:
                try:
                    q.remove(fut)
                except ValueError:
                    pass
            raise

    def release(self):
        for q in (self.ctl, self.data):
            while q:
                f = q.popleft()
                if not f.done():
                    f.set_result(None)
                    return
        self.busy = False


class AgentRec:
    def __init__(self, customer, system):
        self.customer = customer
        self.system = system
        self.hellos = 0
        self.welcomes = 0
        self.last_hello = None
        self.link = None         # current (welcomed) Link
        self.status = None       # the fields of the last status message
        self.status_at = None
        self.custom_lists = 0    # custom.list messages received
        # COM's alarm list for the system (guide ch. 4): id -> entry, the
        # agent's fields plus "active" and "cleared_at"
        self.alarms = {}
        self.refused = None      # the reason of the last refusal, until welcomed
        self.down_since = None   # when the last welcomed link was lost

    def json(self):
        link = self.link
        connected = bool(link and link.up and not link.closed)
        return {"customer": self.customer, "system": self.system,
                "connected": connected,
                "session": link.session if connected else None,
                "peer": link.peer if link else None,
                "hellos": self.hellos, "welcomes": self.welcomes,
                "last_hello": self.last_hello,
                "stalled": bool(connected and link.stalled),
                "status": self.status, "status_at": self.status_at,
                "custom_lists": self.custom_lists}


# ---------------------------------------------------------------- proxy names

class ProxyRefusal(Exception):
    """A proxy request comsim answers with an error status."""

    def __init__(self, status, reason, message, **info):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.info = info


_PORT_RE = re.compile(r"[0-9]{1,5}")
_HOST_RE = re.compile(r"[A-Za-z0-9_.-]+")
_IPV4ISH = re.compile(r"[0-9]+(?:\.[0-9]+){3}")


def _bad(message, **info):
    return ProxyRefusal(400, "bad_destination", message, **info)


def parse_destination(target, domain, records, allowed=None):
    """Resolve a CONNECT target
    `<customer-id>[-<system-name>][-<co-located-ipv4>].maint.<domain>:<port>`
    against the customer records (PROTOCOL.md section 3.1).

    `allowed` is the proxy account's customer list (None: all).  Returns
    {"customer", "system" (named system, canonical spelling, or ""),
    "host" (IPv4 or ""), "port", "primary" (the primary system's name)};
    raises ProxyRefusal: 400 malformed, 404 unknown customer/system,
    403 account not allowed for that customer."""
    if not target:
        raise _bad("empty CONNECT target")
    if target.startswith("["):
        raise _bad("%s: an IP literal is not a remote-support name" % target)
    host, sep, port = target.rpartition(":")
    if not sep:
        raise _bad("%s: no port (CONNECT needs <name>.maint.%s:<port>)"
                   % (target, domain))
    if not _PORT_RE.fullmatch(port):
        raise _bad("%s: bad port %r" % (target, port))
    pnum = int(port)
    if not 1 <= pnum <= 65535:
        raise _bad("%s: port %d is out of range 1..65535" % (target, pnum))
    if not host:
        raise _bad("%s: empty host name" % target)
    if not _HOST_RE.fullmatch(host):
        c = next(ch for ch in host if not _HOST_RE.fullmatch(ch))
        raise _bad("%s: bad character %r in the host name" % (target, c))
    suffix = ".maint." + domain.lower()
    if not host.lower().endswith(suffix):
        raise _bad("%s is not a remote-support name: it must end in .maint.%s"
                   % (host, domain))
    label = host[:-len(suffix)]
    if not label:
        raise _bad("%s: empty name before .maint.%s" % (host, domain))
    for part in label.split("."):
        if not part:
            raise _bad("%s: empty DNS label" % host)
        if part.startswith("-") or part.endswith("-"):
            raise _bad("%s: DNS label %r starts or ends with '-'" % (host, part))

    # The longest known customer id that prefixes the label, followed by
    # its end or '-' (ids and system names may contain '-' themselves).
    # Host names are case-insensitive; an exact-case match wins a tie.
    by_customer = collections.OrderedDict()
    for r in records:
        by_customer.setdefault(r["customer"], []).append(r)
    low = label.lower()
    best = None
    for c in by_customer:
        cl = c.lower()
        if low.startswith(cl) and (len(low) == len(cl) or low[len(cl)] == "-"):
            if best is None or len(c) > len(best) or \
                    (len(c) == len(best) and label.startswith(c)):
                best = c
    if best is None:
        raise ProxyRefusal(404, "unknown_customer",
                           "%s: unknown customer" % host)
    if allowed is not None and best not in allowed:
        raise ProxyRefusal(403, "account_not_allowed",
                           "this proxy account may not reach customer %s" % best,
                           customer=best)
    rest = label[len(best) + 1:]
    ip, name = "", rest
    if _IPV4ISH.fullmatch(rest):
        ip, name = rest, ""
    elif "-" in rest:
        head, _, tail = rest.rpartition("-")
        if _IPV4ISH.fullmatch(tail):
            ip, name = tail, head
    if ip:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise _bad("%s: bad IPv4 address %r" % (host, ip), customer=best)
    recs = by_customer[best]
    system = ""
    if name:
        exact = [r["system"] for r in recs if r["system"] == name]
        loose = [r["system"] for r in recs if r["system"].lower() == name.lower()]
        if exact or loose:
            system = (exact or loose)[0]
        elif "." in name:
            raise _bad("%s: '.' is only allowed in a trailing co-located IPv4 "
                       "address (%r)" % (host, name), customer=best)
        else:
            raise ProxyRefusal(404, "unknown_system",
                               "unknown system %s of customer %s" % (name, best),
                               customer=best)
    primary = next((r for r in recs if r.get("primary") is True), recs[0])
    return {"customer": best, "system": system, "host": ip, "port": pnum,
            "primary": primary["system"]}


def pac_file(domain, proxy_host, proxy_port):
    return ("// COM remote support: *.maint.%(d)s through COM's proxy\n"
            "function FindProxyForURL(url, host) {\n"
            "    if (shExpMatch(host.toLowerCase(), \"*.maint.%(d)s\"))\n"
            "        return \"HTTPS %(h)s:%(p)d\";\n"
            "    return \"DIRECT\";\n"
            "}\n") % {"d": domain.lower(), "h": proxy_host, "p": proxy_port}



_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_REQ_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
_HDR_LINE = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(.*?)[ \t]*")
_PRINTABLE = bytes(range(0x20, 0x7f)) + b"\t\r"
_CTL = bytes(range(0, 0x20)).replace(b"\t", b"") + b"\x7f"


def parse_request_line(line):
    """(method, target) of an HTTP/1.x request line; ProxyRefusal else."""
    line = line[:-1] if line.endswith(b"\r") else line
    m = _REQ_LINE.fullmatch(line)
    if not m:
        raise ProxyRefusal(400, "bad_request", "not an HTTP request line")
    method, target = m.group(1).decode("ascii"), m.group(2).decode("ascii")
    if (m.group(3), m.group(4)) not in ((b"1", b"1"), (b"1", b"0")):
        raise ProxyRefusal(505, "bad_version", "HTTP/%s.%s is not supported" % (
            m.group(3).decode(), m.group(4).decode()))
    if method not in ("CONNECT", "GET"):
        raise ProxyRefusal(405, "bad_method", "method %s not allowed: "
                           "CONNECT or GET only" % method)
    return method, target


def parse_proxy_head(head):
    """Parse a request header block (without the blank line).  Returns
    (method, target, {lower-case name: value}); raises ProxyRefusal."""
    lines = head.split(b"\n")
    method, target = parse_request_line(lines[0])
    headers = {}
    for ln in lines[1:]:
        if ln.endswith(b"\r"):
            ln = ln[:-1]
        m = _HDR_LINE.fullmatch(ln)
        if not m or m.group(2).translate(None, _CTL) != m.group(2):
            raise ProxyRefusal(400, "bad_request", "bad header line %r"
                               % ln[:80].decode("latin-1"))
        headers[m.group(1).decode("ascii").lower()] = m.group(2).decode("latin-1")
    return method, target, headers


def _header_safe(v):
    v = re.sub(r"[^A-Za-z0-9_.-]", "_", str(v))[:64]
    return v or "-"


# ---------------------------------------------------------------- streams

class Tunnel:
    """A stream comsim opened to an agent (PROTOCOL.md section 3): a proxy
    client's tunnel, or one opened through the admin API (conn None)."""

    def __init__(self, sim, link, sid, conn, info):
        self.sim = sim
        self.link = link
        self.sid = sid
        self.hdr = sid.to_bytes(4, "big")
        self.conn = conn                 # ProxyConn or None
        self.info = info                 # customer, system, host, port, user, client, via
        self.state = "opening"           # opening -> open -> closed
        self.opened = asyncio.get_running_loop().create_future()
        self.t0 = time.monotonic()
        self.t_open = None
        # comsim -> agent
        self.out_buf = bytearray()
        self.send_credit = 0             # what the agent lets us send
        self.client_done = False         # the client sent EOF / went away
        self.wake = asyncio.Event()
        self.sender = None
        self.to_agent = 0
        # agent -> comsim
        self.window = WINDOW
        self.recv_allow = WINDOW         # credit granted, not yet used
        self.handed = 0                  # bytes written to the client (or dropped)
        self.credited = 0                # bytes credited back
        self.from_agent = 0
        self.late = 0                    # bytes that arrived after our close
        self.credit_enabled = True
        self.admin = conn is None
        self.captured = bytearray()      # admin streams: what the agent sent
        self.capture_dropped = 0
        self.closed_by = None
        self.close_reason = None
        self.violated = False
        self.oversize_logged = False

    def json(self):
        d = {k: self.info.get(k) for k in ("customer", "system", "via", "host",
                                           "port", "user", "client")}
        d.update({"stream": self.sid, "link": self.link.num, "state": self.state,
                  "bytes_to_agent": self.to_agent,
                  "bytes_from_agent": self.from_agent,
                  "age": round(time.monotonic() - self.t0, 3),
                  "send_credit": self.send_credit,
                  "recv_allow": self.recv_allow,
                  "buffered": len(self.out_buf), "admin": self.admin})
        return d

    # -- the proxy client's side
    def transport(self):
        c = self.conn
        if c is None or c.transport is None or c.lost or c.transport.is_closing():
            return None
        return c.transport

    def client_data(self, data):
        if self.state == "closed":
            return
        self.out_buf += data
        if len(self.out_buf) >= CLIENT_READ_HIGH:
            self.conn.pause_reading()
        self.wake.set()

    def client_eof(self):
        self.client_done = True
        if self.state == "opening":
            self.sim.stream_abandon(self)
        self.wake.set()

    # -- comsim -> agent
    async def pump(self):
        """Client bytes to the agent, within the agent's credit."""
        link, sim = self.link, self.sim
        try:
            while self.state == "open":
                buf = self.out_buf
                if buf and self.send_credit > 0:
                    n = min(len(buf), self.send_credit, FRAME_DATA)
                    frame = self.hdr + buf[:n]
                    del buf[:n]
                    self.send_credit -= n
                    self.to_agent += n
                    if len(buf) <= CLIENT_READ_LOW and self.conn is not None:
                        self.conn.resume_reading()
                    await sim.send_data(link, frame)
                    continue
                if self.client_done and not buf:
                    sim.stream_end(self, "comsim" if self.admin else "client",
                                   "done", "")
                    return
                self.wake.clear()
                await self.wake.wait()
        except websockets.exceptions.ConnectionClosed:
            pass                  # the link is gone: link_lost() cleans up

    # -- agent -> comsim
    def agent_data(self, payload):
        n = len(payload)
        self.recv_allow -= n
        self.from_agent += n
        t = self.transport()
        if t is not None:
            t.write(payload)
        elif self.admin:
            room = CAPTURE_MAX - len(self.captured)
            if room > 0:
                self.captured += payload[:room]
            self.capture_dropped += max(0, n - max(room, 0))
        self.handed += n
        self.check_credit()

    def check_credit(self):
        """Grant the agent credit for what has left our buffers."""
        if self.state != "open" or not self.credit_enabled:
            return
        t = self.transport()
        pending = t.get_write_buffer_size() if t is not None else 0
        give = self.handed - pending - self.credited
        if give > 0 and give >= min(CREDIT_BATCH, max(1, self.window // 4)):
            self.credited += give
            self.recv_allow += give
            self.sim.post(self.link, {"type": "stream.credit", "stream": self.sid,
                                      "bytes": give}, log=self.admin)


def upload_key(job, name, size, sha256, content="backup"):
    """The partial-file key of an upload: the same job, name, size and
    sha256 -- and only those -- resume one another (PROTOCOL.md 3.3).  A
    log's key differs from a backup's of the same fields (backups keep the
    key they always had)."""
    fields = [job, name, size, sha256] + ([content] if content != "backup" else [])
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


def dir_name(s):
    """A customer id or system name as one directory name (percent-encoded
    beyond [A-Za-z0-9._~-]; ".", ".." and "" cannot escape)."""
    q = urllib.parse.quote(s, safe="")
    return {"": "%", ".": "%2E", "..": "%2E%2E"}.get(q, q)


def undir_name(d):
    return "" if d == "%" else urllib.parse.unquote(d)


def check_upload_name(name):
    """None if name is a valid upload name, else why not."""
    if not isinstance(name, str):
        return "name must be a string of 1..128 characters of [A-Za-z0-9._-]"
    if not UPLOAD_NAME_RE.fullmatch(name):
        return "name %s is not 1..128 characters of [A-Za-z0-9._-]" % \
            json.dumps(name[:140])
    if name in (".", ".."):
        return "name %s is not a file name" % name
    if name.endswith(SIDECAR) or PART_NAME_RE.fullmatch(name):
        return "name %s is reserved (comsim's own files)" % name
    return None


def check_log_name(name, system):
    """(day, None) for a log's name log-<system>-<yyyymmdd>-<nnn>.log.gz of
    this system with a real date, else (None, why).  `name` has passed
    check_upload_name()."""
    want = "log-%s-<yyyymmdd>-<nnn>.log.gz" % system
    m = LOG_NAME_RE.fullmatch(name)
    if m is None:
        return None, "a log's name must be %s, not %s" % (want, name)
    if m.group(1) != system:
        return None, "log %s is of system %s, not of this link's system %s " \
                     "(name must be %s)" % (name, m.group(1), system, want)
    ymd = m.group(2)
    try:
        day = datetime.date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:]))
    except ValueError:
        return None, "log %s: %s is not a date (yyyymmdd)" % (name, ymd)
    return day, None


def hash_file(path, limit):
    """sha256 object over the first `limit` bytes of path (1 MiB reads)."""
    h = hashlib.sha256()
    left = limit
    with open(path, "rb") as f:
        while left > 0:
            b = f.read(min(HASH_CHUNK, left))
            if not b:
                break
            h.update(b)
            left -= len(b)
    return h


def write_json_atomic(path, obj):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


class Upload:
    """A stream the agent opened to upload a file (PROTOCOL.md section 3.3).
    Data goes straight to <key>.part (one frame in memory at a time) and
    credit goes back as it is written."""

    admin = False

    def __init__(self, sim, link, sid, info, directory, key):
        self.sim = sim
        self.link = link
        self.sid = sid
        self.info = info                 # job, name, size, sha256, op, kind
        self.dir = directory
        self.key = key
        self.part = os.path.join(directory, key + ".part")
        self.state = "open"              # open -> closed
        self.f = None
        self.hasher = None
        self.offset = 0                  # bytes held when it was opened
        self.held = 0                    # bytes in the part file
        self.total = 0                   # offset + bytes received (even past size)
        self.received = 0                # bytes received on this stream
        self.window = WINDOW
        self.recv_allow = WINDOW         # credit granted, not yet used
        self.uncredited = 0
        self.send_credit = 0             # the agent's credit for us (we send nothing)
        self.t0 = time.monotonic()
        self.dropping = False            # an upload fault is dropping the link
        self.closed_by = None
        self.close_reason = None
        self.violated = False
        self.late = 0
        self.oversize_logged = False

    def agent_data(self, payload):
        n = len(payload)
        self.recv_allow -= n
        self.received += n
        if self.dropping or self.state != "open":
            return
        sim, link = self.sim, self.link
        take, drop = n, False
        fault = sim.upload_faults.get((link.customer, link.system))
        if fault and fault.get("drop_after") is not None:
            left = fault["drop_after"]
            if n >= left:
                take, drop = left, True
                del fault["drop_after"]
                if not fault:
                    del sim.upload_faults[(link.customer, link.system)]
            else:
                fault["drop_after"] = left - n
        self.total += take
        room = self.info["size"] - self.held
        if room > 0 and take > 0:
            chunk = payload[:min(take, room)]
            self.f.write(chunk)
            self.hasher.update(chunk)
            self.held += len(chunk)
        if drop:
            self.dropping = True
            self.f.flush()
            sim.upload_drop(self)
            return
        self.uncredited += n
        if not (fault and fault.get("hold_credit")):
            self.grant()

    def grant(self, force=False):
        """Credit back what has been written, in steps of at least 16 KiB
        (a quarter of the window when that is smaller)."""
        if self.state != "open" or self.dropping or self.uncredited <= 0:
            return
        if force or self.uncredited >= min(CREDIT_BATCH, max(1, self.window // 4)):
            give, self.uncredited = self.uncredited, 0
            self.recv_allow += give
            self.sim.post(self.link, {"type": "stream.credit", "stream": self.sid,
                                      "bytes": give}, log=False)

    def close_file(self):
        f, self.f = self.f, None
        if f is not None:
            try:
                f.close()
            except OSError as e:
                self.sim.event("internal_error", self.link,
                               error="closing %s: %r" % (self.part, e))


class Download:
    """A stream the agent opened to fetch a file (PROTOCOL.md section 3.4): a
    stored backup for a restore job, a library component for a transfer, a
    custom file (3.5).
    pump() reads the file a frame at a time and sends it within the agent's
    credit through the link's SendGate, as Tunnel.pump does."""

    admin = False

    def __init__(self, sim, link, sid, info, f, size, sha256, offset, window):
        self.sim = sim
        self.link = link
        self.sid = sid
        self.hdr = sid.to_bytes(4, "big")
        self.info = info                 # job, op, name, source, release[, level]
        self.f = f                       # the open file, at offset
        self.size = size
        self.sha256 = sha256
        self.offset = offset             # where this stream started
        self.pos = offset                # the next byte to send
        self.sent = 0                    # bytes sent on this stream
        self.state = "open"              # open -> closed
        self.send_credit = window        # the agent's window + its credits
        self.window = WINDOW             # what we accept from the agent (nothing
        self.recv_allow = WINDOW         # is expected; never credited back)
        self.wake = asyncio.Event()
        self.sender = None
        self.t0 = time.monotonic()
        self.closed_by = None
        self.close_reason = None
        self.violated = False
        self.late = 0
        self.oversize_logged = False
        self.data_logged = False

    def json(self):
        d = {"stream": self.sid, "link": self.link.num, "job": self.info["job"],
             "op": self.info["op"], "name": self.info["name"],
             "source": self.info["source"], "size": self.size,
             "sha256": self.sha256, "offset": self.offset, "pos": self.pos,
             "sent": self.sent, "send_credit": self.send_credit,
             "age": round(time.monotonic() - self.t0, 3)}
        if "level" in self.info:          # a custom file (PROTOCOL.md 3.5)
            d["level"] = self.info["level"]
        return d

    def agent_data(self, payload):
        """The agent has nothing to send on a download: counted, dropped,
        logged once (beyond the accept's window it is a flow violation)."""
        self.recv_allow -= len(payload)
        if not self.data_logged:
            self.data_logged = True
            self.sim.violation(self.link, self.sid, "data from the agent on a "
                               "download: ignored", size=len(payload))

    def close_file(self):
        f, self.f = self.f, None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass

    async def pump(self):
        """The file from pos to its end, within credit, then stream.close done."""
        sim, link = self.sim, self.link
        key = (link.customer, link.system)
        try:
            while self.state == "open":
                if self.pos >= self.size:
                    sim.download_done(self)
                    await sim.send(link, {"type": "stream.close", "stream": self.sid,
                                          "reason": "done", "message": ""})
                    return
                if self.send_credit <= 0:
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                n = min(FRAME_DATA, self.send_credit, self.size - self.pos)
                fault = sim.download_faults.get(key)
                drop = False
                if fault and fault.get("drop_after") is not None:
                    left = fault["drop_after"]
                    if left <= n:
                        n, drop = left, True
                        del fault["drop_after"]
                    else:
                        fault["drop_after"] = left - n
                if n > 0:
                    data = self.f.read(n)
                    if len(data) != n:
                        sim.download_end(self, "comsim", "shutdown",
                                         "%s changed while being sent"
                                         % self.info["name"])
                        return
                    if fault and fault.get("corrupt"):
                        del fault["corrupt"]
                        b = bytearray(data)
                        i = len(b) // 2
                        b[i] ^= 0xFF
                        data = bytes(b)
                        sim.event("download_fault", link, action="corrupt",
                                  stream=self.sid, name=self.info["name"],
                                  position=self.pos + i)
                    self.pos += n
                    self.sent += n
                    self.send_credit -= n
                if fault is not None and not fault:
                    sim.download_faults.pop(key, None)
                if n > 0:
                    await sim.send_data(link, self.hdr + data)
                if drop:
                    sim.download_drop(self)
                    return
        except websockets.exceptions.ConnectionClosed:
            pass                  # the link is gone: link_lost() cleans up
        except Exception as e:
            sim.event("internal_error", link, error="download %s: %r"
                      % (self.info["name"], e))
            sim.download_end(self, "comsim", "shutdown", "internal error")


class ProxyConn(asyncio.Protocol):
    """One connection to the remote-support proxy (inside TLS)."""

    def __init__(self, sim):
        self.sim = sim
        self.transport = None
        self.peer = None
        self.buf = bytearray()
        self.phase = "head"              # head -> busy -> tunnel / done
        self.tunnel = None
        self.timer = None
        self.reading = True
        self.lost = False

    def connection_made(self, transport):
        self.transport = transport
        try:
            p = transport.get_extra_info("peername")
            if p and ":" in p[0]:
                self.peer = "[%s]:%s" % (p[0], p[1])
            else:
                self.peer = "%s:%s" % (p[0], p[1]) if p else None
        except Exception:
            self.peer = None
        transport.set_write_buffer_limits(high=32768, low=8192)
        self.sim.proxy_conns.add(self)
        self.timer = asyncio.get_running_loop().call_later(
            self.sim.proxy_header_timeout, self.head_timeout)

    def data_received(self, data):
        if self.tunnel is not None:
            self.tunnel.client_data(data)
        elif self.phase == "head":
            self.buf += data
            self.sim.proxy_head(self)
        elif self.phase == "busy":
            # CONNECT accepted for processing; the stream is being set up.
            self.buf += data
            if len(self.buf) >= CLIENT_READ_HIGH:
                self.pause_reading()
        # else: a refusal is on its way; ignore the rest

    def eof_received(self):
        if self.tunnel is not None:
            self.tunnel.client_eof()
        return False

    def connection_lost(self, exc):
        self.lost = True
        self.sim.proxy_conns.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.tunnel is not None:
            self.tunnel.client_eof()

    def pause_writing(self):
        pass

    def resume_writing(self):
        if self.tunnel is not None:
            self.tunnel.check_credit()

    def pause_reading(self):
        if self.reading and not self.lost and self.transport is not None:
            self.reading = False
            try:
                self.transport.pause_reading()
            except Exception:
                pass

    def resume_reading(self):
        if not self.reading and not self.lost and self.transport is not None:
            self.reading = True
            try:
                self.transport.resume_reading()
            except Exception:
                pass

    def head_timeout(self):
        self.timer = None
        if self.phase == "head" and not self.lost:
            self.sim.proxy_refuse(self, ProxyRefusal(
                408, "header_timeout", "no complete request header within %gs"
                % self.sim.proxy_header_timeout))

    def respond(self, status, body=b"", headers=(), close=True):
        if self.lost or self.transport is None or self.transport.is_closing():
            return
        phrase = "Connection established" if status == 200 and not close else \
            http.HTTPStatus(status).phrase
        lines = ["HTTP/1.1 %d %s" % (status, phrase)]
        if status != 200 or body:
            lines.append("Content-Length: %d" % len(body))
        lines += ["%s: %s" % h for h in headers]
        if close:
            lines.append("Connection: close")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        if close:
            self.phase = "done"
            self.close()

    def close(self, abort_after=10.0):
        t = self.transport
        if t is None or self.lost or t.is_closing():
            return
        t.close()
        # A TLS close waits for the peer's close_notify; do not wait forever.
        def force():
            if not self.lost:
                try:
                    t.abort()
                except Exception:
                    pass
        asyncio.get_running_loop().call_later(abort_after, force)


class TLSAcceptor(asyncio.sslproto.SSLProtocol):
    """Server-side TLS in front of a websockets protocol, so that a failed
    handshake can be logged (asyncio's own server keeps those silent)."""

    def __init__(self, sim, loop, app, ctx, listener=None):
        self._sim = sim
        self._peer = None
        self._app = app
        self._listener = listener
        waiter = loop.create_future()
        super().__init__(loop, app, ctx, waiter, server_side=True,
                         ssl_handshake_timeout=10.0)
        waiter.add_done_callback(self._handshake_done)

    def connection_made(self, transport):
        try:
            p = transport.get_extra_info("peername")
            self._peer = "%s:%s" % (p[0], p[1]) if p else None
        except Exception:
            self._peer = None
        super().connection_made(transport)

    def _handshake_done(self, fut):
        if fut.cancelled():
            err = "handshake cancelled"
        elif fut.exception() is not None:
            e = fut.exception()
            err = "%s: %s" % (type(e).__name__, e)
            if not str(e):
                err += "connection closed by the peer during TLS handshake"
        elif self._state != asyncio.sslproto.SSLProtocolState.WRAPPED:
            err = "connection closed during TLS handshake"
        else:
            # What was negotiated, for the tests of the agent's TLS policy.
            so = self._sslobj
            if not self._listener and so is not None:
                c = so.cipher()
                self._sim.event("tls", peer=self._peer, version=so.version(),
                                cipher=c[0] if c else None)
            return
        if self._listener:
            self._sim.event("tls_error", peer=self._peer, error=err,
                            listener=self._listener)
        else:
            self._sim.event("tls_error", peer=self._peer, error=err)


class SimProtocol(WebSocketServerProtocol):
    sim = None

    async def read_http_request(self):
        # TLS is up here.  A client that verifies the certificate only after
        # the TLS handshake (mbedTLS through lws does) and dislikes it hangs
        # up now, without an HTTP request: log that as http_error.
        try:
            return await super().read_http_request()
        except Exception as e:
            try:
                p = self.transport.get_extra_info("peername")
                peer = "%s:%s" % (p[0], p[1]) if p else None
            except Exception:
                peer = None
            cause = e.__cause__
            self.sim.event("http_error", peer=peer, error="%s%s" % (
                e, " (%s)" % (repr(cause) if cause else "")))
            raise

    async def process_request(self, path, headers):
        try:
            p = self.transport.get_extra_info("peername")
            peer = "%s:%s" % (p[0], p[1]) if p else None
        except Exception:
            peer = None
        if path.split("?", 1)[0] != PATH:
            self.sim.event("http_reject", peer=peer, status=404, path=path)
            return (http.HTTPStatus.NOT_FOUND, [("Content-Type", "text/plain")],
                    b"not found\n")
        offered = []
        for h in headers.get_all("Sec-WebSocket-Protocol"):
            offered += [x.strip() for x in h.split(",")]
        if SUBPROTOCOL not in offered:
            self.sim.event("http_reject", peer=peer, status=400, path=path,
                           error="subprotocol %s not offered" % SUBPROTOCOL,
                           offered=offered)
            return (http.HTTPStatus.BAD_REQUEST, [("Content-Type", "text/plain")],
                    b"subprotocol com-agent.v1 required\n")
        return None


class ComSim:
    def __init__(self, args):
        self.dir = os.path.abspath(args.dir)
        self.hosts = [h.strip() for h in args.host.split(",") if h.strip()]
        self.port = args.port
        self.admin_port = args.admin_port
        self.cert_name = args.cert_name
        self.tls_cert, self.tls_key = args.tls_cert, args.tls_key
        self.tls_ciphers = args.tls_ciphers
        self.hello_timeout = args.hello_timeout
        self.max_streams = args.max_streams
        self.customers = {}
        self.agents = {}
        self.links = set()
        self.link_seq = 0
        self.events = []
        self.seq = 0
        self.ws_servers = []
        self.admin_server = None
        self.stopping = None
        self.ssl_ctx = None
        self.restart_task = None
        self.proxy_port = args.proxy_port
        self.com_domain = args.com_domain
        self.proxy_header_timeout = args.proxy_header_timeout
        self.tunnel_timeout = args.tunnel_timeout
        self.proxy_accounts = collections.OrderedDict()
        self.proxy_servers = []
        self.proxy_conns = set()
        self.bg = set()
        # uploads (PROTOCOL.md 3.3) and backups
        self.backups_dir = os.path.join(self.dir, "backups")
        self.upload_max = args.upload_max
        if self.upload_max < 0:
            raise ValueError("--upload-max must be >= 0")
        self.today_fixed = parse_day(args.today) if args.today else None
        # logs (uploads with "content":"log") and COM's log retention in days
        self.logs_dir = os.path.join(self.dir, "logs")
        self.custom_dir = os.path.join(self.dir, "custom")
        self.log_retention_days = args.log_retention_days
        if not _is_int(self.log_retention_days) or self.log_retention_days < 0:
            raise ValueError("--log-retention-days must be >= 0")
        self.upload_faults = {}  # (customer, system) -> {"drop_after", "corrupt"}
        self.uploads = {}        # (customer, system, key) -> Upload in progress
        self.jobs = {}           # (customer, system) -> OrderedDict job id -> info
        self.jobs_path = os.path.join(self.dir, "jobs.json")
        self.load_jobs()
        self.sched_wake = None   # asyncio.Event: a job may be due (run())
        self.sched_task = None
        # downloads (PROTOCOL.md 3.4) and the software library
        self.download_faults = {}    # (customer, system) -> {"drop_after", "corrupt"}
        self.custom_list_faults = {}  # (customer, system) -> {"mode", "count"?}
        self.library = library.Library(self.dir)
        recs = DEFAULT_CUSTOMERS
        accounts = DEFAULT_PROXY_ACCOUNTS
        if args.customers:
            with open(args.customers) as f:
                data = json.load(f)
            recs = data["customers"] if isinstance(data, dict) else data
            if isinstance(data, dict) and data.get("proxy_accounts") is not None:
                accounts = data["proxy_accounts"]
                if not isinstance(accounts, list):
                    raise ValueError("proxy_accounts must be a list")
        for r in recs:
            self.upsert(r)
        for a in accounts:
            self.upsert_account(a)

    # -- events
    def event(self, kind, link=None, customer=None, system=None, **kw):
        self.seq += 1
        if link is not None:
            customer = customer or link.customer
            system = system or link.system
            kw.setdefault("link", link.num)
        ev = {"seq": self.seq, "t": time.time(), "kind": kind,
              "customer": customer, "system": system}
        ev.update(kw)
        self.events.append(ev)
        if len(self.events) > 200000:
            del self.events[:50000]
        rest = {k: v for k, v in ev.items()
                if k not in ("seq", "t", "kind") and v is not None}
        try:
            line = "%s comsim %-10s %s" % (now_iso(), kind, short(rest, 600))
            print(line, file=sys.stderr, flush=True)
        except Exception:
            pass
        return ev

    # -- customers / agents
    def upsert(self, rec):
        if not isinstance(rec, dict):
            raise ValueError("customer record must be an object")
        for k in ("customer", "system", "user", "password"):
            if not isinstance(rec.get(k), str):
                raise ValueError("customer record needs string %r" % k)
        if rec.get("reseller") is not None and not isinstance(rec["reseller"], str):
            raise ValueError("customer record: reseller must be a string")
        r = dict(rec)
        r.setdefault("state", "ok")
        self.customers[(r["customer"], r["system"])] = r
        return r

    # -- custom files (guide ch. 18, PROTOCOL.md 3.5): provider / reseller /
    # system folders
    def custom_check_id(self, what, v):
        if not isinstance(v, str) or not v:
            return "%s (non-empty string) required" % what
        if (len(v) > 128 or v in (".", "..") or "/" in v or "\\" in v
                or "\0" in v):
            return "%s %r is not a valid folder name" % (what, v)
        return None

    def custom_folder(self, body):
        """(folder, error) for the level addressed by body: provider;
        reseller + reseller; system + customer + system (the folder is
        custom/customers/<customer>/<system>)."""
        level = body.get("level")
        if level not in CUSTOM_LEVELS:
            return None, "level must be one of %s, not %r" % (
                "/".join(CUSTOM_LEVELS), level)
        if level == "provider":
            return os.path.join(self.custom_dir, "provider"), None
        if level == "reseller":
            err = self.custom_check_id("reseller", body.get("reseller"))
            if err:
                return None, err
            return os.path.join(self.custom_dir, "resellers",
                                body["reseller"]), None
        for k in ("customer", "system"):
            err = self.custom_check_id(k, body.get(k))
            if err:
                return None, err
        return os.path.join(self.custom_dir, "customers", body["customer"],
                            body["system"]), None

    def custom_levels(self, customer, system, rec):
        """[(level, folder, ids)] of the folders that apply to a system,
        provider first; the reseller's only when its record names one."""
        bodies = [{"level": "provider"}]
        if (rec or {}).get("reseller"):
            bodies.append({"level": "reseller", "reseller": rec["reseller"]})
        bodies.append({"level": "system", "customer": customer, "system": system})
        out = []
        for b in bodies:
            folder, err = self.custom_folder(b)
            if err is None:
                out.append((b["level"], folder,
                            {k: v for k, v in b.items() if k != "level"}))
        return out

    def custom_listing(self, customer, system, rec):
        """The body of a custom.files answer (PROTOCOL.md 3.5): per level its
        tars (levels with neither left out), and the CustomData.xml of the
        most specific level that has one."""
        out, data = {}, None
        for level, folder, _ in self.custom_levels(customer, system, rec):
            lv = {}
            for key, name in CUSTOM_TARS:
                e = self.custom_entry(folder, name)
                if e:
                    lv[key] = {"size": e["size"], "sha256": e["sha256"]}
            if lv:
                out[level] = lv
            e = self.custom_entry(folder, CUSTOM_DATA)
            if e:
                data = {"level": level, "size": e["size"], "sha256": e["sha256"]}
        if data:
            out["customdata"] = data
        return out

    @staticmethod
    def custom_tar(files):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
            for name, text in files.items():
                data = text.encode("utf-8")
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                ti.mtime = 0
                ti.mode = 0o644
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                t.addfile(ti, io.BytesIO(data))
        return buf.getvalue()

    @staticmethod
    def custom_entry(folder, name):
        p = os.path.join(folder, name)
        try:
            with open(p, "rb") as f:
                data = f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return {"name": name, "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest()}

    def admin_custom(self, method, path, params, body):
        """GET/POST /custom_files, POST /custom_files/delete, GET/POST
        /custom_list_fault."""
        if path == "/custom_list_fault":
            return self.admin_custom_list_fault(method, body)
        if method == "GET" and path == "/custom_files":
            c, s = params.get("customer"), params.get("system")
            if not c or not s:
                return 400, {"error": "customer and system required"}
            rec = self.customers.get((c, s))
            if rec is None:
                return 404, {"error": "no customer record %s/%s" % (c, s)}
            levels = [dict({"level": level}, **ids,
                           files=[e for e in (self.custom_entry(folder, n)
                                              for n in CUSTOM_NAMES) if e])
                      for level, folder, ids in self.custom_levels(c, s, rec)]
            return 200, {"customer": c, "system": s, "levels": levels}
        if method != "POST":
            return 404, {"error": "no such endpoint: %s %s" % (method, path)}
        folder, err = self.custom_folder(body)
        if err:
            return 400, {"error": err}
        name = body.get("name")
        if name not in CUSTOM_NAMES:
            return 400, {"error": "name must be one of %s, not %r"
                         % (", ".join(CUSTOM_NAMES), name)}
        if path == "/custom_files/delete":
            p = os.path.join(folder, name)
            try:
                os.remove(p)
            except FileNotFoundError:
                return 404, {"error": "%s not present at %s level"
                             % (name, body["level"])}
            self.event("custom_file", customer=body.get("customer"),
                       system=body.get("system"), action="delete",
                       level=body["level"], name=name)
            return 200, {"deleted": name, "level": body["level"]}
        has_b64, has_files = "content_b64" in body, "files" in body
        if has_b64 == has_files:
            return 400, {"error": "exactly one of content_b64 or files required"}
        if has_b64:
            if not isinstance(body["content_b64"], str):
                return 400, {"error": "content_b64 must be a base64 string"}
            try:
                data = base64.b64decode(body["content_b64"], validate=True)
            except (ValueError, binascii.Error) as e:
                return 400, {"error": "content_b64: bad base64: %s" % e}
        else:
            files = body["files"]
            if not name.endswith(".tar"):
                return 400, {"error": "files (tar members) only for .tar names"}
            if not isinstance(files, dict) or not all(
                    isinstance(k, str) and k and isinstance(v, str)
                    for k, v in files.items()):
                return 400, {"error": "files must map member names to text"}
            try:
                data = self.custom_tar(files)
            except ValueError as e:
                return 400, {"error": "files: %s" % e}
        if len(data) > CUSTOM_MAX:
            return 400, {"error": "too large: %s is %d bytes, limit %d (10 MiB)"
                         % (name, len(data), CUSTOM_MAX), "status": 413}
        os.makedirs(folder, exist_ok=True)
        p = os.path.join(folder, name)
        tmp = "%s.tmp.%d" % (p, os.getpid())
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
        self.event("custom_file", customer=body.get("customer"),
                   system=body.get("system"), action="store",
                   level=body["level"], name=name, size=len(data))
        return 200, dict(self.custom_entry(folder, name), level=body["level"])

    def admin_custom_list_fault(self, method, body):
        """POST /custom_list_fault {customer, system, mode, count?}: the
        system's custom.list is answered with `error` (mode error) or not at
        all (silent) until mode none clears it, or for the next `count`
        lists only.  GET: the faults set."""
        if method == "GET":
            return 200, [dict(v, customer=c, system=s)
                         for (c, s), v in self.custom_list_faults.items()]
        if method != "POST":
            return 404, {"error": "no such endpoint: %s /custom_list_fault" % method}
        c, s = body.get("customer"), body.get("system")
        if not isinstance(c, str) or not isinstance(s, str):
            return 400, {"error": "customer and system required"}
        mode, count = body.get("mode"), body.get("count")
        if mode not in CUSTOM_LIST_FAULTS:
            return 400, {"error": "mode must be one of %s, not %s"
                         % ("/".join(CUSTOM_LIST_FAULTS), json.dumps(mode))}
        if count is not None and (not _is_int(count) or count < 1):
            return 400, {"error": "count must be an integer >= 1 or null"}
        if mode == "none":
            if count is not None:
                return 400, {"error": "count is for modes error and silent"}
            cur = {}
            self.custom_list_faults.pop((c, s), None)
        else:
            cur = {"mode": mode}
            if count is not None:
                cur["count"] = count
            self.custom_list_faults[(c, s)] = cur
        self.event("custom_list_fault", customer=c, system=s, action="set", **cur)
        return 200, dict(cur, customer=c, system=s)

    async def on_custom_list(self, link, msg):
        """custom.list (PROTOCOL.md 3.5): custom.files with what the three
        folders hold for the link's system; error / nothing under a fault."""
        key = (link.customer, link.system)
        a = self.agent(*key)
        a.custom_lists += 1
        fault = self.custom_list_faults.get(key)
        mode = fault["mode"] if fault else None
        if fault and "count" in fault:
            fault["count"] -= 1
            if fault["count"] <= 0:
                del self.custom_list_faults[key]
                self.event("custom_list_fault", link, action="expired", mode=mode)
        ans = listing = None
        if mode == "error":
            ans = {"type": "error", "re": msg["id"], "code": "unavailable",
                   "message": "custom files unavailable"}
        elif mode is None:
            rec = self.customers.get(key, link.record)
            listing = self.custom_listing(link.customer, link.system, rec)
            ans = dict({"type": "custom.files", "re": msg["id"]}, **listing)
        self.event("custom_list", link, re=msg["id"], n=a.custom_lists,
                   answer=ans["type"] if ans else "silent", fault=mode,
                   files=listing)
        if ans is not None:
            await self.reply(link, ans)

    def upsert_account(self, acct):
        if not isinstance(acct, dict):
            raise ValueError("proxy account must be an object")
        for k in ("user", "password"):
            if not isinstance(acct.get(k), str):
                raise ValueError("proxy account needs string %r" % k)
        if not acct["user"] or ":" in acct["user"]:
            raise ValueError("proxy account user must be non-empty, without ':'")
        cs = acct.get("customers")
        if cs is not None and (not isinstance(cs, list) or
                               not all(isinstance(c, str) for c in cs)):
            raise ValueError("proxy account customers must be a list of ids")
        a = {"user": acct["user"], "password": acct["password"],
             "customers": list(cs) if cs is not None else None}
        self.proxy_accounts[a["user"]] = a
        return a

    @staticmethod
    def account_json(a):
        return {"user": a["user"], "customers": a["customers"]}

    def primary_system(self, customer):
        recs = [r for (c, _), r in self.customers.items() if c == customer]
        if not recs:
            return None
        return next((r for r in recs if r.get("primary") is True), recs[0])["system"]

    def agent(self, customer, system):
        key = (customer, system)
        a = self.agents.get(key)
        if a is None:
            a = self.agents[key] = AgentRec(customer, system)
        return a

    def agent_list(self):
        keys = list(self.agents)
        for k in self.customers:
            if k not in self.agents:
                keys.append(k)
        out = []
        for k in keys:
            a = self.agents.get(k) or AgentRec(*k)
            out.append(a.json())
        return out

    def current_link(self, customer, system):
        a = self.agents.get((customer, system))
        if a and a.link and not a.link.closed:
            return a.link
        return None

    # -- sending
    async def send(self, link, msg=None, raw=None, log=True, job_info=None):
        """One control message (or raw text frame).  A message without an
        id gets the next one while it holds the link, so ids go out in
        increasing order.  A `job` is recorded (with job_info) as sent."""
        await link.gate.acquire(True)
        try:
            if raw is None:
                if "id" not in msg:
                    m = {"type": msg.get("type"), "id": link.take_id()}
                    m.update(msg)
                    msg = m
                raw = json.dumps(msg, separators=(",", ":"))
            if msg is not None and msg.get("type") == "job":
                self.record_job(link, msg, job_info)  # before the agent answers
            await link.ws.send(raw)
        finally:
            link.gate.release()
        if not log:
            pass
        elif msg is not None:
            self.event("sent", link, msg=msg)
        else:
            self.event("sent", link, raw=short(raw, 300), size=len(raw))
        return msg

    async def send_data(self, link, frame):
        """One binary frame, after any control message waiting."""
        await link.gate.acquire(False)
        try:
            await link.ws.send(frame)
        finally:
            link.gate.release()

    def post(self, link, msg, log=True):
        """send() without waiting (from callbacks and the link's reader)."""
        task = asyncio.ensure_future(self._post(link, msg, log))
        self.bg.add(task)
        task.add_done_callback(self.bg.discard)

    async def _post(self, link, msg, log):
        try:
            await self.send(link, msg, log=log)
        except websockets.exceptions.ConnectionClosed:
            pass
        except Exception as e:
            self.event("internal_error", link, error="sending %s: %r" % (
                msg.get("type"), e))

    async def reply(self, link, msg):
        try:
            await self.send(link, msg)
        except websockets.exceptions.ConnectionClosed:
            pass

    async def close_link(self, link, code, reason=""):
        if link.close_by is None:
            link.close_by = "comsim"
        if link.stalled:
            # It reads nothing, so it would never see the agent's close frame
            # (nor its FIN): write ours and cut the connection.
            try:
                link.ws.fail_connection(code, reason)
                link.ws.transport.abort()
            except Exception as e:
                self.event("debug", link, error="abort failed: %r" % e)
            return
        try:
            await link.ws.close(code, reason)
        except Exception as e:
            self.event("debug", link, error="close failed: %r" % e)

    # -- the WebSocket side
    def make_protocol(self, *a, **kw):
        app = SimProtocol(*a, **kw)
        app.sim = self
        return TLSAcceptor(self, asyncio.get_running_loop(), app, self.ssl_ctx)

    async def ws_handler(self, ws):
        self.link_seq += 1
        p = ws.remote_address
        peer = "%s:%s" % (p[0], p[1]) if p else None
        link = Link(self.link_seq, ws, peer)
        self.links.add(link)
        self.event("ws_open", link, peer=peer, path=ws.path,
                   subprotocol=ws.subprotocol)
        try:
            await self.run_link(link)
        except websockets.exceptions.ConnectionClosed:
            pass
        except Exception as e:  # never let one link take the server down
            self.event("internal_error", link, error=repr(e))
            await self.close_link(link, 1011, "internal error")
        finally:
            self.link_lost(link)
            try:
                await asyncio.wait_for(ws.wait_closed(), 15)
            except Exception:
                pass
            link.closed = True
            self.links.discard(link)
            rcvd, sent = ws.close_rcvd, ws.close_sent
            if link.close_by == "comsim" and sent is not None:
                by, code, reason = "comsim", sent.code, sent.reason
            elif rcvd is not None:
                by, code, reason = "agent", rcvd.code, rcvd.reason
            elif sent is not None:
                by, code, reason = "comsim", sent.code, sent.reason
            else:
                by, code, reason = "network", 1006, ""
            self.event("close", link, code=code, reason=reason, by=by,
                       code_sent=sent.code if sent else None,
                       code_rcvd=rcvd.code if rcvd else None)
            if link.customer is not None:
                a = self.agents.get((link.customer, link.system))
                if a and a.link is link:
                    a.link = None
                    a.down_since = time.time()
                if a and link.alarm_sync is not None:
                    link.alarm_sync = None   # a sync the link did not finish

    async def recv_checked(self, link, timeout=None):
        """The next frame; None when it broke a frame limit (link closed)."""
        if timeout is None:
            data = await link.ws.recv()
        else:
            data = await asyncio.wait_for(link.ws.recv(), timeout)
        if isinstance(data, str):
            size = len(data.encode("utf-8", "surrogatepass"))
            if size > MAX_TEXT:
                self.event("message", link, error="text frame of %d bytes" % size,
                           raw=short(data, 200), size=size)
                await self.close_link(link, 4002, "text frame too large")
                return None
        elif len(data) > MAX_BINARY:
            self.event("message", link, error="binary frame of %d bytes" % len(data),
                       size=len(data))
            await self.close_link(link, 4002, "binary frame too large")
            return None
        return data

    async def run_link(self, link):
        # 1. hello, within hello_timeout.
        try:
            data = await self.recv_checked(link, self.hello_timeout)
        except asyncio.TimeoutError:
            self.event("protocol_error", link, error="no hello within %gs" % self.hello_timeout)
            await self.close_link(link, 4002, "no hello")
            return
        if data is None:
            return
        if not isinstance(data, str):
            self.event("protocol_error", link, error="binary frame before hello",
                       size=len(data))
            await self.close_link(link, 4002, "hello expected")
            return
        try:
            hello = parse_message(data)
        except Malformed as e:
            self.event("protocol_error", link, error="first message: %s" % e,
                       raw=short(data, 200))
            await self.close_link(link, 4002, "hello expected")
            return
        if hello["type"] != "hello":
            self.event("protocol_error", link,
                       error="first message is %r, not hello" % hello["type"],
                       msg=hello)
            await self.close_link(link, 4002, "hello expected")
            return
        if not await self.on_hello(link, hello):
            return
        # 2. the link is up.
        while True:
            data = await self.recv_checked(link)
            if data is None:
                return
            if isinstance(data, bytes):
                await self.on_binary(link, data)
            else:
                await self.on_text(link, data)

    async def on_hello(self, link, hello):
        customer, system = hello.get("customer"), hello.get("system")
        user = hello.get("user")
        logged = {k: v for k, v in hello.items() if k != "password"}
        if "password" in hello:
            logged["password"] = "***"
        if isinstance(customer, str) and isinstance(system, str):
            link.customer, link.system = customer, system
            a = self.agent(customer, system)
            a.hellos += 1
            a.last_hello = time.time()
        self.event("hello", link, user=user if isinstance(user, str) else None,
                   proto=hello.get("proto"), profile=hello.get("profile"),
                   version=hello.get("version"), agent=hello.get("agent"),
                   peer=link.peer, msg=logged)

        reason = None
        rec = self.customers.get((customer, system))
        if hello.get("proto") != 1:
            reason = "protocol"
        elif not all(isinstance(hello.get(k), str)
                     for k in ("customer", "system", "user", "password")):
            reason = "protocol"
        elif rec is None:
            reason = "not_primary"
        elif user != rec["user"]:
            reason = "credentials_invalid"
        elif hello.get("password") != rec["password"]:
            reason = "auth_failed"
        else:
            reason = state_reason(rec.get("state"))
        if reason is None and rec.get("on_hello") == "ignore":
            # A COM that accepts the WebSocket and never answers hello.
            self.event("ignored_hello", link)
            link.record = rec
            return True
        if reason is None and rec.get("on_hello") == "drop":
            self.event("dropped_hello", link)
            await self.close_link(link, 1001, "going away")
            return False
        if reason is not None:
            msg = {"type": "refused", "id": link.take_id(), "re": hello["id"],
                   "reason": reason, "message": wording(reason)}
            self.event("refused", link, reason=reason, message=wording(reason))
            if customer is not None and system is not None and \
                    isinstance(customer, str) and isinstance(system, str):
                self.agent(customer, system).refused = reason
            try:
                await self.send(link, msg)
            except websockets.exceptions.ConnectionClosed:
                return False
            await self.close_link(link, 4001, reason)
            return False

        a = self.agent(customer, system)
        old = a.link
        link.session = secrets.token_hex(8)
        link.up = True
        a.link = link
        a.welcomes += 1
        a.refused = None
        a.down_since = None
        link.record = rec
        msg = {"type": "welcome", "id": link.take_id(), "re": hello["id"],
               "session": link.session, "max_streams": self.max_streams,
               "window": WINDOW}
        extra = rec.get("welcome_extra")
        if isinstance(extra, dict):
            msg.update(extra)
        self.event("welcome", link, session=link.session, peer=link.peer)
        if old is not None and old is not link and not old.closed:
            self.event("replace", old, by_link=link.num)
            asyncio.ensure_future(self.replace(old))
        await self.send(link, msg)
        self.wake_scheduler()     # scheduled jobs that waited for a link
        if rec.get("after_welcome") == "drop":
            # A COM that accepts and drops at once (PROTOCOL.md section 4).
            await self.close_link(link, 1001, "going away")
            return False
        return True

    async def replace(self, old):
        await self.close_link(old, 4003, "replaced")

    async def on_binary(self, link, data):
        if len(data) < 5:
            self.event("message", link, binary=True, size=len(data),
                       error="binary frame shorter than 5 bytes")
            await self.close_link(link, 4002, "short binary frame")
            return
        sid = int.from_bytes(data[:4], "big")
        n = len(data) - 4
        t = link.streams.get(sid)
        if t is not None:
            if t.state == "opening":
                self.violation(link, sid, "data before stream.accept", size=n)
                self.stream_end(t, "comsim", "unknown_stream",
                                "data before stream.accept")
            elif n > t.recv_allow:
                self.violation(link, sid, "%d bytes beyond credit (allowance %d)"
                               % (n, t.recv_allow), size=n)
                self.stream_end(t, "comsim", "flow", "data beyond credit")
            else:
                if n > FRAME_DATA and not t.oversize_logged:
                    # PROTOCOL.md 3.2: the agent sends frames of <= 16384
                    # bytes.  Logged once per stream; the data is delivered.
                    t.oversize_logged = True
                    self.violation(link, sid, "data frame of %d bytes, more than "
                                   "the agent's %d (PROTOCOL.md 3.2)" % (n, FRAME_DATA),
                                   size=n)
                t.agent_data(memoryview(data)[4:])
            return
        t = link.closed_streams.get(sid)
        if t is not None and t.closed_by != "agent":
            # Sent before the agent saw our stream.close: fine within credit.
            if n <= t.recv_allow:
                t.recv_allow -= n
                t.late += n
            elif not t.violated:
                t.violated = True
                self.violation(link, sid, "%d bytes beyond credit after "
                               "stream.close (allowance %d)" % (n, t.recv_allow),
                               size=n)
            return
        self.event("message", link, binary=True, stream=sid, size=n)
        self.violation(link, sid, "data for a stream that is not open"
                       if t is None else "data after the agent closed the stream",
                       size=n)
        self.answer_unknown(link, sid)

    def violation(self, link, sid, error, **kw):
        link.violations += 1
        k = link.violations
        if k <= 100 or k % 1000 == 0:
            self.event("stream_violation", link, stream=sid, error=error,
                       count=k, **kw)

    def answer_unknown(self, link, sid):
        """One stream.close unknown_stream per id (PROTOCOL.md section 3)."""
        if sid in link.unknown_answered:
            return
        link.unknown_answered[sid] = True
        while len(link.unknown_answered) > 4096:
            link.unknown_answered.popitem(last=False)
        self.post(link, {"type": "stream.close", "stream": sid,
                         "reason": "unknown_stream", "message": ""})

    # -- streams comsim opened
    def stream_end(self, t, by, reason, message="", send=None, abort_after=10.0):
        """End stream t: by "client" (EOF), "agent" (its stream.close),
        "link" (link lost) or "comsim" (timeout, violation, admin)."""
        if isinstance(t, Upload):
            return self.upload_end(t, by, reason, message, send)
        if isinstance(t, Download):
            return self.download_end(t, by, reason, message, send)
        if t.state == "closed":
            return
        was_open = t.state == "open"
        t.state = "closed"
        t.closed_by = by
        t.close_reason = reason
        t.out_buf = bytearray()
        t.link.retire(t)
        if send is None:
            send = by not in ("agent", "link")
        if send:
            self.post(t.link, {"type": "stream.close", "stream": t.sid,
                               "reason": reason, "message": message})
        t.wake.set()
        if not t.opened.done():
            t.opened.set_result(("end", by, reason, message))
        if was_open:
            if t.conn is not None:
                t.conn.close(abort_after)
            self.event("tunnel_close", t.link, customer=t.info["customer"],
                       system=t.info["system"], via=t.info["via"],
                       host=t.info["host"], port=t.info["port"], stream=t.sid,
                       user=t.info["user"], by=by, reason=reason, message=message,
                       bytes_to_agent=t.to_agent, bytes_from_agent=t.from_agent,
                       duration=round(time.monotonic() - (t.t_open or t.t0), 3),
                       admin=t.admin)

    def tunnel_accepted(self, t, msg):
        """stream.accept: answer the client now, before any data frame that
        follows the accept on the link, and start relaying."""
        t.state = "open"
        t.t_open = time.monotonic()
        if t.conn is not None:
            t.conn.respond(200, close=False)
            t.conn.phase = "tunnel"
        info = t.info
        self.event("tunnel_open", t.link, customer=info["customer"],
                   system=info["system"], via=info["via"], host=info["host"],
                   port=info["port"], stream=t.sid, user=info["user"],
                   client=info["client"], admin=t.admin)
        t.sender = asyncio.ensure_future(t.pump())
        self.bg.add(t.sender)
        t.sender.add_done_callback(self.bg.discard)
        t.opened.set_result(("accept", msg))

    def stream_abandon(self, t):
        """The proxy client went away before the agent answered."""
        self.stream_end(t, "client", "done", "proxy client went away")

    def link_lost(self, link):
        for t in list(link.streams.values()):
            self.stream_end(t, "link", "link_lost",
                            "the system's link to COM was lost", abort_after=2.0)

    async def send_scheduled(self, link, jid, j):
        msg = {"type": "job", "job": jid, "op": j["op"], "args": j["args"]}
        if j["op"] is None:
            del msg["op"]
        try:
            await self.send(link, msg)
            return
        except websockets.exceptions.ConnectionClosed:
            pass
        except Exception as e:
            self.event("internal_error", link, error="sending job %s: %r" % (jid, e))
        j.update(sent=False, sent_at=None)   # due again on the next link
        self.save_jobs()

    # -- uploads (PROTOCOL.md section 3.3) and backups
    def today(self):
        """The simulated date (--today, POST /today), else the real one."""
        return self.today_fixed or datetime.date.today()

    # -- jobs: what COM sent, scheduled, and heard back (history)
    @staticmethod
    def new_job(op, args, created=None, **kw):
        """A job record: `sent` False while scheduled (`at`), paused or
        stopped (`hold`); `states` every job.state the agent sent."""
        j = {"op": op, "args": args, "release": None,
             "created": time.time() if created is None else created,
             "at": None, "sent": False, "sent_at": None, "hold": None,
             "states": []}
        j.update(kw)
        return j

    def load_jobs(self):
        try:
            with open(self.jobs_path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            raise ValueError("%s: %s" % (self.jobs_path, e))
        for j in data if isinstance(data, list) else []:
            if isinstance(j, dict) and all(isinstance(j.get(k), str)
                                           for k in ("customer", "system", "job")):
                # Records from before the history (op and args only) were sent.
                rec = self.new_job(j.get("op"), j.get("args"), j.get("created"),
                                   sent=bool(j.get("sent", True)))
                for k in ("release", "at", "sent_at", "hold", "states"):
                    if j.get(k) is not None:
                        rec[k] = j[k]
                self.jobs.setdefault((j["customer"], j["system"]),
                                     collections.OrderedDict())[j["job"]] = rec

    def save_jobs(self):
        out = []
        for (c, s), jobs in self.jobs.items():
            out += [dict(j, customer=c, system=s, job=jid) for jid, j in jobs.items()]
        try:
            write_json_atomic(self.jobs_path, out)
        except OSError as e:
            self.event("internal_error", error="writing %s: %r" % (self.jobs_path, e))

    def keep_job(self, customer, system, jid, j):
        """Put a job record last (newest) in its system's table."""
        jobs = self.jobs.setdefault((customer, system), collections.OrderedDict())
        jobs.pop(jid, None)
        jobs[jid] = j
        while len(jobs) > JOBS_KEPT:
            jobs.popitem(last=False)

    def record_job(self, link, msg, info=None):
        """A `job` sent to a system: uploads and downloads may name it
        (PROTOCOL.md 3.3, 3.4).  A job id sent again keeps its history."""
        jid = msg.get("job")
        if not isinstance(jid, str) or link.customer is None:
            return
        c, s = link.customer, link.system
        j = self.jobs.get((c, s), {}).get(jid)
        if j is None:
            j = self.new_job(msg.get("op"), msg.get("args"))
        j.update(op=msg.get("op"), args=msg.get("args"), sent=True,
                 sent_at=time.time(), hold=None)
        if info:
            j.update(info)
        self.keep_job(c, s, jid, j)
        self.save_jobs()
        self.event("job_sent", link, job=jid, op=msg.get("op"),
                   scheduled=j.get("at") is not None, at=j.get("at"),
                   release=j.get("release"))

    def sent_job(self, customer, system, jid):
        """The record of a job sent to a system (None if never sent)."""
        j = self.jobs.get((customer, system), {}).get(jid)
        return j if j is not None and j.get("sent") else None

    @staticmethod
    def job_status(j):
        """COM's word for a job: scheduled, paused, stopped, in progress,
        completed, failed, rejected."""
        if not j.get("sent"):
            return j.get("hold") or "scheduled"
        for st in reversed(j.get("states") or []):
            if st.get("state") in JOB_STATUS:
                return JOB_STATUS[st["state"]]
        return "in progress"

    @staticmethod
    def job_release(j):
        if j.get("release"):
            return j["release"]
        args = j.get("args")
        text = args.get("manifest") if isinstance(args, dict) else None
        try:
            r = json.loads(text).get("release") if isinstance(text, str) else None
        except (ValueError, AttributeError):
            r = None
        return r if isinstance(r, str) else None

    def job_json(self, customer, system, jid, j):
        args = j.get("args")
        release = self.job_release(j)
        if isinstance(args, dict):
            args = {k: v for k, v in args.items() if k != "manifest"}
            if release:
                args.setdefault("release", release)
        states = j.get("states") or []
        last = states[-1] if states else {}
        return {"customer": customer, "system": system, "job": jid,
                "op": j.get("op"), "args": args, "release": release,
                "at": j.get("at"), "status": self.job_status(j),
                "created": j.get("created"), "sent_at": j.get("sent_at"),
                "states": states, "reason": last.get("reason"),
                "message": last.get("message")}

    def job_state(self, link, msg):
        """A job.state from the agent goes into the job's history."""
        jid = msg.get("job")
        j = self.jobs.get((link.customer, link.system), {}).get(jid) \
            if isinstance(jid, str) else None
        if j is None:
            return
        before = self.job_status(j)
        states = j.setdefault("states", [])
        states.append({"state": msg.get("state"), "progress": msg.get("progress"),
                       "phase": msg.get("phase"), "reason": msg.get("reason"),
                       "message": msg.get("message"), "at": time.time()})
        if len(states) > JOB_STATES_KEPT:
            # drop the oldest progress report, keep the transitions
            i = next((k for k, x in enumerate(states[:-1])
                      if x.get("state") == "running"), 0)
            del states[i]
        after = self.job_status(j)
        if after != before:
            self.event("job_status", link, job=jid, op=j.get("op"), status=after,
                       state=msg.get("state"), reason=msg.get("reason"))
        if msg.get("state") != "running":
            self.save_jobs()

    def find_job(self, body):
        """((customer, system), id, record) of the job a pause/resume/stop
        names; (status, error) when there is none or it is ambiguous."""
        jid = body.get("job")
        if not isinstance(jid, str):
            return None, (400, {"error": "job (a job id) required"})
        c, s = body.get("customer"), body.get("system")
        hits = [(k, jobs[jid]) for k, jobs in self.jobs.items()
                if jid in jobs and (c is None or k[0] == c)
                and (s is None or k[1] == s)]
        if not hits:
            return None, (404, {"error": "no such job: %s" % jid})
        if len(hits) > 1:
            return None, (409, {"error": "job %s exists for %d systems: give "
                                         "customer and system" % (jid, len(hits))})
        (key, j), = hits
        return (key, jid, j), None

    def wake_scheduler(self):
        if self.sched_wake is not None:
            self.sched_wake.set()

    async def scheduler(self):
        """Send scheduled jobs when due, over the system's link; a job due
        while its system has no link goes out after the next welcome."""
        while True:
            try:
                nxt = self.schedule_due()
            except Exception as e:
                self.event("internal_error", error="scheduler: %r" % e)
                nxt = time.time() + 1.0
            timeout = None if nxt is None else max(0.0, nxt - time.time())
            try:
                await asyncio.wait_for(self.sched_wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    def schedule_due(self):
        """Start sending the jobs that are due; returns when the next one is."""
        self.sched_wake.clear()
        now = time.time()
        due, nxt = [], None
        for (c, s), jobs in self.jobs.items():
            for jid, j in jobs.items():
                if j.get("sent") or j.get("hold") or j.get("at") is None:
                    continue
                if j["at"] <= now:
                    due.append((c, s, jid, j))
                elif nxt is None or j["at"] < nxt:
                    nxt = j["at"]
        for c, s, jid, j in due:
            link = self.current_link(c, s)
            if link is None or not link.up or j.get("sent") or j.get("hold"):
                continue
            j["sent"] = True          # claimed: no pause from here on
            task = asyncio.ensure_future(self.send_scheduled(link, jid, j))
            self.bg.add(task)
            task.add_done_callback(self.bg.discard)
        return nxt

    def backup_dir(self, customer, system):
        return os.path.join(self.backups_dir, dir_name(customer), dir_name(system))

    def system_dirs(self, root=None):
        """(customer, system, directory) of every system with backups (with
        logs: root = self.logs_dir)."""
        root = root or self.backups_dir
        out = []
        try:
            cs = sorted(os.listdir(root))
        except FileNotFoundError:
            return out
        for c in cs:
            cd = os.path.join(root, c)
            if not os.path.isdir(cd):
                continue
            for s in sorted(os.listdir(cd)):
                if os.path.isdir(os.path.join(cd, s)):
                    out.append((undir_name(c), undir_name(s), os.path.join(cd, s)))
        return out

    @staticmethod
    def read_backups(d):
        """The stored backups of one system directory (their sidecars), oldest
        first."""
        out = []
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return out
        for fn in names:
            if not fn.endswith(SIDECAR):
                continue
            name = fn[:-len(SIDECAR)]
            try:
                with open(os.path.join(d, fn)) as f:
                    meta = json.load(f)
            except (OSError, ValueError):
                continue
            if not isinstance(meta, dict) or meta.get("name") != name or \
                    not os.path.isfile(os.path.join(d, name)):
                continue
            out.append(meta)
        out.sort(key=lambda m: (str(m.get("stored_at")), m.get("seq") or 0, m["name"]))
        return out

    @staticmethod
    def backup_json(m):
        return {k: m.get(k) for k in ("name", "size", "sha256", "kind", "job", "op",
                                      "stored_at", "seq")}

    def partials(self, customer, system):
        """Partial uploads held for a system (GET /uploads): backups', then
        logs'."""
        out = []
        for content, d in (("backup", self.backup_dir(customer, system)),
                           ("log", self.log_dir(customer, system))):
            out += self.partials_in(customer, system, content, d)
        return out

    def partials_in(self, customer, system, content, d):
        out = []
        try:
            names = sorted(os.listdir(d))
        except FileNotFoundError:
            return out
        for fn in names:
            if not (fn.endswith(".part") and PART_NAME_RE.fullmatch(fn)):
                continue
            key = fn[:-5]
            meta = {}
            try:
                with open(os.path.join(d, fn + ".json")) as f:
                    meta = json.load(f)
            except (OSError, ValueError):
                pass
            try:
                held = os.path.getsize(os.path.join(d, fn))
            except OSError:
                continue
            u = self.uploads.get((customer, system, key))
            out.append({"key": key, "job": meta.get("job"), "name": meta.get("name"),
                        "size": meta.get("size"), "sha256": meta.get("sha256"),
                        "content": content, "held": u.held if u else held,
                        "active": bool(u), "stream": u.sid if u else None})
        return out

    def apply_retention(self, customer, system, d=None):
        """Delete the backups of one system that COM's retention rule
        (retention.py) no longer keeps.  Only backups count: uploads of a
        `backup` job and the agent's own (job ""); other uploads (say, of a
        fetch_logs job) are never expired.  Returns what was deleted."""
        d = d or self.backup_dir(customer, system)
        today = self.today()
        subject = [m for m in self.read_backups(d)
                   if (m.get("job") == "" or m.get("op") == "backup")
                   and m.get("kind") in retention.KINDS]
        try:
            keep = retention.keep(subject, today)
        except (TypeError, ValueError) as e:
            self.event("internal_error", customer=customer, system=system,
                       error="retention: %s" % e)
            return []
        gone = []
        for m in subject:
            if m["name"] in keep:
                continue
            for fn in (m["name"] + SIDECAR, m["name"]):
                try:
                    os.unlink(os.path.join(d, fn))
                except FileNotFoundError:
                    pass
            gone.append(self.backup_json(m))
            self.event("backup_expired", customer=customer, system=system,
                       name=m["name"], backup_kind=m["kind"], job=m.get("job"),
                       stored_at=m.get("stored_at"), today=today.isoformat())
        return [dict(g, customer=customer, system=system) for g in gone]

    def apply_retention_all(self):
        out = []
        for c, s, d in self.system_dirs():
            out += self.apply_retention(c, s, d)
        return out

    # -- logs: uploads with "content":"log" (PROTOCOL.md 3.3)
    def log_dir(self, customer, system):
        return os.path.join(self.logs_dir, dir_name(customer), dir_name(system))

    @classmethod
    def read_log(cls, d, name):
        """The sidecar of one stored log, None if there is no such log:
        a stored file's sidecar (as for backups) that names its day."""
        meta = cls.read_backup(d, name)
        if meta is None or not isinstance(meta.get("day"), str):
            return None
        return meta

    def read_logs(self, d):
        """The stored logs of one system directory (their sidecars), by day
        then name."""
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return []
        out = [self.read_log(d, fn[:-len(SIDECAR)]) for fn in names
               if fn.endswith(SIDECAR)]
        out = [m for m in out if m is not None]
        out.sort(key=lambda m: (m["day"], m["name"]))
        return out

    @staticmethod
    def log_json(m):
        return {k: m.get(k) for k in ("name", "size", "sha256", "job", "day",
                                      "stored_at")}

    def delete_log(self, d, name):
        for fn in (name + SIDECAR, name):
            try:
                os.unlink(os.path.join(d, fn))
            except FileNotFoundError:
                pass

    def apply_log_retention(self, customer, system, d=None):
        """Delete the logs of one system whose day is more than
        log_retention_days before today() (logs of later days stay, also
        those dated after today).  Returns what was deleted."""
        d = d or self.log_dir(customer, system)
        today = self.today()
        gone = []
        for m in self.read_logs(d):
            try:
                age = (today - datetime.date.fromisoformat(m["day"])).days
            except ValueError:
                continue
            if age <= self.log_retention_days:
                continue
            self.delete_log(d, m["name"])
            gone.append(dict(self.log_json(m), customer=customer, system=system))
            self.event("log_expired", customer=customer, system=system,
                       name=m["name"], day=m["day"], job=m.get("job"),
                       size=m.get("size"), sha256=m.get("sha256"),
                       today=today.isoformat(), days=self.log_retention_days)
        return gone

    def apply_log_retention_all(self):
        out = []
        for c, s, d in self.system_dirs(self.logs_dir):
            out += self.apply_log_retention(c, s, d)
        return out

    def store_log(self, link, u):
        """A verified log upload: store it (or keep the identical one held
        already); returns the event fields of what happened."""
        info, d = u.info, u.dir
        name = info["name"]
        old = self.read_log(d, name)
        meta = {"name": name, "size": info["size"], "sha256": info["sha256"],
                "job": info["job"], "day": info["day"],
                "stored_at": self.today().isoformat()}
        if old is not None and old.get("sha256") == info["sha256"]:
            os.unlink(u.part)
            self.event("log_duplicate", link, name=name, size=info["size"],
                       sha256=info["sha256"], job=info["job"], day=info["day"],
                       stored_job=old.get("job"), stored_at=old.get("stored_at"))
            return old
        os.replace(u.part, os.path.join(d, name))
        write_json_atomic(os.path.join(d, name + SIDECAR), meta)
        if old is not None:
            self.event("log_replaced", link, name=name, size=info["size"],
                       sha256=info["sha256"], job=info["job"], day=info["day"],
                       old_size=old.get("size"), old_sha256=old.get("sha256"),
                       old_job=old.get("job"), old_stored_at=old.get("stored_at"))
        self.event("log_stored", link, name=name, size=info["size"],
                   sha256=info["sha256"], job=info["job"], day=info["day"],
                   stored_at=meta["stored_at"])
        return meta

    async def on_agent_open(self, link, msg):
        """stream.open from the agent: kinds upload (3.3) and download (3.4)."""
        mid, sid, kind = msg["id"], msg.get("stream"), msg.get("kind")
        if not _is_int(sid) or not 1 <= sid <= 0xFFFFFFFF:
            await self.reply(link, {"type": "error", "re": mid, "code": "malformed",
                                    "message": "stream.open needs stream, an "
                                               "integer 1..2^32-1"})
            return
        is_upload = kind == "upload"
        bulk = kind in ("upload", "download")
        ctx = {}
        for k in ("job", "name", "size", "offset", "content", "level"):
            v = msg.get(k)
            if isinstance(v, (str, int)) and not isinstance(v, bool):
                ctx[k] = v

        async def refuse(message, reason="refused"):
            if bulk:
                self.event(kind + "_refused", link, stream=sid, reason=reason,
                           message=message, **ctx)
            await self.reply(link, {"type": "stream.close", "re": mid, "stream": sid,
                                    "reason": reason, "message": message})

        if sid % 2 == 0:
            self.violation(link, sid, "stream.open with an even id from the agent")
            return await refuse("stream %d is even: the agent opens odd stream ids" % sid)
        if sid in link.streams:
            # A stream.close for that id would end the open one as well.
            self.violation(link, sid, "stream.open for an open stream id")
            if bulk:
                self.event(kind + "_refused", link, stream=sid, reason="refused",
                           message="stream %d is already open" % sid, **ctx)
            self.stream_end(link.streams[sid], "comsim", "refused",
                            "stream %d is already open" % sid)
            return
        if sid in link.agent_ids or sid in link.closed_streams:
            self.violation(link, sid, "stream.open reuses an id")
            return await refuse("stream %d was used before on this link "
                                "(ids are never reused)" % sid)
        link.agent_ids.add(sid)
        if len(link.streams) >= self.max_streams:
            return await refuse("too many streams: %d open" % len(link.streams),
                                "limit")
        if kind == "download":
            return await self.open_download(link, msg, refuse)
        if not is_upload:
            return await refuse("kind %s: the agent may open only upload or "
                                "download streams"
                                % (json.dumps(kind) if kind is not None else "missing"))
        job, name, size, sha = (msg.get(k) for k in ("job", "name", "size", "sha256"))
        if "job" not in msg:
            return await refuse('job missing ("" for the agent\'s own uploads)')
        if not isinstance(job, str):
            return await refuse("job must be a string")
        content = msg.get("content", "backup")
        if content not in CONTENTS:
            return await refuse("content must be backup or log")
        why = check_upload_name(name)
        if why:
            return await refuse(why)
        day = None
        if content == "log":
            day, why = check_log_name(name, link.system)
            if why:
                return await refuse(why)
        if not _is_int(size) or size < 0:
            return await refuse("size must be an integer >= 0")
        if size > self.upload_max:
            return await refuse("size %d exceeds the limit of %d bytes"
                                % (size, self.upload_max))
        if not isinstance(sha, str) or not SHA256_RE.fullmatch(sha):
            return await refuse("sha256 must be 64 lower-case hex digits")
        c, s = link.customer, link.system
        op = ""
        kind_ = "automatic"
        if job:
            j = self.sent_job(c, s, job)
            if j is None:
                return await refuse("no such job: %s" % job)
            op = j.get("op") if isinstance(j.get("op"), str) else ""
            args = j.get("args") if isinstance(j.get("args"), dict) else {}
            kind_ = args.get("kind") if args.get("kind") in retention.KINDS else "manual"
            if content == "log" and op != "fetch_logs":
                return await refuse('job %s (%s) does not upload logs: a log '
                                    'belongs to a fetch_logs job or to job ""'
                                    % (job, op or "no op"))
        if content == "log":
            kind_ = None          # not a backup: no backup kind
        key = upload_key(job, name, size, sha, content)
        other = self.uploads.get((c, s, key))
        if other is not None and other.state == "open":
            if other.link is link:
                return await refuse("%s is already being uploaded on stream %d"
                                    % (name, other.sid))
            # An older link of this system (being replaced): the new one wins.
            self.upload_end(other, "link", "replaced",
                            "resumed on link %d" % link.num, send=False)
        d = self.log_dir(c, s) if content == "log" else self.backup_dir(c, s)
        info = {"job": job, "name": name, "size": size, "sha256": sha,
                "op": op, "kind": kind_, "content": content,
                "day": day.isoformat() if day else None}
        u = Upload(self, link, sid, info, d, key)
        os.makedirs(d, exist_ok=True)
        held = os.path.getsize(u.part) if os.path.exists(u.part) else 0
        if held > size:
            self.event("upload_discarded", link, stream=sid, name=name, held=held,
                       size=size, error="partial file longer than the upload")
            held = 0
        u.f = open(u.part, "r+b" if os.path.exists(u.part) else "wb")
        u.f.truncate(held)
        u.f.seek(held)
        u.offset = u.held = u.total = held
        link.streams[sid] = u
        self.uploads[(c, s, key)] = u
        if held:
            # Hash what is held in a thread (a 2 GiB file takes seconds).  No
            # data arrives meanwhile: this link's reader waits for us.
            h = await asyncio.to_thread(hash_file, u.part, held)
            if u.state != "open":
                return            # a newer link of the system took it over
            u.hasher = h
        else:
            u.hasher = hashlib.sha256()
            write_json_atomic(u.part + ".json", {
                "job": job, "name": name, "size": size, "sha256": sha,
                "content": content, "first_open": time.time()})
        self.event("upload_open", link, stream=sid, job=job, name=name, size=size,
                   sha256=sha, offset=held, backup_kind=kind_, op=op,
                   content=content)
        await self.reply(link, {"type": "stream.accept", "re": mid, "stream": sid,
                                "window": u.window, "offset": held})

    async def open_download(self, link, msg, refuse):
        """stream.open kind download (PROTOCOL.md 3.4): find the file by the
        job's op (or, "content":"custom", by level and name: 3.5), answer
        stream.accept with size, sha256 and offset, and start sending."""
        mid, sid = msg["id"], msg["stream"]
        job, name, offset = msg.get("job"), msg.get("name"), msg.get("offset")
        content = msg.get("content")
        custom = content == "custom"
        if content is not None and not custom:
            return await refuse('content %s: a download\'s content is "custom" '
                                'or absent' % json.dumps(content))
        if "job" not in msg:
            return await refuse("job missing (the restore or transfer job)"
                                if not custom else
                                'job missing (the refresh_custom job, or "")')
        if not isinstance(job, str):
            return await refuse("job must be a string")
        if custom:
            level = msg.get("level")
            if level not in CUSTOM_LEVELS:
                return await refuse("level must be one of %s, not %s" % (
                    ", ".join(CUSTOM_LEVELS), json.dumps(level)))
            if name not in CUSTOM_NAMES:
                return await refuse("name must be one of %s, not %s" % (
                    ", ".join(CUSTOM_NAMES), json.dumps(name)))
        elif not job:
            return await refuse('job "": a download belongs to a restore, '
                                'transfer or transfer_upgrade job')
        why = None if custom else check_upload_name(name)
        if why:
            return await refuse(why)
        if "offset" not in msg:
            return await refuse("offset missing (0 for a new download)")
        if not _is_int(offset) or offset < 0:
            return await refuse("offset must be an integer >= 0")
        window = msg.get("window", WINDOW)
        if not _is_int(window) or window < 0:
            return await refuse("window must be an integer 0..2^31-1")
        if window > CREDIT_MAX:
            self.violation(link, sid, "window %d above 2^31-1 in stream.open" % window)
            return await refuse("window above 2^31-1", "flow")
        c, s = link.customer, link.system
        j = self.sent_job(c, s, job) if job else None
        if job and j is None:
            return await refuse("no such job: %s" % job)
        op = j.get("op") if j else ""
        args = j.get("args") if j and isinstance(j.get("args"), dict) else {}
        release = None
        extra = {}                # event fields of a custom download
        if custom:
            source, extra = "custom", {"level": level}
            if job and op != "refresh_custom":
                return await refuse('job %s (%s) does not fetch custom files: a '
                                    'custom file belongs to a refresh_custom job '
                                    'or to job ""'
                                    % (job, op if isinstance(op, str) else "no op"))
            rec = self.customers.get((c, s), link.record)
            if level == "reseller" and not rec.get("reseller"):
                return await refuse("no reseller for %s/%s: it has no reseller "
                                    "level" % (c, s))
            folder, err = self.custom_folder({"level": level, "customer": c,
                                              "system": s,
                                              "reseller": rec.get("reseller")})
            if err:
                return await refuse("no %s folder for %s/%s: %s"
                                    % (level, c, s, err))
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                return await refuse("no %s at the %s level" % (name, level))
            sha = None            # hashed below, from the file opened
        elif op == "restore":
            source = "backup"
            path = os.path.join(self.backup_dir(c, s), name)
            meta = self.read_backup(self.backup_dir(c, s), name)
            if meta is None:
                return await refuse("no such backup: %s" % name)
            if args.get("backup") != name:
                return await refuse("job %s restores %s, not %s"
                                    % (job, args.get("backup"), name))
            sha = meta.get("sha256")
        elif op in ("transfer", "transfer_upgrade"):
            source = "library"
            try:
                man = json.loads(args.get("manifest"))
                names = [x.get("name") for x in man.get("components")]
            except (TypeError, ValueError, AttributeError):
                return await refuse("job %s has no readable manifest" % job)
            if name not in names:
                return await refuse("%s is not a component of job %s's manifest"
                                    % (name, job))
            release = self.job_release(j)
            hit = self.library.component(release, name) if release else None
            if hit is None:
                return await refuse("%s of release %s is not in COM's software "
                                    "library" % (name, release))
            path, sha = hit[0], hit[1]["sha256"]
        else:
            return await refuse("job %s (%s) has nothing to download"
                                % (job, op if isinstance(op, str) else "no op"))
        try:
            f = open(path, "rb")
        except OSError as e:
            if custom and isinstance(e, FileNotFoundError):   # deleted meanwhile
                return await refuse("no %s at the %s level" % (name, level))
            return await refuse("%s cannot be read: %s" % (name, e.strerror))
        size = os.fstat(f.fileno()).st_size
        if sha is None:
            # a custom file (<= 10 MiB) is hashed as it is served: the one
            # opened, even if the admin API replaces it meanwhile
            sha = hashlib.sha256(f.read()).hexdigest()
        asked = offset
        if offset > size:
            offset = 0
        f.seek(offset)
        info = dict({"job": job, "op": op, "name": name, "source": source,
                     "release": release}, **extra)
        d = Download(self, link, sid, info, f, size, sha, offset, window)
        link.streams[sid] = d
        self.event("download_open", link, stream=sid, job=job, op=op, name=name,
                   source=source, release=release, size=size, sha256=sha,
                   offset=offset, asked_offset=asked, window=window, **extra)
        if custom:
            self.event("custom_download", link, stream=sid, level=level, name=name,
                       offset=offset, asked_offset=asked, job=job, size=size,
                       sha256=sha)
        await self.reply(link, {"type": "stream.accept", "re": mid, "stream": sid,
                                "window": d.window, "size": size, "sha256": sha,
                                "offset": offset})
        if d.state == "open":
            d.sender = asyncio.ensure_future(d.pump())
            self.bg.add(d.sender)
            d.sender.add_done_callback(self.bg.discard)

    def download_done(self, d):
        """The last byte is out: the stream ends (pump() sends the close)."""
        d.state = "closed"
        d.closed_by = "comsim"
        d.close_reason = "done"
        d.close_file()
        d.link.retire(d)
        info = d.info
        self.event("download_done", d.link, stream=d.sid, job=info["job"],
                   op=info["op"], name=info["name"], source=info["source"],
                   size=d.size, sha256=d.sha256, offset=d.offset, sent=d.sent,
                   duration=round(time.monotonic() - d.t0, 3))

    def download_end(self, d, by, reason, message="", send=None):
        """A download ends before its last byte: the agent's stream.close,
        link lost, a violation, the admin API."""
        if d.state == "closed":
            return
        d.state = "closed"
        d.closed_by = by
        d.close_reason = reason
        d.close_file()
        d.link.retire(d)
        d.wake.set()
        if send is None:
            send = by not in ("agent", "link")
        if send:
            self.post(d.link, {"type": "stream.close", "stream": d.sid,
                               "reason": reason, "message": message})
        info = d.info
        self.event("download_interrupted", d.link, stream=d.sid, job=info["job"],
                   op=info["op"], name=info["name"], size=d.size, offset=d.offset,
                   pos=d.pos, sent=d.sent, by=by, reason=reason, message=message)

    def download_drop(self, d):
        """POST /download_fault drop_after: the byte count is reached."""
        self.event("download_fault", d.link, action="drop", stream=d.sid,
                   name=d.info["name"], pos=d.pos, sent=d.sent)
        task = asyncio.ensure_future(self.close_link(d.link, 1001, "dropped"))
        self.bg.add(task)
        task.add_done_callback(self.bg.discard)

    @staticmethod
    def read_backup(d, name):
        """The sidecar of one stored backup, None if there is no such backup."""
        if check_upload_name(name) is not None:
            return None
        try:
            with open(os.path.join(d, name + SIDECAR)) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("name") != name or \
                not os.path.isfile(os.path.join(d, name)):
            return None
        return meta

    async def on_stream_end(self, link, msg):
        """stream.end: the agent has sent the whole file; check and store it."""
        sid = msg.get("stream")
        u = link.streams.get(sid) if _is_int(sid) else None
        if u is None:
            if _is_int(sid) and sid in link.closed_streams:
                return            # crossed our stream.close: ignore
            self.violation(link, sid, "stream.end for a stream that is not open")
            self.answer_unknown(link, sid)
            return
        if isinstance(u, Download):
            self.violation(link, sid, "stream.end on a download (COM ends it)")
            return
        if not isinstance(u, Upload):
            self.violation(link, sid, "stream.end on a stream comsim opened")
            return
        if u.dropping:
            return                # the link is being dropped (upload fault)
        u.state = "closed"
        u.closed_by = "agent"
        u.close_reason = "end"
        u.close_file()
        link.retire(u)
        c, s, info = link.customer, link.system, u.info
        if self.uploads.get((c, s, u.key)) is u:
            del self.uploads[(c, s, u.key)]
        got = u.hasher.hexdigest()
        fault = self.upload_faults.get((c, s)) or {}
        forced = bool(fault.pop("corrupt", False))
        if not fault:
            self.upload_faults.pop((c, s), None)
        if u.total != info["size"]:
            problem = "size %d != %d" % (u.total, info["size"])
        elif got != info["sha256"] or forced:
            problem = "sha256 mismatch"
        else:
            problem = None
        common = dict(stream=sid, job=info["job"], name=info["name"],
                      size=info["size"], sha256=info["sha256"],
                      content=info["content"])
        if problem:
            for fn in (u.part, u.part + ".json"):
                try:
                    os.unlink(fn)
                except FileNotFoundError:
                    pass
            self.event("upload_corrupt", link, message=problem, got_size=u.total,
                       got_sha256=got if u.total == info["size"] else None,
                       forced=forced, **common)
            await self.reply(link, {"type": "stream.close", "re": msg["id"],
                                    "stream": sid, "reason": "corrupt",
                                    "message": problem})
            return
        if info["content"] == "log":
            meta = self.store_log(link, u)
            try:
                os.unlink(u.part + ".json")
            except FileNotFoundError:
                pass
            self.event("upload_done", link, op=info["op"], day=info["day"],
                       stored_at=meta.get("stored_at"), offset=u.offset,
                       received=u.received,
                       duration=round(time.monotonic() - u.t0, 3), **common)
            await self.reply(link, {"type": "stream.close", "re": msg["id"],
                                    "stream": sid, "reason": "done", "message": ""})
            self.apply_log_retention(c, s, u.dir)
            return
        d = u.dir
        seq = max([m.get("seq") or 0 for m in self.read_backups(d)
                   if _is_int(m.get("seq"))] + [0]) + 1
        meta = {"name": info["name"], "job": info["job"], "op": info["op"],
                "kind": info["kind"], "size": info["size"], "sha256": info["sha256"],
                "stored_at": self.today().isoformat(), "seq": seq}
        os.replace(u.part, os.path.join(d, info["name"]))
        write_json_atomic(os.path.join(d, info["name"] + SIDECAR), meta)
        try:
            os.unlink(u.part + ".json")
        except FileNotFoundError:
            pass
        self.event("upload_done", link, backup_kind=info["kind"], op=info["op"],
                   stored_at=meta["stored_at"], offset=u.offset, received=u.received,
                   duration=round(time.monotonic() - u.t0, 3), **common)
        await self.reply(link, {"type": "stream.close", "re": msg["id"], "stream": sid,
                                "reason": "done", "message": ""})
        if info["job"] == "" or info["op"] == "backup":
            self.apply_retention(c, s, d)

    def upload_end(self, u, by, reason, message="", send=None):
        """An upload ends before it was checked: the agent's stream.close,
        link lost, a violation, the admin API.  The partial file stays for a
        resume."""
        if u.state == "closed":
            return
        u.state = "closed"
        u.closed_by = by
        u.close_reason = reason
        u.close_file()
        link = u.link
        link.retire(u)
        k = (link.customer, link.system, u.key)
        if self.uploads.get(k) is u:
            del self.uploads[k]
        if send is None:
            send = by not in ("agent", "link")
        if send:
            self.post(link, {"type": "stream.close", "stream": u.sid,
                             "reason": reason, "message": message})
        info = u.info
        self.event("upload_interrupted", link, stream=u.sid, job=info["job"],
                   name=info["name"], size=info["size"], content=info["content"],
                   held=u.held,
                   received=u.received, by=by, reason=reason, message=message)

    def upload_drop(self, u):
        """POST /upload_fault drop_after: the byte count is reached."""
        self.event("upload_fault", u.link, action="drop", stream=u.sid,
                   name=u.info["name"], held=u.held)
        task = asyncio.ensure_future(self.close_link(u.link, 1001, "dropped"))
        self.bg.add(task)
        task.add_done_callback(self.bg.discard)

    def on_stream_message(self, link, msg):
        """stream.accept / stream.credit / stream.close from the agent."""
        t, mid, sid = msg["type"], msg["id"], msg.get("stream")
        tun = link.streams.get(sid) if _is_int(sid) else None
        if t == "stream.close":
            if tun is not None:
                reason, message = msg.get("reason"), msg.get("message")
                self.stream_end(tun, "agent",
                                reason if isinstance(reason, str) else "",
                                message if isinstance(message, str) else "")
            return
        if tun is None:
            if _is_int(sid) and sid in link.closed_streams:
                return            # crossed our stream.close: ignore
            if t == "stream.credit":
                self.violation(link, sid, "stream.credit for a stream that is not open")
            self.answer_unknown(link, sid)
            return
        if t == "stream.accept":
            if isinstance(tun, (Upload, Download)):
                self.violation(link, sid, "stream.accept for a stream the agent opened")
                return
            if tun.state != "opening":
                self.violation(link, sid, "stream.accept for an open stream")
                return
            w = msg.get("window", WINDOW)
            if not _is_int(w) or not 0 <= w <= CREDIT_MAX or \
                    tun.send_credit + w > CREDIT_MAX:
                self.violation(link, sid, "bad window %r in stream.accept" % (w,))
                self.stream_end(tun, "comsim", "flow", "bad window in stream.accept")
                return
            tun.send_credit += w
            self.tunnel_accepted(tun, msg)
            return
        # stream.credit
        b = msg.get("bytes")
        if not _is_int(b) or b < 0:
            self.post(link, {"type": "error", "re": mid, "code": "malformed",
                             "message": "stream.credit needs bytes, an integer >= 0"})
            return
        tun.send_credit += b
        if tun.send_credit > CREDIT_MAX:
            self.violation(link, sid, "credit overflow: allowance %d" % tun.send_credit)
            self.stream_end(tun, "comsim", "flow", "credit above 2^31-1")
            return
        if isinstance(tun, (Tunnel, Download)):
            tun.wake.set()

    async def on_text(self, link, data):
        try:
            msg = parse_message(data)
        except Malformed as e:
            self.event("message", link, error=str(e), raw=short(data, 300))
            err = {"type": "error", "id": link.take_id(), "code": "malformed",
                   "message": str(e)}
            if e.msg_id is not None:
                err["re"] = e.msg_id
            # Never answer an error/unsupported, even a broken one.
            try:
                t = json.loads(data).get("type")
            except Exception:
                t = None
            if t not in ("error", "unsupported", "ack"):
                await self.reply(link, err)
            return
        t, mid = msg["type"], msg["id"]
        if t in ("stream.accept", "stream.credit", "stream.close"):
            if t != "stream.credit":
                self.event("message", link, msg=msg)
            else:
                # Not logged per message (a bulk transfer sends thousands),
                # except for streams opened through the admin API.
                sid = msg.get("stream")
                tun = (link.streams.get(sid) or link.closed_streams.get(sid)) \
                    if _is_int(sid) else None
                if tun is None or tun.admin:
                    self.event("message", link, msg=msg)
            self.on_stream_message(link, msg)
            return
        self.event("message", link, msg=msg)
        if t in ("ack", "error", "unsupported"):
            return
        if t == "status":
            a = self.agent(link.customer, link.system)
            a.status = {k: v for k, v in msg.items() if k not in ("type", "id")}
            a.status_at = time.time()
            await self.reply(link, {"type": "ack", "re": mid})
        elif t == "custom.list":
            await self.on_custom_list(link, msg)
        elif t in ("alarm", "alarm.sync"):
            await self.on_alarm(link, msg)
        elif t == "alarm.clear.result":
            fut = link.pending.pop(("alarm.clear", msg.get("alarm")), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif t == "job.state":
            self.job_state(link, msg)
            if msg.get("state") in FINAL_JOB_STATES and \
                    self.customers.get((link.customer, link.system),
                                       link.record).get("ack_jobs", True):
                await self.reply(link, {"type": "ack", "re": mid})
        elif t == "stream.open":
            await self.on_agent_open(link, msg)
        elif t == "stream.end":
            await self.on_stream_end(link, msg)
        elif t == "hello":
            await self.reply(link, {"type": "error", "re": mid,
                                    "code": "malformed",
                                    "message": "hello after welcome"})
        else:
            await self.reply(link, {"type": "unsupported", "re": mid, "what": t})

    # -- alarms (PROTOCOL.md 2.7, guide ch. 4)
    async def on_alarm(self, link, msg):
        a = self.agent(link.customer, link.system)
        mid = msg["id"]
        if msg["type"] == "alarm.sync":
            n = msg.get("count")
            if not _is_int(n) or not 0 <= n <= ALARM_MAX:
                await self.reply(link, {"type": "error", "re": mid,
                                        "code": "malformed",
                                        "message": "count must be 0..%d" % ALARM_MAX})
                return
            link.alarm_sync = {"count": n, "seen": set()}
            if n == 0:
                self.alarm_sync_done(link, a)
            await self.reply(link, {"type": "ack", "re": mid})
            return
        action, al = msg.get("action"), msg.get("alarm")
        problem = None
        if action not in ("raise", "clear") or not isinstance(al, dict):
            problem = "action must be raise or clear, alarm an object"
        elif not isinstance(al.get("id"), str) or not ALARM_ID_RE.fullmatch(al["id"]):
            problem = "bad alarm id"
        elif action == "raise" and (al.get("type") not in ALARM_TYPES or
                                    al.get("severity") not in ALARM_SEVERITIES or
                                    not isinstance(al.get("text"), str) or
                                    not all(_is_int(al.get(k)) for k in
                                            ("first", "last", "count"))):
            problem = "raise needs type, severity, text, first, last, count"
        if problem:
            await self.reply(link, {"type": "error", "re": mid,
                                    "code": "malformed", "message": problem})
            return
        now = time.time()
        if action == "raise":
            e = {k: al[k] for k in ("id", "type", "severity", "text",
                                    "first", "last", "count")}
            e.update(active=True, cleared_at=None)
            a.alarms[al["id"]] = e
            if msg.get("sync") is True and link.alarm_sync is not None:
                link.alarm_sync["seen"].add(al["id"])
                if len(link.alarm_sync["seen"]) >= link.alarm_sync["count"]:
                    self.alarm_sync_done(link, a)
        else:
            e = a.alarms.get(al["id"])
            if e is not None and e["active"]:
                e.update(active=False, cleared_at=now)
        self.event("alarm", link, action=action, alarm=al["id"],
                   sync=msg.get("sync") is True)
        await self.reply(link, {"type": "ack", "re": mid})

    def alarm_sync_done(self, link, a):
        """The agent's whole active set has arrived: whatever COM still had
        active and the set lacks was cleared while the link was down."""
        seen = link.alarm_sync["seen"]
        link.alarm_sync = None
        now = time.time()
        for e in a.alarms.values():
            if e["active"] and e["id"] not in seen:
                e.update(active=False, cleared_at=now)
        self.event("alarm_sync", link, active=sorted(seen))

    def alarm_list(self, customer, system):
        """COM's alarm list: by type, then severity, then last time."""
        a = self.agents.get((customer, system))
        out = list(a.alarms.values()) if a else []
        return sorted(out, key=lambda e: (ALARM_TYPES.index(e["type"]),
                                          ALARM_SEVERITIES.index(e["severity"]),
                                          -e["last"], e["id"]))

    async def admin_alarm_clear(self, body):
        """A COM user clears an alarm from the list: only one the system no
        longer has; the connected agent is asked, as it knows best."""
        c, s, aid = body.get("customer"), body.get("system"), body.get("alarm")
        if not all(isinstance(x, str) for x in (c, s, aid)):
            return 400, {"error": "customer, system and alarm are required"}
        a = self.agents.get((c, s))
        e = a.alarms.get(aid) if a else None
        link = self.current_link(c, s)
        answer = None
        if link is not None:
            # Keyed by the alarm, registered before sending: the answer
            # may be read before send() returns; ids are taken inside it.
            fut = asyncio.get_running_loop().create_future()
            key = ("alarm.clear", aid)
            link.pending[key] = fut
            try:
                await self.send(link, {"type": "alarm.clear", "alarm": aid})
                answer = await asyncio.wait_for(fut, 10)
            except (asyncio.TimeoutError, websockets.exceptions.ConnectionClosed):
                return 504, {"error": "the agent did not answer"}
            finally:
                if link.pending.get(key) is fut:
                    del link.pending[key]
        if answer is not None and answer.get("ok") is not True:
            self.event("alarm_clear_refused", link, alarm=aid,
                       reason=answer.get("reason"))
            return 409, {"error": answer.get("message") or "refused",
                         "reason": answer.get("reason")}
        if answer is None and e is not None and e["active"]:
            return 409, {"error": "the alarm is still active", "reason": "active"}
        if e is not None:
            del a.alarms[aid]
        self.event("alarm_cleared", customer=c, system=s, alarm=aid)
        return 200, {"cleared": aid, "known": e is not None}

    def customer_list(self):
        """COM's customer list (guide ch. 3): per system its connection
        state (red / amber / green) and message, and what its status said."""
        out = []
        for a in self.agent_list_recs():
            st = a.status or {}
            link = a.link
            connected = bool(link and link.up and not link.closed)
            reasons = [r for r in st.get("reasons", []) if isinstance(r, str)] \
                if connected else []
            alarms = st.get("alarms") if isinstance(st.get("alarms"), dict) else {}
            servers = st.get("servers") if isinstance(st.get("servers"), dict) else {}
            if connected:
                message = wording(reasons[0]) if reasons else "Connection successful"
                bad = (alarms.get("critical") or 0) + (alarms.get("major") or 0)
                color = "amber" if reasons or bad or \
                    any(v != "up" for v in servers.values()) else "green"
            elif a.refused:
                message, color = wording(a.refused), "red"
            elif a.down_since is not None:
                message = "Not reachable or offline for the last %s" % \
                    _ago(time.time() - a.down_since)
                color = "red"
            else:
                message, color = "Waiting for initial connection", "red"
            out.append({"customer": a.customer, "system": a.system,
                        "state": color, "message": message,
                        "profile": st.get("profile"), "version": st.get("version"),
                        "operation": st.get("operation"),
                        "last_operation": st.get("last_operation"),
                        "servers": servers, "alarms": alarms,
                        "service_user": st.get("service_user"),
                        "reasons": reasons,
                        "certificate": st.get("certificate")})
        return out

    def agent_list_recs(self):
        keys = list(self.agents)
        keys += [k for k in self.customers if k not in self.agents]
        return [self.agents.get(k) or AgentRec(*k) for k in keys]

    # -- the remote-support proxy
    def proxy_head(self, conn):
        """Called as header bytes arrive; acts once the block is complete."""
        buf = conn.buf
        ends = [(i, n) for i, n in ((buf.find(b"\r\n\r\n"), 4), (buf.find(b"\n\n"), 2))
                if i >= 0]
        if not ends:
            nl = buf.find(b"\n")
            first = bytes(buf[:nl] if nl >= 0 else buf[:PROXY_HEAD_MAX + 1])
            try:
                if first.translate(None, _PRINTABLE):
                    raise ProxyRefusal(400, "bad_request", "not an HTTP request")
                if nl >= 0:
                    parse_request_line(first)
                if len(buf) > PROXY_HEAD_MAX:
                    if nl < 0:
                        raise ProxyRefusal(400, "bad_request",
                                           "no request line within %d bytes"
                                           % PROXY_HEAD_MAX)
                    raise ProxyRefusal(431, "header_too_large",
                                       "request header block larger than %d bytes"
                                       % PROXY_HEAD_MAX)
            except ProxyRefusal as r:
                self.proxy_refuse(conn, r)
            return
        end, n = min(ends)
        head = bytes(buf[:end])
        conn.buf = bytearray(buf[end + n:])     # early tunnel data, if any
        conn.phase = "busy"
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        ctx = {}
        try:
            if end + n > PROXY_HEAD_MAX:
                raise ProxyRefusal(431, "header_too_large",
                                   "request header block larger than %d bytes"
                                   % PROXY_HEAD_MAX)
            method, target, headers = parse_proxy_head(head)
            ctx["target"] = target
            ctx["method"] = method
            if method == "GET":
                self.proxy_get(conn, target)
                return
            user = self.proxy_auth(headers)
            ctx["user"] = user
            acct = self.proxy_accounts[user]
            dest = parse_destination(target, self.com_domain,
                                     list(self.customers.values()),
                                     acct["customers"])
            ctx.update(customer=dest["customer"],
                       system=dest["system"] or dest["primary"],
                       host=dest["host"], port=dest["port"])
            link = self.current_link(dest["customer"], dest["primary"])
            if link is None or not link.up or not link.ws.open:
                raise ProxyRefusal(502, "not_connected",
                                   "system not connected: %s/%s"
                                   % (dest["customer"], dest["primary"]))
        except ProxyRefusal as r:
            self.proxy_refuse(conn, r, **ctx)
            return
        task = asyncio.ensure_future(self.tunnel_connect(link, dest, user, conn))
        self.bg.add(task)
        task.add_done_callback(self.bg.discard)

    def proxy_get(self, conn, target):
        path = target
        m = re.match(r"(?i)https?://[^/?#]*", target)
        if m:
            path = target[m.end():] or "/"
        path = path.split("?", 1)[0].split("#", 1)[0]
        if path != PAC_PATH:
            raise ProxyRefusal(404, "not_found", "no such resource: %s" % path)
        body = pac_file(self.com_domain, self.cert_name, self.proxy_port).encode()
        self.event("proxy_pac", peer=conn.peer)
        conn.respond(200, body, [("Content-Type", "application/x-ns-proxy-autoconfig")])

    def proxy_auth(self, headers):
        """The proxy user named by a valid Proxy-Authorization, else 407."""
        v = headers.get("proxy-authorization")
        if not v:
            raise ProxyRefusal(407, "auth_required", "proxy authentication required")
        scheme, _, cred = v.strip().partition(" ")
        user = None
        try:
            if scheme.lower() != "basic":
                raise ValueError("scheme")
            text = base64.b64decode(cred.strip(), validate=True).decode("utf-8")
            user, sep, pw = text.partition(":")
            if not sep:
                raise ValueError("no ':'")
        except (ValueError, UnicodeDecodeError):
            raise ProxyRefusal(407, "auth_failed", "proxy credentials not understood")
        acct = self.proxy_accounts.get(user)
        if acct is None or not hmac.compare_digest(acct["password"].encode(),
                                                   pw.encode()):
            raise ProxyRefusal(407, "auth_failed", "proxy credentials refused",
                               user=user)
        return user

    def proxy_refuse(self, conn, r, link=None, **ctx):
        headers = [("Content-Type", "text/plain; charset=utf-8"),
                   ("X-COM-Reason", _header_safe(r.reason))]
        if r.status == 407:
            headers.append(("Proxy-Authenticate", 'Basic realm="%s"' % PROXY_REALM))
        elif r.status == 405:
            headers.append(("Allow", "CONNECT, GET"))
        info = dict(ctx)
        info.update(r.info)
        self.event("tunnel_refused", link, customer=info.pop("customer", None),
                   system=info.pop("system", None), status=r.status,
                   reason=r.reason, message=r.message, peer=conn.peer, **info)
        conn.respond(r.status, (r.message + "\n").encode("utf-8", "replace"), headers)

    async def tunnel_connect(self, link, dest, user, conn=None,
                             sid=None, kind="tunnel", window=WINDOW,
                             credit=True, fields=None):
        """Open a stream on link and see it through to accept or refusal.
        Returns the stream.open message sent (None if the link was gone)."""
        if sid is None:
            sid = link.take_stream()
        info = {"customer": dest["customer"],
                "system": dest["system"] or dest["primary"],
                "via": dest["primary"], "host": dest["host"],
                "port": dest["port"], "user": user,
                "client": conn.peer if conn is not None else None}
        t = Tunnel(self, link, sid, conn, info)
        t.window = t.recv_allow = window
        t.credit_enabled = credit
        link.streams[sid] = t
        if conn is not None:
            early, conn.buf = conn.buf, bytearray()
            conn.tunnel = t
            if early:
                t.client_data(early)
            if conn.lost:
                t.client_done = True
        msg = {"type": "stream.open", "stream": sid, "kind": kind,
               "window": window, "system": dest["system"], "host": dest["host"],
               "port": dest["port"],
               "client": conn.peer if conn is not None else "", "user": user}
        if dest["port"] is None:
            del msg["port"]
        if fields:
            msg.update(fields)
        try:
            msg = await self.send(link, msg)
        except websockets.exceptions.ConnectionClosed:
            msg = None
            self.stream_end(t, "link", "link_lost", "the system's link to COM was lost")
        if msg is not None and conn is None:
            # An admin-API stream: answer the API now, follow up in events.
            task = asyncio.ensure_future(self.tunnel_wait(t))
            self.bg.add(task)
            task.add_done_callback(self.bg.discard)
            return msg
        await self.tunnel_wait(t)
        return msg

    async def tunnel_wait(self, t):
        conn, info = t.conn, t.info
        ctx = {k: info[k] for k in ("customer", "system", "via", "host", "port",
                                    "user")}
        ctx.update(stream=t.sid, admin=t.admin)
        if t.state == "opening" and t.client_done and conn is not None:
            self.stream_abandon(t)
        try:
            res = await asyncio.wait_for(asyncio.shield(t.opened), self.tunnel_timeout)
        except asyncio.TimeoutError:
            if t.opened.done():        # answered just as the time ran out
                res = t.opened.result()
            else:
                msg = "no answer from the agent within %gs" % self.tunnel_timeout
                self.stream_end(t, "comsim", "timeout", msg)
                res = ("timeout", "comsim", "timeout", msg)
        if res[0] == "accept":
            return                 # tunnel_accepted() did the rest
        _, by, reason, message = res
        if by == "client":
            status = None
        elif res[0] == "timeout":
            status = 504
        elif by == "agent":
            status = 403 if reason == "not_allowed" else 502
        else:
            status = 502
        if not message:
            message = {"link_lost": "the system's link to COM was lost"}.get(
                reason, reason or "stream refused")
        r = ProxyRefusal(status, reason or "refused", message)
        if conn is None or status is None:
            self.event("tunnel_refused", t.link, status=status, reason=r.reason,
                       message=message, by=by, **ctx)
        else:
            self.proxy_refuse(conn, r, t.link, by=by, **ctx)

    async def proxy_listen(self):
        loop = asyncio.get_running_loop()
        port = self.proxy_port
        servers = []

        def factory():
            return TLSAcceptor(self, loop, ProxyConn(self), self.ssl_ctx,
                               listener="proxy")
        for i, host in enumerate(self.hosts):
            try:
                srv = await loop.create_server(factory, host, port,
                                               reuse_address=True)
            except OSError as e:
                if i == 0:
                    raise
                self.event("listen_error", host=host, port=port, error=str(e),
                           listener="proxy")
                continue
            servers.append(srv)
            if port == 0:
                port = srv.sockets[0].getsockname()[1]
        self.proxy_port = port
        self.proxy_servers = servers
        self.event("listen", port=port, hosts=self.hosts, listener="proxy",
                   domain=self.com_domain)

    async def proxy_unlisten(self):
        servers, self.proxy_servers = self.proxy_servers, []
        for s in servers:
            s.close()
        for c in list(self.proxy_conns):
            if c.transport is not None and not c.lost:
                try:
                    c.transport.abort()
                except Exception:
                    pass
        for s in servers:
            try:
                await asyncio.wait_for(s.wait_closed(), 5)
            except asyncio.TimeoutError:
                pass

    # -- listeners
    async def listen(self):
        port = self.port
        servers = []
        for i, host in enumerate(self.hosts):
            try:
                srv = await websockets.serve(
                    self.ws_handler, host, port,
                    create_protocol=self.make_protocol,
                    subprotocols=[SUBPROTOCOL],
                    compression=None,
                    ping_interval=None,
                    close_timeout=2,
                    max_size=WS_MAX_SIZE,
                    max_queue=64,
                    reuse_address=True,
                )
            except OSError as e:
                if i == 0:
                    raise
                self.event("listen_error", host=host, port=port, error=str(e))
                continue
            servers.append(srv)
            if port == 0:
                port = srv.sockets[0].getsockname()[1]
        self.port = port
        self.ws_servers = servers
        self.event("listen", port=port, hosts=self.hosts)

    async def unlisten(self):
        servers, self.ws_servers = self.ws_servers, []
        for link in list(self.links):
            if link.close_by is None:
                link.close_by = "comsim"
            if link.stalled:
                await self.close_link(link, 1001, "going away")
        for s in servers:
            s.close()
        for s in servers:
            try:
                await asyncio.wait_for(s.wait_closed(), 10)
            except asyncio.TimeoutError:
                self.event("debug", error="listener close timed out")

    async def restart(self, down_ms):
        self.event("restart", down_ms=down_ms)
        await self.unlisten()

        async def later():
            await asyncio.sleep(down_ms / 1000.0)
            for attempt in range(50):
                try:
                    await self.listen()
                    return
                except OSError as e:
                    self.event("listen_error", port=self.port, error=str(e))
                    await asyncio.sleep(0.1)
        self.restart_task = asyncio.ensure_future(later())

    # -- admin API
    async def admin_conn(self, reader, writer):
        status, body = 500, {"error": "internal error"}
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    asyncio.TimeoutError) as e:
                status, body = 400, {"error": "bad request: %r" % e}
                raise _Respond()
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split()
            if len(parts) != 3:
                status, body = 400, {"error": "bad request line"}
                raise _Respond()
            method, target = parts[0].upper(), parts[1]
            hdrs = {}
            for ln in lines[1:]:
                if ":" in ln:
                    k, v = ln.split(":", 1)
                    hdrs[k.strip().lower()] = v.strip()
            n = int(hdrs.get("content-length", "0") or 0)
            if n < 0 or n > (64 << 20):
                status, body = 400, {"error": "bad content-length"}
                raise _Respond()
            raw = await asyncio.wait_for(reader.readexactly(n), 10) if n else b""
            status, body = await self.admin(method, target, raw)
        except _Respond:
            pass
        except Exception as e:
            status, body = 500, {"error": repr(e)}
            self.event("admin_error", error=repr(e))
        try:
            if isinstance(body, FileBody):
                await body.send(writer, status)
            else:
                data = json.dumps(body).encode()
                writer.write(("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                              "Content-Length: %d\r\nConnection: close\r\n\r\n" %
                              (status, http.HTTPStatus(status).phrase, len(data))
                              ).encode() + data)
                await writer.drain()
        except Exception:
            pass
        finally:
            if isinstance(body, FileBody):
                body.close()
            try:
                writer.close()
            except Exception:
                pass

    async def admin(self, method, target, raw):
        path, _, query = target.partition("?")
        params = {}
        for kv in query.split("&"):
            if kv:
                k, _, v = kv.partition("=")
                params[urllib.parse.unquote_plus(k)] = urllib.parse.unquote_plus(v)
        body = None
        if method == "POST":
            try:
                body = json.loads(raw.decode("utf-8")) if raw.strip() else {}
            except ValueError as e:
                return 400, {"error": "bad JSON: %s" % e}
            if not isinstance(body, dict):
                return 400, {"error": "body must be a JSON object"}

        if method == "GET" and path == "/agents":
            return 200, self.agent_list()
        if method == "GET" and path == "/events":
            try:
                since = int(params.get("since", "0") or 0)
            except ValueError:
                return 400, {"error": "since must be an integer"}
            return 200, [e for e in self.events if e["seq"] > since]
        if method == "GET" and path == "/customers":
            return 200, list(self.customers.values())
        if method == "GET" and path == "/customer_list":
            return 200, self.customer_list()
        if method == "GET" and path == "/alarms":
            return 200, self.alarm_list(params.get("customer"), params.get("system"))
        if method == "POST" and path == "/alarm_clear":
            return await self.admin_alarm_clear(body)
        if method == "GET" and path == "/health":
            return 200, {"ok": True, "port": self.port, "listening": bool(self.ws_servers)}
        if method == "GET" and path == "/tunnels":
            out = []
            for link in list(self.links):
                out += [t.json() for t in link.streams.values()
                        if isinstance(t, Tunnel)]
            return 200, sorted(out, key=lambda d: (d["link"], d["stream"]))
        if path in ("/backups", "/backups/file", "/uploads", "/today",
                    "/upload_fault", "/download_fault"):
            return self.admin_backups(method, path, params, body)
        if path in ("/custom_files", "/custom_files/delete", "/custom_list_fault"):
            return self.admin_custom(method, path, params, body)
        if path in ("/logs", "/logs/file", "/logs/delete", "/log_retention"):
            return self.admin_logs(method, path, params, body)
        if path in ("/job", "/jobs", "/job/pause", "/job/resume", "/job/stop",
                    "/library", "/signing_keys", "/downloads"):
            return await self.admin_jobs(method, path, params, body)
        if method == "GET" and path == "/proxy_accounts":
            return 200, [self.account_json(a) for a in self.proxy_accounts.values()]
        if method == "POST" and path == "/proxy_accounts":
            try:
                a = self.upsert_account(body)
            except ValueError as e:
                return 400, {"error": str(e)}
            self.event("proxy_account", user=a["user"], customers=a["customers"])
            return 200, self.account_json(a)
        if method == "POST" and path in ("/send_binary", "/stream_open",
                                         "/stream_close", "/stream_data",
                                         "/stream_read"):
            return await self.admin_stream(path, body)
        if method == "POST" and path == "/stream_flood":
            return await self.admin_stream_flood(body)
        if method != "POST" or path not in ("/customers", "/drop", "/stall",
                                            "/unstall", "/send", "/restart"):
            return 404, {"error": "no such endpoint: %s %s" % (method, path)}

        if path == "/customers":
            try:
                r = self.upsert(body)
            except ValueError as e:
                return 400, {"error": str(e)}
            self.event("customer", customer=r["customer"], system=r["system"],
                       state=r["state"], user=r["user"])
            return 200, r
        if path == "/restart":
            try:
                down = int(body.get("down_ms", 0))
            except (TypeError, ValueError):
                return 400, {"error": "down_ms must be an integer"}
            await self.restart(max(0, down))
            return 200, {"restarting": True, "down_ms": down, "port": self.port}

        c, s = body.get("customer"), body.get("system")
        if not isinstance(c, str) or not isinstance(s, str):
            return 400, {"error": "customer and system required"}
        link = self.current_link(c, s)
        if link is None:
            return 404, {"error": "no link for %s/%s" % (c, s)}

        if path == "/drop":
            self.event("drop", link)
            asyncio.ensure_future(self.close_link(link, 1001, "dropped"))
            return 200, {"dropped": link.num}
        if path == "/stall":
            link.ws.transport.pause_reading()
            link.stalled = True
            self.event("stall", link)
            return 200, {"stalled": link.num}
        if path == "/unstall":
            link.ws.transport.resume_reading()
            link.stalled = False
            self.event("unstall", link)
            return 200, {"stalled": False}
        if path == "/send":
            try:
                if "raw" in body:
                    if not isinstance(body["raw"], str):
                        return 400, {"error": "raw must be a string"}
                    await self.send(link, raw=body["raw"])
                    return 200, {"sent": len(body["raw"])}
                m = body.get("message")
                if not isinstance(m, dict):
                    return 400, {"error": "message (object) or raw (string) required"}
                m = await self.send(link, m)
                return 200, {"sent": m, "id": m.get("id")}
            except websockets.exceptions.ConnectionClosed:
                return 409, {"error": "link closed"}
        return 404, {"error": "no such endpoint"}

    def admin_backups(self, method, path, params, body):
        """GET /backups, /backups/file, /uploads, /today, /upload_fault;
        POST /today, /upload_fault."""
        if path == "/today":
            if method == "POST":
                if "date" not in body:
                    return 400, {"error": "date required (YYYY-MM-DD, or null "
                                          "for the real date)"}
                try:
                    self.today_fixed = None if body["date"] is None \
                        else parse_day(body["date"])
                except ValueError as e:
                    return 400, {"error": str(e)}
                self.event("today", date=self.today().isoformat(),
                           simulated=self.today_fixed is not None)
                expired = self.apply_retention_all()
                expired_logs = self.apply_log_retention_all()
                return 200, {"date": self.today().isoformat(),
                             "simulated": self.today_fixed is not None,
                             "expired": expired, "expired_logs": expired_logs}
            if method == "GET":
                return 200, {"date": self.today().isoformat(),
                             "simulated": self.today_fixed is not None}
            return 404, {"error": "no such endpoint: %s %s" % (method, path)}
        if path in ("/upload_fault", "/download_fault") and method == "GET":
            store = self.upload_faults if path == "/upload_fault" \
                else self.download_faults
            return 200, [dict(v, customer=c, system=s)
                         for (c, s), v in store.items()]
        src = body if method == "POST" else params
        if method != ("POST" if path in ("/upload_fault", "/download_fault")
                      else "GET"):
            return 404, {"error": "no such endpoint: %s %s" % (method, path)}
        c, s = src.get("customer"), src.get("system")
        if not isinstance(c, str) or not isinstance(s, str):
            return 400, {"error": "customer and system required"}
        if path == "/download_fault":
            cur, err = self.fault_settings(self.download_faults.get((c, s), {}),
                                           body, ("corrupt",))
            if err:
                return 400, {"error": err}
            if cur:
                self.download_faults[(c, s)] = cur
            else:
                self.download_faults.pop((c, s), None)
            self.event("download_fault", customer=c, system=s, action="set", **cur)
            return 200, dict(cur, customer=c, system=s)
        if path == "/upload_fault":
            cur = dict(self.upload_faults.get((c, s), {}))
            if body.get("clear"):
                cur = {}
            if "drop_after" in body:
                n = body["drop_after"]
                if n is not None and (not _is_int(n) or n < 0):
                    return 400, {"error": "drop_after must be an integer >= 0 or null"}
                cur.pop("drop_after", None)
                if n is not None:
                    cur["drop_after"] = n
            for flag in ("corrupt", "hold_credit"):
                if flag in body:
                    if not isinstance(body[flag], bool):
                        return 400, {"error": "%s must be true or false" % flag}
                    cur.pop(flag, None)
                    if body[flag]:
                        cur[flag] = True
            if cur:
                self.upload_faults[(c, s)] = cur
            else:
                self.upload_faults.pop((c, s), None)
            if not cur.get("hold_credit"):
                # credit held back so far goes out now
                for (uc, us, _), u in list(self.uploads.items()):
                    if (uc, us) == (c, s):
                        u.grant(force=True)
            self.event("upload_fault", customer=c, system=s, action="set", **cur)
            return 200, dict(cur, customer=c, system=s)
        d = self.backup_dir(c, s)
        if path == "/backups":
            return 200, [self.backup_json(m) for m in self.read_backups(d)]
        if path == "/uploads":
            return 200, self.partials(c, s)
        name = params.get("name")
        if check_upload_name(name) is not None:
            return 400, {"error": "name: %s" % check_upload_name(name)}
        fn = os.path.join(d, name)
        if not os.path.isfile(fn) or not os.path.isfile(fn + SIDECAR):
            return 404, {"error": "no backup %s of %s/%s" % (name, c, s)}
        return 200, FileBody(fn)

    def admin_logs(self, method, path, params, body):
        """GET /logs, /logs/file, /log_retention; POST /logs/delete,
        /log_retention."""
        if path == "/log_retention":
            if method == "POST":
                days = body.get("days")
                if not _is_int(days) or days < 0:
                    return 400, {"error": "days must be an integer >= 0"}
                self.log_retention_days = days
                self.event("log_retention", days=days)
                return 200, {"days": days, "today": self.today().isoformat(),
                             "expired_logs": self.apply_log_retention_all()}
            if method == "GET":
                return 200, {"days": self.log_retention_days}
            return 404, {"error": "no such endpoint: %s %s" % (method, path)}
        if method != ("POST" if path == "/logs/delete" else "GET"):
            return 404, {"error": "no such endpoint: %s %s" % (method, path)}
        src = body if method == "POST" else params
        c, s = src.get("customer"), src.get("system")
        if not isinstance(c, str) or not isinstance(s, str):
            return 400, {"error": "customer and system required"}
        d = self.log_dir(c, s)
        if path == "/logs":
            try:
                frm = parse_day(params["from"]) if params.get("from") else None
                to = parse_day(params["to"]) if params.get("to") else None
            except ValueError as e:
                return 400, {"error": "from/to: %s" % e}
            out = []
            for m in self.read_logs(d):
                try:
                    day = datetime.date.fromisoformat(m["day"])
                except ValueError:
                    continue
                if (frm is None or day >= frm) and (to is None or day <= to):
                    out.append(self.log_json(m))
            return 200, out
        name = src.get("name")
        why = check_upload_name(name)
        if why is not None:
            return 400, {"error": "name: %s" % why}
        meta = self.read_log(d, name)
        if meta is None:
            return 404, {"error": "no log %s of %s/%s" % (name, c, s)}
        if path == "/logs/file":
            return 200, FileBody(os.path.join(d, name))
        self.delete_log(d, name)
        self.event("log_deleted", customer=c, system=s, name=name,
                   day=meta.get("day"), job=meta.get("job"), size=meta.get("size"),
                   sha256=meta.get("sha256"))
        return 200, dict(self.log_json(meta), customer=c, system=s)

    @staticmethod
    def fault_settings(cur, body, flags):
        """A fault dict updated by a POST body: clear, drop_after, flags."""
        cur = {} if body.get("clear") else dict(cur)
        if "drop_after" in body:
            n = body["drop_after"]
            if n is not None and (not _is_int(n) or n < 0):
                return None, "drop_after must be an integer >= 0 or null"
            cur.pop("drop_after", None)
            if n is not None:
                cur["drop_after"] = n
        for flag in flags:
            if flag in body:
                if not isinstance(body[flag], bool):
                    return None, "%s must be true or false" % flag
                cur.pop(flag, None)
                if body[flag]:
                    cur[flag] = True
        return cur, None

    async def admin_jobs(self, method, path, params, body):
        """POST /job, /job/pause, /job/resume, /job/stop, /library,
        /signing_keys; GET /jobs, /library, /signing_keys, /downloads."""
        lib = self.library
        if path == "/library":
            if method == "GET":
                return 200, [{"release": r, "dir": lib.release_dir(r), "manifest": m}
                             for r, m in lib.releases.items()]
            if method != "POST":
                return 404, {"error": "no such endpoint: %s %s" % (method, path)}
            try:
                release, profile, specs = lib.validate(body)
            except library.LibraryError as e:
                return e.status, {"error": e.message}
            lib.pending.add(release)
            try:
                m = await asyncio.to_thread(lib.build, release, profile, specs)
            except OSError as e:
                return 500, {"error": "writing release %s: %s" % (release, e)}
            finally:
                lib.pending.discard(release)
            lib.add(m)
            self.event("library_release", release=release, profile=profile,
                       components=[(c["name"], c["size"]) for c in m["components"]])
            return 200, m
        if path == "/signing_keys":
            if method == "GET":
                return 200, lib.keys_json()
            if method != "POST":
                return 404, {"error": "no such endpoint: %s %s" % (method, path)}
            k = lib.new_key()
            self.event("signing_key", id=k["id"], public_pem_path=k["public_pem_path"])
            return 200, k
        if path in ("/jobs", "/downloads"):
            if method != "GET":
                return 404, {"error": "no such endpoint: %s %s" % (method, path)}
            c, s = params.get("customer"), params.get("system")
            if c is None or s is None:
                return 400, {"error": "customer and system required"}
            if path == "/downloads":
                out = []
                for link in list(self.links):
                    if (link.customer, link.system) == (c, s):
                        out += [d.json() for d in link.streams.values()
                                if isinstance(d, Download)]
                return 200, sorted(out, key=lambda d: (d["link"], d["stream"]))
            jobs = self.jobs.get((c, s), {})
            out = [self.job_json(c, s, jid, j) for jid, j in jobs.items()]
            out.sort(key=lambda x: x["created"] or 0)
            return 200, out
        if method != "POST":
            return 404, {"error": "no such endpoint: %s %s" % (method, path)}
        if path == "/job":
            return await self.issue_job(body)
        found, err = self.find_job(body)
        if err:
            return err
        (c, s), jid, j = found
        status = self.job_status(j)
        verb = path.rsplit("/", 1)[1]
        allowed = {"pause": ("scheduled",), "resume": ("paused",),
                   "stop": ("scheduled", "paused")}[verb]
        if status not in allowed:
            what = {"pause": "only a scheduled job can be paused",
                    "resume": "only a paused job can be resumed",
                    "stop": "only a scheduled or paused job can be stopped"}[verb]
            return 409, {"error": "job %s is %s: %s" % (jid, status, what)}
        j["hold"] = {"pause": "paused", "resume": None, "stop": "stopped"}[verb]
        self.save_jobs()
        self.event("job_" + {"pause": "paused", "resume": "resumed",
                             "stop": "stopped"}[verb],
                   customer=c, system=s, job=jid, op=j.get("op"), at=j.get("at"))
        if verb == "resume":
            self.wake_scheduler()
        return 200, self.job_json(c, s, jid, j)

    async def issue_job(self, body):
        """POST /job: send a job now, or keep it scheduled ("at")."""
        c, s = body.get("customer"), body.get("system")
        if not isinstance(c, str) or not isinstance(s, str):
            return 400, {"error": "customer and system required"}
        op = body.get("op")
        jid = body.get("job") or "J-%s-%s" % (time.strftime("%Y%m%d"),
                                                secrets.token_hex(3))
        if not isinstance(jid, str):
            return 400, {"error": "job must be a string"}
        at = body.get("at")
        if at is not None and (not isinstance(at, (int, float)) or
                               isinstance(at, bool)):
            return 400, {"error": "at must be a number (unix time in seconds)"}
        args = {}
        release = body.get("release")
        knobs = [k for k in ("sign_with", "tamper", "manifest_patch",
                             "component_patch") if k in body]
        if release is not None:
            if op not in MANIFEST_OPS:
                return 400, {"error": "release is for %s jobs" % ", ".join(MANIFEST_OPS)}
            if not isinstance(release, str) or release not in self.library.releases:
                return 404, {"error": "no release %s in the software library"
                                      % json.dumps(release)}
            for k in ("manifest_patch", "component_patch"):
                if not isinstance(body.get(k, {}), dict):
                    return 400, {"error": "%s must be an object" % k}
            if op != "upgrade" or body.get("with_manifest"):
                text = self.library.make_manifest(release, body.get("manifest_patch"),
                                                  body.get("component_patch"))
                sign_with = body.get("sign_with")
                if sign_with is not None and not isinstance(sign_with, str):
                    return 400, {"error": 'sign_with must be a key id or "unknown"'}
                try:
                    sig = self.library.sign(text, sign_with)
                except library.LibraryError as e:
                    return e.status, {"error": e.message}
                if body.get("tamper"):
                    text = library.tamper(text)
                args.update(manifest=text, signature=sig)
            elif knobs:
                return 400, {"error": "%s needs a manifest (with_manifest: true)"
                                      % knobs[0]}
        elif knobs:
            return 400, {"error": "%s needs release (a manifest from the library)"
                                  % knobs[0]}
        for k in ("allow_downgrade", "restart_phones"):
            if k in body:
                args[k] = body[k]
        if "prune" in body:
            # refresh_custom (PROTOCOL.md 2.6, 3.5); a broken prune can still
            # be sent through args
            if op != "refresh_custom":
                return 400, {"error": "prune is for refresh_custom jobs"}
            if not isinstance(body["prune"], bool):
                return 400, {"error": "prune must be true or false"}
            args["prune"] = body["prune"]
        if "backup" in body:
            if op != "restore":
                return 400, {"error": "backup is for restore jobs"}
            name = body["backup"]
            why = check_upload_name(name)
            if why:
                return 400, {"error": "backup: %s" % why}
            meta = self.read_backup(self.backup_dir(c, s), name)
            if meta is None:
                return 404, {"error": "no such backup: %s of %s/%s" % (name, c, s)}
            args["backup"] = name
            args["sha256"] = body["sha256"] if "sha256" in body else meta.get("sha256")
        extra = body.get("args", {})
        if isinstance(extra, dict):
            args.update(extra)
        elif args:
            return 400, {"error": "args must be an object (to merge with what "
                                  "comsim filled in)"}
        else:
            args = extra          # a broken args, as asked (agent tests)
        info = {"release": release}
        if at is None:
            link = self.current_link(c, s)
            if link is None:
                return 404, {"error": "no link for %s/%s" % (c, s)}
            msg = {"type": "job", "id": link.take_id(), "job": jid, "op": op,
                   "args": args}
            if op is None:
                del msg["op"]
            try:
                await self.send(link, msg, job_info=dict(info, at=None))
            except websockets.exceptions.ConnectionClosed:
                return 409, {"error": "link closed"}
            return 200, {"job": jid, "id": msg["id"], "status": "in progress"}
        old = self.jobs.get((c, s), {}).get(jid)
        if old is not None and self.job_status(old) in ("scheduled", "paused"):
            return 409, {"error": "job %s is %s already" % (jid, self.job_status(old))}
        j = self.new_job(op, args, at=float(at), **info)
        self.keep_job(c, s, jid, j)
        self.save_jobs()
        self.event("job_scheduled", customer=c, system=s, job=jid, op=op,
                   at=j["at"], release=release)
        self.wake_scheduler()
        return 200, {"job": jid, "status": "scheduled", "at": j["at"]}

    async def admin_stream(self, path, body):
        """POST /send_binary, /stream_open, /stream_close, /stream_data,
        /stream_read.  customer + system name the link; system defaults to
        the customer's primary system."""
        c, s = body.get("customer"), body.get("system")
        if not isinstance(c, str) or (s is not None and not isinstance(s, str)):
            return 400, {"error": "customer (and optionally system) required"}
        if s is None:
            s = self.primary_system(c)
        link = self.current_link(c, s) if s is not None else None
        if link is None or not link.up:
            return 404, {"error": "no link for %s/%s" % (c, s)}
        sid = body.get("stream")
        if sid is not None and (not _is_int(sid) or not 0 <= sid <= 0xFFFFFFFF):
            return 400, {"error": "stream must be an integer 0..2^32-1"}
        try:
            if path == "/send_binary":
                if sid is None:
                    return 400, {"error": "stream required"}
                try:
                    data = base64.b64decode(body.get("data_b64", ""), validate=True)
                except (ValueError, TypeError) as e:
                    return 400, {"error": "data_b64: %s" % e}
                await self.send_data(link, sid.to_bytes(4, "big") + data)
                self.event("sent", link, binary=True, stream=sid, size=len(data))
                return 200, {"sent": len(data), "stream": sid}
            if path == "/stream_open":
                port = body.get("port")
                if port is not None and not _is_int(port):
                    return 400, {"error": "port must be an integer"}
                window = body.get("window", WINDOW)
                if not _is_int(window) or not 0 <= window <= CREDIT_MAX:
                    return 400, {"error": "window must be an integer 0..2^31-1"}
                fields = body.get("fields") or {}
                if not isinstance(fields, dict):
                    return 400, {"error": "fields must be an object"}
                target = body.get("target", "")
                host = body.get("host", "")
                if not isinstance(target, str) or not isinstance(host, str):
                    return 400, {"error": "target and host must be strings"}
                if sid is not None:
                    if sid in link.streams:
                        return 409, {"error": "stream %d is open" % sid}
                    if sid % 2 == 0 and sid >= link.next_stream:
                        link.next_stream = sid + 2
                dest = {"customer": c, "system": target, "primary": s,
                        "host": host, "port": port}
                msg = await self.tunnel_connect(
                    link, dest, str(body.get("user", "admin")), sid=sid,
                    kind=body.get("kind", "tunnel"), window=window,
                    credit=bool(body.get("credit", True)), fields=fields)
                if msg is None:
                    return 409, {"error": "link closed"}
                return 200, {"stream": msg["stream"], "id": msg["id"]}
            if sid is None:
                return 400, {"error": "stream required"}
            t = link.streams.get(sid) or link.closed_streams.get(sid)
            if t is None:
                return 404, {"error": "no stream %d on that link" % sid}
            if path == "/stream_close":
                reason, message = body.get("reason", "done"), body.get("message", "")
                if t.state == "closed":
                    return 409, {"error": "stream %d is closed" % sid}
                self.stream_end(t, "comsim", str(reason), str(message))
                return 200, {"closed": sid}
            if isinstance(t, Upload) and path != "/stream_close":
                return 400, {"error": "stream %d is an upload" % sid}
            if isinstance(t, Download) and path != "/stream_close":
                return 400, {"error": "stream %d is a download" % sid}
            if path == "/stream_data":
                if not t.admin:
                    return 400, {"error": "stream %d belongs to a proxy client" % sid}
                if t.state == "closed":
                    return 409, {"error": "stream %d is closed" % sid}
                try:
                    data = base64.b64decode(body.get("data_b64", ""), validate=True)
                except (ValueError, TypeError) as e:
                    return 400, {"error": "data_b64: %s" % e}
                t.out_buf += data
                if body.get("eof"):
                    t.client_done = True
                t.wake.set()
                return 200, {"queued": len(t.out_buf)}
            if path == "/stream_read":
                data = bytes(t.captured)
                t.captured.clear()
                return 200, {"data_b64": base64.b64encode(data).decode(),
                             "size": len(data), "state": t.state,
                             "closed_by": t.closed_by, "reason": t.close_reason,
                             "bytes_from_agent": t.from_agent,
                             "bytes_to_agent": t.to_agent,
                             "dropped": t.capture_dropped}
        except websockets.exceptions.ConnectionClosed:
            return 409, {"error": "link closed"}
        return 404, {"error": "no such endpoint"}

    async def admin_stream_flood(self, body):
        """POST /stream_flood {customer, system?, count, port?, target?, host?,
        window?, user?}: `count` (1..10000) tunnel stream.opens sent back to
        back on the link, each as /stream_open sends one (admin streams,
        fresh even ids), without waiting for any answer in between: a burst
        beyond the agent's max_streams. Answers {"streams": [...], "ids":
        [...]} (stream ids and message ids, in order) once all are out."""
        c, s = body.get("customer"), body.get("system")
        if not isinstance(c, str) or (s is not None and not isinstance(s, str)):
            return 400, {"error": "customer (and optionally system) required"}
        if s is None:
            s = self.primary_system(c)
        link = self.current_link(c, s) if s is not None else None
        if link is None or not link.up:
            return 404, {"error": "no link for %s/%s" % (c, s)}
        count = body.get("count")
        if not _is_int(count) or not 1 <= count <= 10000:
            return 400, {"error": "count must be an integer 1..10000"}
        port = body.get("port")
        if port is not None and not _is_int(port):
            return 400, {"error": "port must be an integer"}
        window = body.get("window", WINDOW)
        if not _is_int(window) or not 0 <= window <= CREDIT_MAX:
            return 400, {"error": "window must be an integer 0..2^31-1"}
        target, host = body.get("target", ""), body.get("host", "")
        if not isinstance(target, str) or not isinstance(host, str):
            return 400, {"error": "target and host must be strings"}
        dest = {"customer": c, "system": target, "primary": s, "host": host,
                "port": port}
        sent = []
        for _ in range(count):
            msg = await self.tunnel_connect(link, dest, str(body.get("user", "admin")),
                                            window=window)
            if msg is None:
                return 409, {"error": "link closed after %d opens" % len(sent)}
            sent.append(msg)
        self.event("stream_flood", link, count=count,
                   first=sent[0]["stream"], last=sent[-1]["stream"])
        return 200, {"streams": [m["stream"] for m in sent],
                     "ids": [m["id"] for m in sent]}

    # -- lifecycle
    async def run(self):
        self.stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.set_exception_handler(self.loop_exception)

        ca, pem, key = ensure_pki(self.dir, self.cert_name)
        self.library.ensure_key()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2   # mbedTLS 2.28 speaks 1.2
        # Tests of the agent's TLS checks serve another certificate (expired,
        # self-signed ...) or offer only the suites they name.
        if self.tls_cert:
            pem, key = self.tls_cert, self.tls_key
        if self.tls_ciphers:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers(self.tls_ciphers)
        ctx.load_cert_chain(pem, key)
        self.ssl_ctx = ctx

        await self.listen()
        await self.proxy_listen()
        self.sched_wake = asyncio.Event()
        self.sched_task = asyncio.ensure_future(self.scheduler())
        self.admin_server = await asyncio.start_server(
            self.admin_conn, "127.0.0.1", self.admin_port, limit=1 << 16)
        self.admin_port = self.admin_server.sockets[0].getsockname()[1]

        info = {"port": self.port, "admin_port": self.admin_port, "ca": ca,
                "pid": os.getpid(), "cert": pem, "cert_name": self.cert_name,
                "proxy_port": self.proxy_port, "com_domain": self.com_domain,
                "signing_keys": [k["public_pem_path"]
                                 for k in self.library.keys_json()]}
        path = os.path.join(self.dir, "comsim.json")
        tmp = path + ".tmp.%d" % os.getpid()
        with open(tmp, "w") as f:
            json.dump(info, f)
        os.replace(tmp, path)
        self.event("ready", port=self.port, admin_port=self.admin_port, ca=ca,
                   proxy_port=self.proxy_port)

        await self.stopping.wait()
        self.event("shutdown")
        try:
            os.unlink(path)
        except OSError:
            pass
        if self.restart_task:
            self.restart_task.cancel()
        if self.sched_task:
            self.sched_task.cancel()
        self.admin_server.close()
        try:
            await asyncio.wait_for(self.proxy_unlisten(), 8)
        except asyncio.TimeoutError:
            pass
        try:
            await asyncio.wait_for(self.unlisten(), 8)
        except asyncio.TimeoutError:
            pass

    def loop_exception(self, loop, context):
        exc = context.get("exception")
        self.event("loop_error", error=context.get("message"),
                   exception=repr(exc) if exc else None)


class _Respond(Exception):
    pass


class FileBody:
    """An admin answer that is a file's bytes (GET /backups/file)."""

    def __init__(self, path):
        self.f = open(path, "rb")
        self.size = os.fstat(self.f.fileno()).st_size

    async def send(self, writer, status):
        writer.write(("HTTP/1.1 %d %s\r\nContent-Type: application/octet-stream\r\n"
                      "Content-Length: %d\r\nConnection: close\r\n\r\n" %
                      (status, http.HTTPStatus(status).phrase, self.size)).encode())
        left = self.size
        while left > 0:
            b = self.f.read(min(256 * 1024, left))
            if not b:
                break
            writer.write(b)
            left -= len(b)
            await writer.drain()

    def close(self):
        self.f.close()


# ---------------------------------------------------------------- for tests

class SimProcess:
    """Runs `comsim.py serve` as a child process (used by the pytest suites).

        sim = SimProcess(dir, customers=[...]); sim.start()
        sim.admin("GET", "/agents"); sim.events(kind="hello"); sim.stop()

    start() after stop() listens on the same port again (a COM restart)."""

    PYTHON = "/usr/bin/python3"

    def __init__(self, directory, customers=None, cert_name="localhost",
                 host="127.0.0.1", extra_args=(), start_timeout=20,
                 proxy_accounts=None):
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.cert_name = cert_name
        self.host = host
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.customers_file = None
        if customers is not None or proxy_accounts is not None:
            self.customers_file = os.path.join(self.dir, "customers.json")
            data = {"customers": customers if customers is not None
                    else DEFAULT_CUSTOMERS}
            if proxy_accounts is not None:
                data["proxy_accounts"] = proxy_accounts
            with open(self.customers_file, "w") as f:
                json.dump(data, f)
        self.proc = None
        self.port = 0
        self.admin_port = 0
        self.proxy_port = 0
        self.ca = os.path.join(self.dir, "ca.pem")
        self.info = None
        self.runs = 0
        self.stderr_path = None

    def start(self):
        assert self.proc is None, "already running"
        info_path = os.path.join(self.dir, "comsim.json")
        try:
            os.unlink(info_path)
        except FileNotFoundError:
            pass
        self.runs += 1
        self.stderr_path = os.path.join(self.dir, "comsim-%d.log" % self.runs)
        cmd = [self.PYTHON, os.path.abspath(__file__), "serve", "--dir", self.dir,
               "--host", self.host, "--port", str(self.port),
               "--admin-port", str(self.admin_port),
               "--proxy-port", str(self.proxy_port),
               "--cert-name", self.cert_name] + self.extra_args
        if self.customers_file:
            cmd += ["--customers", self.customers_file]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=err)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if os.path.exists(info_path):
                try:
                    with open(info_path) as f:
                        info = json.load(f)
                    if info.get("pid") == self.proc.pid:
                        break
                except (OSError, ValueError):
                    pass
            if self.proc.poll() is not None:
                raise RuntimeError("comsim exited with %s:\n%s" % (
                    self.proc.returncode, self.log()))
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("comsim did not start within %ss:\n%s" % (
                    self.start_timeout, self.log()))
            time.sleep(0.02)
        self.info = info
        self.port = info["port"]
        self.admin_port = info["admin_port"]
        self.proxy_port = info["proxy_port"]
        self.ca = info["ca"]
        return self

    def log(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    def stop(self, timeout=10):
        """SIGTERM, wait; returns the exit code."""
        p, self.proc = self.proc, None
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise RuntimeError("comsim ignored SIGTERM for %ss" % timeout)

    def kill(self):
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def url(self, host="localhost"):
        return "wss://%s:%d%s" % (host, self.port, PATH)

    def admin(self, method, path, body=None, expect=200):
        status, data = admin_call(self.admin_port, method, path, body)
        if expect is not None and status != expect:
            raise AssertionError("comsim %s %s -> %d %r (expected %d)" % (
                method, path, status, data, expect))
        return data

    def admin_status(self, method, path, body=None):
        return admin_call(self.admin_port, method, path, body)

    def events(self, kind=None, since=0, customer=None, system=None):
        evs = self.admin("GET", "/events?since=%d" % since)
        if kind is not None:
            kinds = (kind,) if isinstance(kind, str) else tuple(kind)
            evs = [e for e in evs if e["kind"] in kinds]
        if customer is not None:
            evs = [e for e in evs if e.get("customer") == customer]
        if system is not None:
            evs = [e for e in evs if e.get("system") == system]
        return evs

    def last_seq(self):
        evs = self.admin("GET", "/events?since=0")
        return evs[-1]["seq"] if evs else 0

    def agents(self):
        return self.admin("GET", "/agents")

    def agent(self, customer, system):
        for a in self.agents():
            if a["customer"] == customer and a["system"] == system:
                return a
        return None

    def tunnels(self):
        return self.admin("GET", "/tunnels")

    def alarms(self, customer, system):
        """GET /alarms: COM's alarm list of a system, by type and severity."""
        return self.admin("GET", "/alarms?" + self._q(customer=customer, system=system))

    def alarm_clear(self, customer, system, alarm):
        """POST /alarm_clear: (status, answer)."""
        return self.admin_status("POST", "/alarm_clear", {
            "customer": customer, "system": system, "alarm": alarm})

    def customer_list(self, customer=None, system=None):
        """GET /customer_list, or the one entry of customer/system."""
        rows = self.admin("GET", "/customer_list")
        if customer is None:
            return rows
        return next((r for r in rows if r["customer"] == customer and
                     r["system"] == system), None)

    @staticmethod
    def _q(**kw):
        return urllib.parse.urlencode(kw)

    def backups(self, customer, system):
        """GET /backups: the stored backups of a system, oldest first."""
        return self.admin("GET", "/backups?" + self._q(customer=customer, system=system))

    def backup_file(self, customer, system, name):
        """The bytes of a stored backup (GET /backups/file); None if absent."""
        st, data = admin_raw(self.admin_port, "GET", "/backups/file?" + self._q(
            customer=customer, system=system, name=name))
        if st == 404:
            return None
        if st != 200:
            raise AssertionError("comsim GET /backups/file -> %d %r" % (st, data[:300]))
        return data

    def logs(self, customer, system, frm=None, to=None):
        """GET /logs: the stored logs of a system by day then name, those
        of days frm..to (YYYY-MM-DD, inclusive, both optional)."""
        q = dict(customer=customer, system=system)
        q.update({k: v for k, v in (("from", frm), ("to", to)) if v is not None})
        return self.admin("GET", "/logs?" + self._q(**q))

    def log_file(self, customer, system, name):
        """The bytes of a stored log (GET /logs/file); None if absent."""
        st, data = admin_raw(self.admin_port, "GET", "/logs/file?" + self._q(
            customer=customer, system=system, name=name))
        if st == 404:
            return None
        if st != 200:
            raise AssertionError("comsim GET /logs/file -> %d %r" % (st, data[:300]))
        return data

    def delete_log(self, customer, system, name):
        """POST /logs/delete: (status, answer)."""
        return self.admin_status("POST", "/logs/delete", {
            "customer": customer, "system": system, "name": name})

    def set_log_retention(self, days):
        """POST /log_retention; returns the answer, with what it deleted."""
        return self.admin("POST", "/log_retention", {"days": days})

    def uploads(self, customer, system):
        """GET /uploads: partial uploads held for a system."""
        return self.admin("GET", "/uploads?" + self._q(customer=customer, system=system))

    def set_today(self, date):
        """POST /today (a YYYY-MM-DD string, a date, or None for the real
        date); returns the answer, with what retention deleted."""
        if isinstance(date, datetime.date):
            date = date.isoformat()
        return self.admin("POST", "/today", {"date": date})

    def upload_fault(self, customer, system, **kw):
        """POST /upload_fault (drop_after=N, corrupt=True, clear=True)."""
        return self.admin("POST", "/upload_fault",
                          dict(kw, customer=customer, system=system))

    def download_fault(self, customer, system, **kw):
        """POST /download_fault (drop_after=N, corrupt=True, clear=True)."""
        return self.admin("POST", "/download_fault",
                          dict(kw, customer=customer, system=system))

    def custom_file(self, level, name, data=None, files=None, **ids):
        """POST /custom_files: bytes `data`, or `files` {member: text} for a
        tar; ids: reseller= (level reseller), customer= and system= (level
        system).  Returns {"name", "size", "sha256", "level"}."""
        body = dict(ids, level=level, name=name)
        if files is not None:
            body["files"] = files
        else:
            body["content_b64"] = base64.b64encode(data).decode()
        return self.admin("POST", "/custom_files", body)

    def delete_custom_file(self, level, name, **ids):
        """POST /custom_files/delete: (status, answer)."""
        return self.admin_status("POST", "/custom_files/delete",
                                 dict(ids, level=level, name=name))

    def custom_files(self, customer, system):
        """GET /custom_files: the levels that apply to a system and their files."""
        return self.admin("GET", "/custom_files?" + self._q(customer=customer,
                                                             system=system))

    def custom_list_fault(self, customer, system, mode, count=None):
        """POST /custom_list_fault (mode error, silent or none; count: for
        that many custom.list messages only)."""
        body = {"customer": customer, "system": system, "mode": mode}
        if count is not None:
            body["count"] = count
        return self.admin("POST", "/custom_list_fault", body)

    def add_release(self, release, components, profile="linux"):
        """POST /library: components [{"name", "size"} or {"name",
        "content_b64"}] (or {"name": bytes}); returns the manifest object."""
        if isinstance(components, dict):
            components = [{"name": n, "content_b64": base64.b64encode(v).decode()}
                          if isinstance(v, (bytes, bytearray)) else {"name": n, "size": v}
                          for n, v in components.items()]
        return self.admin("POST", "/library", {"release": release, "profile": profile,
                                               "components": components})

    def library_file(self, release, name):
        """The path of a library component's file."""
        return os.path.join(self.dir, "library", release, name)

    def signing_keys(self):
        """GET /signing_keys: [{"id", "public_pem_path", "current"}]."""
        return self.admin("GET", "/signing_keys")

    def rotate_signing_key(self):
        """POST /signing_keys: a new current key; returns it."""
        return self.admin("POST", "/signing_keys", {})

    def job(self, customer, system, op, **kw):
        """POST /job; returns the answer ({"job", "id"|"at", "status"})."""
        return self.admin("POST", "/job", dict(kw, customer=customer, system=system,
                                               op=op))

    def jobs(self, customer, system):
        """GET /jobs: the job history of a system, oldest first."""
        return self.admin("GET", "/jobs?" + self._q(customer=customer, system=system))

    def proxy(self, target, user="reseller1", password="proxypw", **kw):
        """CONNECT through comsim's proxy; see proxy_request()."""
        return proxy_request(self.proxy_port, self.ca, target, user=user,
                             password=password, server_name=self.cert_name,
                             host=self.host.split(",")[0], **kw)

    def messages(self, customer=None, system=None, type=None, since=0):
        """Parsed messages the agent sent (kind `message` events' msg)."""
        out = []
        for e in self.events("message", since, customer, system):
            m = e.get("msg")
            if m is not None and (type is None or m.get("type") == type):
                out.append(m)
        return out


class ProxyReply:
    """The answer to a proxy request: status, reason phrase, headers (lower-
    case names), body; sock is the open TLS socket of a 200 CONNECT (the
    tunnel, with `pending` bytes already read past the header), else None."""

    def __init__(self, status, phrase, headers, body, sock, pending=b""):
        self.status = status
        self.phrase = phrase
        self.headers = headers
        self.body = body
        self.sock = sock
        self.pending = pending

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __repr__(self):
        return "<ProxyReply %s %s %r>" % (self.status, self.phrase, self.body[:200])


def proxy_request(port, ca, target=None, user="reseller1", password="proxypw",
                  server_name="localhost", host="127.0.0.1", timeout=20,
                  auth=True, method="CONNECT", raw=None, headers=()):
    """Blocking client of comsim's remote-support proxy (for tests).

    Sends `CONNECT target HTTP/1.1` (or `method target`, or the bytes
    `raw`) over TLS, with Basic credentials unless auth is False, and reads
    the response.  Returns a ProxyReply; after a 200 to CONNECT its sock is
    the tunnel."""
    ctx = ssl.create_default_context(cafile=ca)
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        ts = ctx.wrap_socket(s, server_hostname=server_name)
    except BaseException:
        s.close()
        raise
    try:
        if raw is None:
            lines = ["%s %s HTTP/1.1" % (method, target), "Host: %s" % target]
            if auth:
                tok = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
                lines.append("Proxy-Authorization: Basic %s" % tok)
            lines += ["%s: %s" % h for h in headers]
            raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
        ts.sendall(raw)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = ts.recv(4096)
            if not chunk:
                raise ConnectionError("proxy closed before a full response header: %r"
                                      % buf)
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status, phrase = int(parts[1]), parts[2] if len(parts) > 2 else ""
        hdrs = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        if status == 200 and method == "CONNECT":
            return ProxyReply(status, phrase, hdrs, b"", ts, rest)
        n = int(hdrs.get("content-length", "-1"))
        body = rest
        while n < 0 or len(body) < n:
            try:
                chunk = ts.recv(65536)
            except (ssl.SSLError, OSError):
                break
            if not chunk:
                break
            body += chunk
        ts.close()
        return ProxyReply(status, phrase, hdrs, body, None)
    except BaseException:
        ts.close()
        raise


# ---------------------------------------------------------------- ctl

def read_info(directory):
    with open(os.path.join(directory, "comsim.json")) as f:
        return json.load(f)


def admin_call(admin_port, method, path, body=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=hdrs)
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


def admin_raw(admin_port, method, path, timeout=60):
    """An admin request whose answer is bytes: (status, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=timeout)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def ctl(args):
    info = read_info(args.dir)
    a = args.what
    cmd = a[0] if a else ""
    def need(n):
        if len(a) != n:
            sys.exit("comsim ctl: %s takes %d argument(s)" % (cmd, n - 1))
    if cmd == "agents":
        req = ("GET", "/agents", None)
    elif cmd == "events":
        req = ("GET", "/events?since=%d" % (int(a[1]) if len(a) > 1 else 0), None)
    elif cmd in ("drop", "stall", "unstall"):
        need(3)
        req = ("POST", "/" + cmd, {"customer": a[1], "system": a[2]})
    elif cmd == "job":
        if len(a) not in (4, 5, 6):
            sys.exit("comsim ctl: job C S OP [JOBID] [JSON]")
        b = {"customer": a[1], "system": a[2], "op": a[3]}
        if len(a) >= 5 and a[4]:
            b["job"] = a[4]
        if len(a) == 6:
            b.update(json.loads(a[5]))
        req = ("POST", "/job", b)
    elif cmd == "send":
        need(4)
        req = ("POST", "/send", {"customer": a[1], "system": a[2],
                                 "message": json.loads(a[3])})
    elif cmd == "restart":
        req = ("POST", "/restart", {"down_ms": int(a[1]) if len(a) > 1 else 0})
    elif cmd == "customer":
        need(2)
        req = ("POST", "/customers", json.loads(a[1]))
    elif cmd == "tunnels":
        req = ("GET", "/tunnels", None)
    elif cmd == "customer_list":
        req = ("GET", "/customer_list", None)
    elif cmd == "alarms":
        need(3)
        req = ("GET", "/alarms?%s" % urllib.parse.urlencode(
            {"customer": a[1], "system": a[2]}), None)
    elif cmd == "alarm_clear":
        need(4)
        req = ("POST", "/alarm_clear", {"customer": a[1], "system": a[2],
                                        "alarm": a[3]})
    elif cmd == "proxy_account":
        need(2)
        req = ("POST", "/proxy_accounts", json.loads(a[1]))
    elif cmd in ("backups", "uploads"):
        need(3)
        req = ("GET", "/%s?%s" % (cmd, urllib.parse.urlencode(
            {"customer": a[1], "system": a[2]})), None)
    elif cmd == "today":
        if len(a) == 1:
            req = ("GET", "/today", None)
        else:
            need(2)
            req = ("POST", "/today", {"date": None if a[1] == "real" else a[1]})
    elif cmd in ("upload_fault", "download_fault", "custom_list_fault"):
        need(2)
        req = ("POST", "/" + cmd, json.loads(a[1]))
    elif cmd == "custom_files":
        need(3)
        req = ("GET", "/custom_files?" + urllib.parse.urlencode(
            {"customer": a[1], "system": a[2]}), None)
    elif cmd == "custom_file":
        need(2)
        req = ("POST", "/custom_files", json.loads(a[1]))
    elif cmd == "jobs":
        need(3)
        req = ("GET", "/jobs?" + urllib.parse.urlencode(
            {"customer": a[1], "system": a[2]}), None)
    elif cmd in ("library", "signing_keys"):
        if len(a) == 1:
            req = ("GET", "/" + cmd, None)
        elif cmd == "signing_keys" and a[1:] == ["new"]:
            req = ("POST", "/signing_keys", {})
        else:
            need(2)
            req = ("POST", "/library", json.loads(a[1]))
    elif cmd in ("pause", "resume", "stop"):
        need(2)
        req = ("POST", "/job/" + cmd, {"job": a[1]})
    elif cmd == "logs":
        if len(a) not in (3, 4, 5):
            sys.exit("comsim ctl: logs C S [FROM [TO]]")
        q = {"customer": a[1], "system": a[2]}
        q.update(zip(("from", "to"), a[3:]))
        req = ("GET", "/logs?" + urllib.parse.urlencode(q), None)
    elif cmd == "log_retention":
        if len(a) == 1:
            req = ("GET", "/log_retention", None)
        else:
            need(2)
            if not a[1].isdigit():
                sys.exit("comsim ctl: log_retention [DAYS] (an integer >= 0)")
            req = ("POST", "/log_retention", {"days": int(a[1])})
    else:
        sys.exit("comsim ctl: agents | events [SINCE] | drop C S | stall C S | "
                 "unstall C S | job C S OP [JOB] [JSON] | send C S JSON | "
                 "customer JSON | restart [MS] | tunnels | proxy_account JSON | "
                 "backups C S | uploads C S | today [DATE|real] | "
                 "upload_fault JSON | download_fault JSON | jobs C S | "
                 "pause|resume|stop JOB | library [JSON] | signing_keys [new] | "
                 "logs C S [FROM [TO]] | log_retention [DAYS] | "
                 "custom_files C S | custom_file JSON | custom_list_fault JSON | "
                 "customer_list | alarms C S | alarm_clear C S ID")
    status, body = admin_call(info["admin_port"], *req)
    print(json.dumps(body, indent=2))
    return 0 if status == 200 else 1


def main(argv=None):
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s comsim %(name)s: %(message)s")
    ap = argparse.ArgumentParser(prog="comsim.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the simulator")
    s.add_argument("--dir", required=True, help="PKI and comsim.json live here")
    s.add_argument("--host", default="127.0.0.1",
                   help="address(es) to listen on, comma-separated; the first "
                        "picks the port, the others are best effort")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--admin-port", type=int, default=0)
    s.add_argument("--customers", help="JSON customers file")
    s.add_argument("--cert-name", default="localhost",
                   help="DNS name in the server certificate")
    s.add_argument("--proxy-port", type=int, default=0,
                   help="remote-support proxy port (TLS), 0 = pick one")
    s.add_argument("--com-domain", default="com.example.test",
                   help="proxy names are <customer>[-<system>][-<ip>].maint.DOMAIN")
    s.add_argument("--hello-timeout", type=float, default=10.0,
                   help=argparse.SUPPRESS)
    # The COM listener's certificate and key instead of the PKI's, and the
    # only TLS 1.2 suites it offers (OpenSSL names): TLS tests.
    # welcome's max_streams (benchmarks hold 256 tunnels open).
    s.add_argument("--max-streams", type=int, default=MAX_STREAMS,
                   help=argparse.SUPPRESS)
    s.add_argument("--tls-cert", help=argparse.SUPPRESS)
    s.add_argument("--tls-key", help=argparse.SUPPRESS)
    s.add_argument("--tls-ciphers", help=argparse.SUPPRESS)
    s.add_argument("--proxy-header-timeout", type=float, default=10.0,
                   help=argparse.SUPPRESS)
    s.add_argument("--tunnel-timeout", type=float, default=15.0,
                   help=argparse.SUPPRESS)
    s.add_argument("--today", metavar="YYYY-MM-DD",
                   help="simulated date for stored backups and retention "
                        "(default: the real date)")
    s.add_argument("--upload-max", type=int, default=UPLOAD_MAX, metavar="BYTES",
                   help="largest upload accepted (default 2 GiB)")
    s.add_argument("--log-retention-days", type=int, default=LOG_RETENTION_DAYS,
                   metavar="N", help="logs whose day is more than N days before "
                                     "today are deleted (default %d)"
                                     % LOG_RETENTION_DAYS)
    c = sub.add_parser("ctl", help="talk to a running simulator's admin API")
    c.add_argument("--dir", required=True)
    c.add_argument("what", nargs="*")
    args = ap.parse_args(argv)
    if args.cmd == "ctl":
        return ctl(args)
    try:
        sim = ComSim(args)
    except (OSError, ValueError, KeyError) as e:
        print("comsim: %s" % e, file=sys.stderr)
        return 2
    try:
        asyncio.run(sim.run())
    except (OSError, RuntimeError) as e:
        print("comsim: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""comsim -- a stand-in for COM's cloud side of agent/PROTOCOL.md (version 1).

    comsim.py serve --dir DIR [--host 127.0.0.1] [--port 0] [--admin-port 0]
                    [--customers FILE] [--cert-name localhost]
    comsim.py ctl --dir DIR agents | events [SINCE] | drop C S | stall C S |
                  unstall C S | job C S OP | send C S JSON | restart [MS]

Python 3 asyncio + websockets 10.4 (legacy API); stdlib otherwise.  The test
PKI is made with the `openssl` command.  See README.md in this folder.
"""

import argparse
import asyncio
import asyncio.sslproto
import base64
import datetime
import http
import http.client
import json
import logging
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import websockets
import websockets.exceptions
import websockets.legacy.server
from websockets.legacy.server import WebSocketServerProtocol

SUBPROTOCOL = "com-agent.v1"
PATH = "/agent/v1"
MAX_TEXT = 65536                 # PROTOCOL.md: text frame limit
MAX_BINARY = 4 + 32768           # PROTOCOL.md: binary frame limit
WS_MAX_SIZE = 1 << 20            # what websockets itself accepts; we check
MAX_STREAMS = 64
WINDOW = 65536
ID_MAX = 2**53 - 1

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
        self.send_lock = asyncio.Lock()

    def take_id(self):
        i = self.next_id
        self.next_id += 1
        return i


class AgentRec:
    def __init__(self, customer, system):
        self.customer = customer
        self.system = system
        self.hellos = 0
        self.welcomes = 0
        self.last_hello = None
        self.link = None         # current (welcomed) Link

    def json(self):
        link = self.link
        connected = bool(link and link.up and not link.closed)
        return {"customer": self.customer, "system": self.system,
                "connected": connected,
                "session": link.session if connected else None,
                "peer": link.peer if link else None,
                "hellos": self.hellos, "welcomes": self.welcomes,
                "last_hello": self.last_hello,
                "stalled": bool(connected and link.stalled)}


class TLSAcceptor(asyncio.sslproto.SSLProtocol):
    """Server-side TLS in front of a websockets protocol, so that a failed
    handshake can be logged (asyncio's own server keeps those silent)."""

    def __init__(self, sim, loop, app, ctx):
        self._sim = sim
        self._peer = None
        self._app = app
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
            return
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
        self.hello_timeout = args.hello_timeout
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
        recs = DEFAULT_CUSTOMERS
        if args.customers:
            with open(args.customers) as f:
                data = json.load(f)
            recs = data["customers"] if isinstance(data, dict) else data
        for r in recs:
            self.upsert(r)

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
        r = dict(rec)
        r.setdefault("state", "ok")
        self.customers[(r["customer"], r["system"])] = r
        return r

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
    async def send(self, link, msg=None, raw=None):
        if raw is None:
            if "id" not in msg:
                m = {"type": msg.get("type"), "id": link.take_id()}
                m.update(msg)
                msg = m
            raw = json.dumps(msg, separators=(",", ":"))
        async with link.send_lock:
            await link.ws.send(raw)
        if msg is not None:
            self.event("sent", link, msg=msg)
        else:
            self.event("sent", link, raw=short(raw, 300), size=len(raw))
        return msg

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
        link.record = rec
        msg = {"type": "welcome", "id": link.take_id(), "re": hello["id"],
               "session": link.session, "max_streams": MAX_STREAMS,
               "window": WINDOW}
        extra = rec.get("welcome_extra")
        if isinstance(extra, dict):
            msg.update(extra)
        self.event("welcome", link, session=link.session, peer=link.peer)
        if old is not None and old is not link and not old.closed:
            self.event("replace", old, by_link=link.num)
            asyncio.ensure_future(self.replace(old))
        await self.send(link, msg)
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
        self.event("message", link, binary=True, stream=sid, size=len(data) - 4)
        await self.reply(link, {"type": "stream.close", "stream": sid,
                                "reason": "unknown_stream", "message": ""})

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
        self.event("message", link, msg=msg)
        t, mid = msg["type"], msg["id"]
        if t in ("ack", "error", "unsupported"):
            return
        if t == "status":
            await self.reply(link, {"type": "ack", "re": mid})
        elif t == "job.state":
            if msg.get("state") in FINAL_JOB_STATES and \
                    self.customers.get((link.customer, link.system),
                                       link.record).get("ack_jobs", True):
                await self.reply(link, {"type": "ack", "re": mid})
        elif t == "stream.open":
            await self.reply(link, {"type": "stream.close", "re": mid,
                                    "stream": msg.get("stream"),
                                    "reason": "refused",
                                    "message": "comsim opens no streams"})
        elif t in ("stream.close",):
            pass
        elif t in ("stream.accept", "stream.credit"):
            await self.reply(link, {"type": "stream.close",
                                    "stream": msg.get("stream"),
                                    "reason": "unknown_stream", "message": ""})
        elif t == "hello":
            await self.reply(link, {"type": "error", "re": mid,
                                    "code": "malformed",
                                    "message": "hello after welcome"})
        else:
            await self.reply(link, {"type": "unsupported", "re": mid, "what": t})

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
            data = json.dumps(body).encode()
            writer.write(("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                          "Content-Length: %d\r\nConnection: close\r\n\r\n" %
                          (status, http.HTTPStatus(status).phrase, len(data))
                          ).encode() + data)
            await writer.drain()
        except Exception:
            pass
        finally:
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
                params[k] = v
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
        if method == "GET" and path == "/health":
            return 200, {"ok": True, "port": self.port, "listening": bool(self.ws_servers)}
        if method != "POST" or path not in ("/customers", "/drop", "/stall",
                                            "/unstall", "/send", "/job", "/restart"):
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
        if path == "/job":
            op = body.get("op")
            jid = body.get("job") or "J-%s-%s" % (time.strftime("%Y%m%d"),
                                                    secrets.token_hex(3))
            msg = {"type": "job", "id": link.take_id(), "job": jid, "op": op,
                   "args": body.get("args", {})}
            if op is None:
                del msg["op"]
            try:
                await self.send(link, msg)
            except websockets.exceptions.ConnectionClosed:
                return 409, {"error": "link closed"}
            return 200, {"job": jid, "id": msg["id"]}
        return 404, {"error": "no such endpoint"}

    # -- lifecycle
    async def run(self):
        self.stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.set_exception_handler(self.loop_exception)

        ca, pem, key = ensure_pki(self.dir, self.cert_name)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2   # mbedTLS 2.28 speaks 1.2
        ctx.load_cert_chain(pem, key)
        self.ssl_ctx = ctx

        await self.listen()
        self.admin_server = await asyncio.start_server(
            self.admin_conn, "127.0.0.1", self.admin_port, limit=1 << 16)
        self.admin_port = self.admin_server.sockets[0].getsockname()[1]

        info = {"port": self.port, "admin_port": self.admin_port, "ca": ca,
                "pid": os.getpid(), "cert": pem, "cert_name": self.cert_name}
        path = os.path.join(self.dir, "comsim.json")
        tmp = path + ".tmp.%d" % os.getpid()
        with open(tmp, "w") as f:
            json.dump(info, f)
        os.replace(tmp, path)
        self.event("ready", port=self.port, admin_port=self.admin_port, ca=ca)

        await self.stopping.wait()
        self.event("shutdown")
        try:
            os.unlink(path)
        except OSError:
            pass
        if self.restart_task:
            self.restart_task.cancel()
        self.admin_server.close()
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


# ---------------------------------------------------------------- for tests

class SimProcess:
    """Runs `comsim.py serve` as a child process (used by the pytest suites).

        sim = SimProcess(dir, customers=[...]); sim.start()
        sim.admin("GET", "/agents"); sim.events(kind="hello"); sim.stop()

    start() after stop() listens on the same port again (a COM restart)."""

    PYTHON = "/usr/bin/python3"

    def __init__(self, directory, customers=None, cert_name="localhost",
                 host="127.0.0.1", extra_args=(), start_timeout=20):
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.cert_name = cert_name
        self.host = host
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.customers_file = None
        if customers is not None:
            self.customers_file = os.path.join(self.dir, "customers.json")
            with open(self.customers_file, "w") as f:
                json.dump({"customers": customers}, f)
        self.proc = None
        self.port = 0
        self.admin_port = 0
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

    def messages(self, customer=None, system=None, type=None, since=0):
        """Parsed messages the agent sent (kind `message` events' msg)."""
        out = []
        for e in self.events("message", since, customer, system):
            m = e.get("msg")
            if m is not None and (type is None or m.get("type") == type):
                out.append(m)
        return out


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
        if len(a) not in (4, 5):
            sys.exit("comsim ctl: job C S OP [JOBID]")
        b = {"customer": a[1], "system": a[2], "op": a[3]}
        if len(a) == 5:
            b["job"] = a[4]
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
    else:
        sys.exit("comsim ctl: agents | events [SINCE] | drop C S | stall C S | "
                 "unstall C S | job C S OP [JOB] | send C S JSON | "
                 "customer JSON | restart [MS]")
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
    s.add_argument("--hello-timeout", type=float, default=10.0,
                   help=argparse.SUPPRESS)
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

"""Self-test of the COM simulator (no agent needed).

    /usr/bin/python3 -m pytest tests/comsim

Drives comsim with websockets' own client over TLS and checks the behaviour
PROTOCOL.md asks of COM, plus the admin API; the remote-support proxy
(sections 3, 3.1) with a fake agent that relays tunnels to local TCP services.
"""

import asyncio
import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time

import pytest
import websockets
import websockets.exceptions

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import comsim  # noqa: E402

SUB = "com-agent.v1"
PASSWORD = "s3cret-Zq81"

CUSTOMERS = [
    {"customer": "C1001", "system": "pbx-hq", "user": "COMAdmin",
     "password": PASSWORD, "state": "ok"},
    {"customer": "C1001", "system": "pbx-b", "user": "COMAdmin",
     "password": PASSWORD, "state": "ok"},
] + [
    {"customer": "C2", "system": "s-" + st, "user": "COMAdmin",
     "password": PASSWORD, "state": st}
    for st in ("disabled", "locked", "expired", "insufficient", "new_password",
               "max_sessions", "legacy", "frobnicated")
] + [
    # for the proxy: '-' in customer ids and system names, a primary
    {"customer": c, "system": s, "user": "COMAdmin", "password": PASSWORD,
     "state": "ok", **extra}
    for c, s, extra in (("C-1", "pbx-a", {}), ("C-1", "pbx-main", {"primary": True}),
                        ("C-1", "pbx-a-b", {}), ("C-1-x", "s", {}), ("C-1-x", "t", {}))
]


def wait_until(pred, timeout=5.0, what="condition", interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    comsim.ensure_pki(str(d), "localhost")
    return d


@pytest.fixture
def sim(tmp_path, pki):
    for f in os.listdir(pki):
        shutil.copy(os.path.join(pki, f), tmp_path / f)
    s = comsim.SimProcess(str(tmp_path),
                          customers=CUSTOMERS,
                          extra_args=["--hello-timeout", "1",
                                      "--proxy-header-timeout", "1",
                                      "--tunnel-timeout", "2"])
    s.start()
    yield s
    try:
        rc = s.stop()
        assert rc == 0, "comsim exit code %s\n%s" % (rc, s.log())
        assert "Traceback" not in s.log(), s.log()
    finally:
        s.kill()


def client_ctx(ca, tls12=False):
    ctx = ssl.create_default_context(cafile=ca)
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def connect(sim, path="/agent/v1", subprotocols=(SUB,), ca=None, tls12=False):
    return websockets.connect(
        "wss://localhost:%d%s" % (sim.port, path),
        ssl=client_ctx(ca or sim.ca, tls12),
        subprotocols=list(subprotocols) if subprotocols else None,
        ping_interval=None, close_timeout=2, open_timeout=5,
        max_size=1 << 20)


def hello_msg(**over):
    m = {"type": "hello", "id": 1, "proto": 1, "agent": "comagent/0.1.0",
         "customer": "C1001", "system": "pbx-hq", "profile": "linux",
         "version": "11.1.3.0", "user": "COMAdmin", "password": PASSWORD}
    m.update(over)
    return {k: v for k, v in m.items() if v is not None}


async def recv_json(ws, timeout=3):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def say_hello(ws, **over):
    await ws.send(json.dumps(hello_msg(**over)))
    return await recv_json(ws)


async def expect_close(ws, timeout=5):
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.exceptions.ConnectionClosed as e:
        return e.rcvd.code if e.rcvd else None


def run(coro):
    return asyncio.run(coro)


# ------------------------------------------------------------------ PKI

def test_pki_files(tmp_path):
    ca, pem, key = comsim.ensure_pki(str(tmp_path), "localhost")
    assert os.path.basename(ca) == "ca.pem"
    for f in ("ca.key", "server-localhost.key"):
        assert os.stat(tmp_path / f).st_mode & 0o077 == 0
    text = subprocess.run(["openssl", "x509", "-in", pem, "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "DNS:localhost" in text
    assert "prime256v1" in text or "P-256" in text
    catext = subprocess.run(["openssl", "x509", "-in", ca, "-noout", "-text"],
                            capture_output=True, text=True, check=True).stdout
    assert "CA:TRUE" in catext
    subprocess.run(["openssl", "verify", "-CAfile", ca, pem], check=True,
                   capture_output=True)
    before = open(ca).read(), open(pem).read()
    comsim.ensure_pki(str(tmp_path), "localhost")          # reused
    assert (open(ca).read(), open(pem).read()) == before
    comsim.ensure_pki(str(tmp_path), "wronghost")          # same CA, new leaf
    assert open(ca).read() == before[0]
    assert os.path.exists(tmp_path / "server-wronghost.pem")


def test_comsim_json(sim):
    info = json.load(open(os.path.join(sim.dir, "comsim.json")))
    assert info["pid"] == sim.proc.pid
    assert info["port"] == sim.port > 0
    assert info["admin_port"] == sim.admin_port > 0
    assert os.path.isabs(info["ca"]) and os.path.exists(info["ca"])


# ------------------------------------------------------------------ link

def test_hello_welcome_tls12(sim):
    async def go():
        async with connect(sim, tls12=True) as ws:
            assert ws.subprotocol == SUB
            assert ws.transport.get_extra_info("ssl_object").version() == "TLSv1.2"
            w = await say_hello(ws, id=7)
            assert w["type"] == "welcome" and w["re"] == 7 and w["id"] == 1
            assert w["max_streams"] == 64 and w["window"] == 65536
            assert isinstance(w["session"], str) and w["session"]
            a = sim.agent("C1001", "pbx-hq")
            assert a["connected"] and a["session"] == w["session"]
            assert a["hellos"] == 1 and a["welcomes"] == 1 and not a["stalled"]
            assert a["peer"].startswith("127.0.0.1:")
            await ws.close()
        wait_until(lambda: not sim.agent("C1001", "pbx-hq")["connected"],
                   what="disconnected")
    run(go())
    evs = sim.events()
    kinds = [e["kind"] for e in evs]
    for k in ("ws_open", "hello", "welcome", "sent", "close"):
        assert k in kinds
    assert PASSWORD not in json.dumps(evs) and PASSWORD not in sim.log()
    h = sim.events("hello")[0]
    assert h["user"] == "COMAdmin" and h["customer"] == "C1001"
    c = sim.events("close")[-1]
    assert c["code"] == 1000 and c["by"] == "agent"
    assert all(isinstance(e["t"], float) for e in evs)
    assert [e["seq"] for e in evs] == sorted(e["seq"] for e in evs)


REFUSALS = [
    ({"system": "s-disabled"}, "user_disabled", "Service user disabled"),
    ({"system": "s-locked"}, "user_locked", "Service user temporarily locked"),
    ({"system": "s-expired"}, "password_expired", "Service user password expired"),
    ({"system": "s-insufficient"}, "insufficient_permissions", "Insufficient permissions"),
    ({"system": "s-new_password"}, "password_change_required",
     "Service user needs a new password"),
    ({"system": "s-max_sessions"}, "max_sessions", "Maximum concurrent sessions exceeded"),
    ({"system": "s-legacy"}, "legacy", "Legacy"),
    ({"system": "s-frobnicated"}, "frobnicated", "Connection failed"),
    ({"password": "wrong"}, "auth_failed", "Authorization failed"),
    ({"user": "Administrator"}, "credentials_invalid", "Credentials invalid"),
    ({"customer": "C9999"}, "not_primary", "Not reachable / not a valid primary IP Office"),
    ({"system": "nope"}, "not_primary", "Not reachable / not a valid primary IP Office"),
    ({"proto": 2}, "protocol", "Connection failed"),
]


@pytest.mark.parametrize("over,reason,words", REFUSALS,
                         ids=[r[1] + "-" + "-".join(map(str, r[0].values())) for r in REFUSALS])
def test_refused(sim, over, reason, words):
    over = dict(over)
    if "customer" not in over and over.get("system", "").startswith("s-"):
        over["customer"] = "C2"

    async def go():
        async with connect(sim) as ws:
            r = await say_hello(ws, id=3, **over)
            assert r == {"type": "refused", "id": 1, "re": 3, "reason": reason,
                         "message": words}
            assert await expect_close(ws) == 4001
    run(go())
    ev = sim.events("refused")
    assert len(ev) == 1 and ev[0]["reason"] == reason
    wait_until(lambda: sim.events("close"), what="close event")
    assert sim.events("close")[0]["code"] == 4001
    assert sim.events("close")[0]["by"] == "comsim"


def test_customer_upsert(sim):
    rec = {"customer": "C1001", "system": "pbx-hq", "user": "COMAdmin",
           "password": PASSWORD, "state": "locked"}
    sim.admin("POST", "/customers", rec)

    async def go():
        async with connect(sim) as ws:
            assert (await say_hello(ws))["reason"] == "user_locked"
        rec["state"] = "ok"
        sim.admin("POST", "/customers", rec)
        new = dict(rec, customer="C7", system="x", user="u", password="p")
        sim.admin("POST", "/customers", new)
        async with connect(sim) as ws:
            assert (await say_hello(ws))["type"] == "welcome"
        async with connect(sim) as ws:
            r = await say_hello(ws, customer="C7", system="x", user="u", password="p")
            assert r["type"] == "welcome"
    run(go())
    st, body = sim.admin_status("POST", "/customers", {"customer": "x"})
    assert st == 400 and "error" in body


def test_messages(sim):
    async def go():
        async with connect(sim) as ws:
            await say_hello(ws)
            ids = [1]

            async def ask(obj_or_text):
                await ws.send(obj_or_text if isinstance(obj_or_text, str)
                              else json.dumps(obj_or_text))
                r = await recv_json(ws)
                assert r["id"] > ids[-1], "comsim ids must increase"
                ids.append(r["id"])
                return r

            assert await ask({"type": "status", "id": 2, "customer": "C1001",
                              "system": "pbx-hq", "profile": "linux",
                              "operation": "idle", "uptime": 1}) == \
                {"type": "ack", "id": 2, "re": 2}
            r = await ask({"type": "frobnicate", "id": 3, "x": [1, {"y": 2}]})
            assert r["type"] == "unsupported" and r["re"] == 3 and r["what"] == "frobnicate"
            r = await ask("this is not json{")
            assert r["type"] == "error" and r["code"] == "malformed" and "re" not in r
            r = await ask("[1,2]")
            assert r["type"] == "error" and "re" not in r
            r = await ask({"id": 4})
            assert r["type"] == "error" and r["re"] == 4
            r = await ask({"type": "status", "id": "5"})
            assert r["type"] == "error" and "re" not in r
            r = await ask({"type": "status", "id": 6, "re": "x"})
            assert r["type"] == "error" and r["re"] == 6
            r = await ask({"type": "x" * 32, "id": 7})
            assert r["type"] == "error" and r["re"] == 7
            r = await ask({"type": "status", "id": 8, "s": "a" * 5000})
            assert r["type"] == "error" and r["re"] == 8
            deep = 1
            for _ in range(10):
                deep = [deep]
            r = await ask({"type": "status", "id": 9, "d": deep})
            assert r["type"] == "error" and r["re"] == 9
            r = await ask({"type": "stream.open", "id": 10, "stream": 1,
                           "kind": "tunnel", "window": 65536})
            assert r["type"] == "stream.close" and r["re"] == 10
            assert r["stream"] == 1 and r["reason"] == "refused"
            # never answered: ack, error, unsupported, non-final job.state
            for m in ({"type": "ack", "id": 11, "re": 1},
                      {"type": "error", "id": 12, "code": "malformed", "message": ""},
                      {"type": "unsupported", "id": 13, "re": 1, "what": "x"},
                      {"type": "job.state", "id": 14, "job": "J1", "state": "accepted"},
                      {"type": "job.state", "id": 15, "job": "J1", "state": "running",
                       "progress": 5}):
                await ws.send(json.dumps(m))
            r = await ask({"type": "job.state", "id": 16, "job": "J1",
                           "state": "rejected", "reason": "unsupported"})
            assert r["type"] == "ack" and r["re"] == 16
            for st in ("succeeded", "failed"):
                r = await ask({"type": "job.state", "id": 17 + len(st), "job": "J2",
                               "state": st})
                assert r["type"] == "ack"
            await ws.send(b"\x00\x00\x00\x05hi")
            r = await recv_json(ws)
            assert r["type"] == "stream.close" and r["stream"] == 5
            assert r["reason"] == "unknown_stream"
    run(go())
    msgs = sim.messages("C1001", "pbx-hq")
    assert msgs[0]["type"] == "status"
    assert any(e.get("error") for e in sim.events("message"))
    sent = [e["msg"] for e in sim.events("sent") if "msg" in e]
    assert sent[0]["type"] == "welcome"


def test_message_before_hello(sim):
    async def go():
        async with connect(sim) as ws:
            await ws.send(json.dumps({"type": "status", "id": 1}))
            assert await expect_close(ws) == 4002
        async with connect(sim) as ws:
            await ws.send("garbage")
            assert await expect_close(ws) == 4002
        async with connect(sim) as ws:
            await ws.send(b"\x00\x00\x00\x01x")
            assert await expect_close(ws) == 4002
        t0 = time.monotonic()
        async with connect(sim) as ws:      # --hello-timeout 1
            assert await expect_close(ws, 5) == 4002
        assert 0.8 < time.monotonic() - t0 < 4
    run(go())
    # comsim logs "close" once the TCP connection is gone, just after the
    # client saw the close frame
    wait_until(lambda: len(sim.events("close")) >= 4, what="four close events")
    assert [e["code"] for e in sim.events("close")] == [4002] * 4


def test_oversized_frame(sim):
    async def go():
        async with connect(sim) as ws:
            await say_hello(ws)
            await ws.send(json.dumps({"type": "status", "id": 2, "pad": "x" * 4000}))
            assert (await recv_json(ws))["type"] == "ack"
            await ws.send(json.dumps({"type": "status", "id": 3,
                                      "pad": ["x" * 4000] * 17}))
            assert await expect_close(ws) == 4002
        async with connect(sim) as ws:
            await say_hello(ws)
            await ws.send(b"\x00\x00\x00\x01" + b"x" * 32769)
            assert await expect_close(ws) == 4002
    run(go())


def test_http_rejects(sim):
    async def go():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            async with connect(sim, path="/agent/v2"):
                pass
        assert e.value.status_code == 404
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            async with connect(sim, subprotocols=None):
                pass
        assert e.value.status_code == 400
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            async with connect(sim, subprotocols=("other",)):
                pass
        assert e.value.status_code == 400
        async with connect(sim, path="/agent/v1?x=1") as ws:
            assert (await say_hello(ws))["type"] == "welcome"
    run(go())
    assert [e["status"] for e in sim.events("http_reject")] == [404, 400, 400]


def test_replace_4003(sim):
    async def go():
        async with connect(sim) as ws1:
            w1 = await say_hello(ws1)
            async with connect(sim) as ws2:
                w2 = await say_hello(ws2)
                assert w2["type"] == "welcome" and w2["session"] != w1["session"]
                assert await expect_close(ws1) == 4003
                assert sim.agent("C1001", "pbx-hq")["session"] == w2["session"]
                # the other system is independent
                async with connect(sim) as ws3:
                    assert (await say_hello(ws3, system="pbx-b"))["type"] == "welcome"
                    await ws2.send(json.dumps({"type": "status", "id": 2}))
                    assert (await recv_json(ws2))["type"] == "ack"
    run(go())
    a = sim.agent("C1001", "pbx-hq")
    assert a["hellos"] == 2 and a["welcomes"] == 2


def test_admin_send_job_drop(sim):
    async def go():
        async with connect(sim) as ws:
            await say_hello(ws)
            r = sim.admin("POST", "/send", {"customer": "C1001", "system": "pbx-hq",
                                            "message": {"type": "frobnicate", "x": 1}})
            m = await recv_json(ws)
            assert m == {"type": "frobnicate", "id": r["id"], "x": 1} and m["id"] == 2
            sim.admin("POST", "/send", {"customer": "C1001", "system": "pbx-hq",
                                        "raw": "garbage{"})
            assert await asyncio.wait_for(ws.recv(), 3) == "garbage{"
            r = sim.admin("POST", "/job", {"customer": "C1001", "system": "pbx-hq",
                                           "op": "backup"})
            m = await recv_json(ws)
            assert m["type"] == "job" and m["job"] == r["job"] and m["op"] == "backup"
            assert m["id"] == r["id"] == 3 and m["args"] == {}
            r = sim.admin("POST", "/job", {"customer": "C1001", "system": "pbx-hq",
                                           "op": "restore", "job": "J-1",
                                           "args": {"a": 1}})
            assert r["job"] == "J-1"
            m = await recv_json(ws)
            assert m["job"] == "J-1" and m["args"] == {"a": 1}
            sim.admin("POST", "/drop", {"customer": "C1001", "system": "pbx-hq"})
            assert await expect_close(ws) == 1001
        wait_until(lambda: not sim.agent("C1001", "pbx-hq")["connected"], what="gone")
        st, _ = sim.admin_status("POST", "/drop", {"customer": "C1001", "system": "pbx-hq"})
        assert st == 404
    run(go())
    c = sim.events("close")[-1]
    assert c["code"] == 1001 and c["by"] == "comsim"


def test_stall(sim):
    async def go():
        async with connect(sim) as ws:
            await say_hello(ws)
            pong = await ws.ping()
            await asyncio.wait_for(pong, 2)
            sim.admin("POST", "/stall", {"customer": "C1001", "system": "pbx-hq"})
            a = sim.agent("C1001", "pbx-hq")
            assert a["stalled"] and a["connected"]
            pong = await ws.ping()
            await ws.send(json.dumps({"type": "status", "id": 2}))
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(pong), 1.5)
            assert ws.open
            assert not sim.events("close")
            # a new link for the same system replaces the stalled one
            async with connect(sim) as ws2:
                assert (await say_hello(ws2))["type"] == "welcome"
                wait_until(lambda: sim.events("close"), 5, "stalled link closed")
                assert not sim.agent("C1001", "pbx-hq")["stalled"]
    run(go())


def test_restart(sim):
    async def go():
        async with connect(sim) as ws:
            await say_hello(ws)
            t0 = time.monotonic()
            # in a thread: comsim waits for our close reply before answering
            r = await asyncio.to_thread(sim.admin, "POST", "/restart", {"down_ms": 700})
            assert r["port"] == sim.port
            assert await expect_close(ws) == 1001
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", sim.port), timeout=1).close()

        def up():
            try:
                socket.create_connection(("127.0.0.1", sim.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(up, 5, "listener back")
        assert time.monotonic() - t0 >= 0.6
        async with connect(sim) as ws:
            assert (await say_hello(ws))["type"] == "welcome"
    run(go())
    assert sim.agent("C1001", "pbx-hq")["welcomes"] == 2


def test_process_restart_same_port(sim):
    port = sim.port
    assert sim.stop() == 0
    assert not os.path.exists(os.path.join(sim.dir, "comsim.json"))
    sim.start()
    assert sim.port == port

    async def go():
        async with connect(sim) as ws:
            assert (await say_hello(ws))["type"] == "welcome"
    run(go())


def test_tls_errors(sim, tmp_path):
    other_ca, _ = comsim.make_ca(str(tmp_path / "other"), cn="other CA")

    async def go():
        with pytest.raises(ssl.SSLCertVerificationError):
            async with connect(sim, ca=other_ca):
                pass
    run(go())
    with socket.create_connection(("127.0.0.1", sim.port)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(3)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
    evs = wait_until(lambda: len(sim.events("tls_error")) >= 2 and sim.events("tls_error"),
                     what="two tls_error events")
    for e in evs:
        assert e["peer"].startswith("127.0.0.1:") and e["error"]
    assert not sim.events("hello")
    # the server survived
    async def ok():
        async with connect(sim) as ws:
            assert (await say_hello(ws))["type"] == "welcome"
    run(ok())


def test_garbage_does_not_kill(sim):
    async def go():
        for junk in (b"\xff" * 100, b"\x00\x00\x00\x00", "\udcff".encode("utf-8", "surrogatepass")):
            async with connect(sim) as ws:
                await say_hello(ws)
                try:
                    await ws.send(junk)
                    await asyncio.wait_for(ws.recv(), 2)
                except (websockets.exceptions.ConnectionClosed, asyncio.TimeoutError):
                    pass
        async with connect(sim) as ws:
            await say_hello(ws)
            await ws.send('{"type":"status","id":2,"x":' + "[" * 5000 + "]" * 5000 + "}")
            r = await recv_json(ws)
            assert r["type"] == "error"
            await ws.send('{"type":"status","id":3,"n":NaN}')
            assert (await recv_json(ws))["type"] == "error"
    run(go())
    # raw TCP noise straight into the admin API and TLS port
    for port in (sim.admin_port, sim.port):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(os.urandom(3000) + b"\r\n\r\n")
            s.settimeout(3)
            try:
                s.recv(100)
            except OSError:
                pass
    assert sim.running
    assert isinstance(sim.agents(), list)


def test_admin_errors(sim):
    st, body = sim.admin_status("GET", "/nope")
    assert st == 404 and "error" in body
    st, body = sim.admin_status("POST", "/nope", {})
    assert st == 404
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", sim.admin_port, timeout=5)
    c.request("POST", "/drop", body=b"{not json", headers={"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 400 and "error" in json.loads(r.read())
    assert r.getheader("Connection") == "close"
    c.close()
    st, body = sim.admin_status("POST", "/job", {"customer": "C1001"})
    assert st == 400
    st, body = sim.admin_status("POST", "/stall", {"customer": "C1001", "system": "pbx-hq"})
    assert st == 404


def test_events_since_and_agents(sim):
    agents = sim.agents()
    assert {(a["customer"], a["system"]) for a in agents} >= {("C1001", "pbx-hq")}
    a = sim.agent("C1001", "pbx-hq")
    assert a == {"customer": "C1001", "system": "pbx-hq", "connected": False,
                 "session": None, "peer": None, "hellos": 0, "welcomes": 0,
                 "last_hello": None, "stalled": False, "status": None,
                 "status_at": None, "custom_lists": 0}
    last = sim.last_seq()

    async def go():
        async with connect(sim) as ws:
            await say_hello(ws)
    run(go())
    wait_until(lambda: sim.events("close", since=last), what="the link's close event")
    new = sim.events(since=last)
    assert new and all(e["seq"] > last for e in new)
    assert sim.events(since=new[-1]["seq"]) == []
    assert sim.agent("C1001", "pbx-hq")["last_hello"] > time.time() - 30


def test_ctl(sim):
    def ctl(*a):
        return subprocess.run(["/usr/bin/python3",
                               os.path.join(HERE, "comsim.py"), "ctl", "--dir",
                               sim.dir, *a], capture_output=True, text=True, timeout=20)
    r = ctl("agents")
    assert r.returncode == 0 and any(a["system"] == "pbx-hq" for a in json.loads(r.stdout))
    r = ctl("events")
    assert r.returncode == 0 and json.loads(r.stdout)[0]["kind"] in ("listen", "ready")
    r = ctl("stall", "C1001", "pbx-hq")
    assert r.returncode == 1 and "error" in json.loads(r.stdout)

    async def go():
        async with connect(sim) as ws:
            await say_hello(ws)
            r = ctl("job", "C1001", "pbx-hq", "backup")
            assert r.returncode == 0, r.stderr
            jid = json.loads(r.stdout)["job"]
            m = await recv_json(ws)
            assert m["job"] == jid
            r = ctl("drop", "C1001", "pbx-hq")
            assert r.returncode == 0
            assert await expect_close(ws) == 1001
    run(go())
    r = ctl("restart", "100")
    assert r.returncode == 0 and json.loads(r.stdout)["restarting"]


def test_bad_customers_file(tmp_path):
    p = tmp_path / "c.json"
    p.write_text("{nope")
    r = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "comsim.py"), "serve",
                        "--dir", str(tmp_path), "--customers", str(p)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "comsim:" in r.stderr


def test_record_behaviours(tmp_path, pki):
    for f in os.listdir(pki):
        shutil.copy(os.path.join(pki, f), tmp_path / f)
    base = {"customer": "C1", "user": "u", "password": "p"}
    s = comsim.SimProcess(str(tmp_path), customers=[
        dict(base, system="ignore", on_hello="ignore"),
        dict(base, system="drop", on_hello="drop"),
        dict(base, system="flap", after_welcome="drop"),
        dict(base, system="extra", welcome_extra={"future": [1], "max_streams": 8}),
        dict(base, system="noack", ack_jobs=False),
    ])
    s.start()
    try:
        async def go():
            hello = dict(customer="C1", user="u", password="p")
            async with connect(s) as ws:
                await ws.send(json.dumps(hello_msg(system="ignore", **hello)))
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(ws.recv(), 1)
            async with connect(s) as ws:
                await ws.send(json.dumps(hello_msg(system="drop", **hello)))
                assert await expect_close(ws) == 1001
            async with connect(s) as ws:
                w = await say_hello(ws, system="flap", **hello)
                assert w["type"] == "welcome"
                assert await expect_close(ws) == 1001
            async with connect(s) as ws:
                w = await say_hello(ws, system="extra", **hello)
                assert w["future"] == [1] and w["max_streams"] == 8
            async with connect(s) as ws:
                await say_hello(ws, system="noack", **hello)
                await ws.send(json.dumps({"type": "job.state", "id": 2, "job": "J",
                                          "state": "rejected", "reason": "unsupported"}))
                await ws.send(json.dumps({"type": "status", "id": 3}))
                assert (await recv_json(ws))["re"] == 3     # no ack for id 2
                s.admin("POST", "/customers", dict(base, system="noack"))
                await ws.send(json.dumps({"type": "job.state", "id": 4, "job": "J",
                                          "state": "rejected", "reason": "unsupported"}))
                assert (await recv_json(ws))["re"] == 4
        run(go())
    finally:
        assert s.stop() == 0
        s.kill()


# ================================================================== proxy
#
# COM's remote-support proxy (PROTOCOL.md sections 3, 3.1), driven with a
# fake agent: websockets' client that says hello and then carries tunnels to
# local TCP services, with credit flow control both ways.

DOMAIN = "com.example.test"


def dest(label, port=22):
    return "%s.maint.%s:%d" % (label, DOMAIN, port)


async def echo_server():
    """A local TCP echo service; returns (server, port)."""
    async def handle(r, w):
        try:
            while True:
                data = await r.read(65536)
                if not data:
                    break
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.close()
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


async def banner_server(payload):
    """Sends payload, then closes (a service that ends the connection)."""
    async def handle(r, w):
        w.write(payload)
        await w.drain()
        w.close()
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class FStream:
    def __init__(self, sid, window, allowance):
        self.sid = sid
        self.hdr = sid.to_bytes(4, "big")
        self.granted = window        # what comsim may send us, in total
        self.allowance = allowance   # what we may still send comsim
        self.received = 0
        self.consumed = 0
        self.credited = 0
        self.sent = 0
        self.evt = asyncio.Event()
        self.q = asyncio.Queue()
        self.writer = None
        self.tasks = []
        self.closed = None           # stream.close message comsim sent


class FakeAgent:
    """route(open_msg) -> ("connect", port) | ("close", reason, message) |
    ("ignore",).  window/credit_step: what we grant comsim; frame: our
    data frame size; ignore_credit: send regardless of comsim's credit."""

    def __init__(self, sim, customer="C1001", system="pbx-hq", route=None,
                 window=65536, credit_step=16384, frame=16384,
                 ignore_credit=False):
        self.sim = sim
        self.customer, self.system = customer, system
        self.route = route
        self.window, self.credit_step, self.frame = window, credit_step, frame
        self.ignore_credit = ignore_credit
        self.opens = []
        self.msgs = []
        self.streams = {}
        self.unknown = []            # (stream id, payload) for streams we do not have
        self.violations = []
        self.max_frame = 0
        self.next_id = 2
        self.ws = None

    async def start(self):
        self.ws = await websockets.connect(
            "wss://localhost:%d/agent/v1" % self.sim.port, ssl=client_ctx(self.sim.ca),
            subprotocols=[SUB], ping_interval=None, close_timeout=2, max_size=1 << 20)
        w = await say_hello(self.ws, customer=self.customer, system=self.system)
        assert w["type"] == "welcome", w
        self.task = asyncio.ensure_future(self.run())
        return self

    async def stop(self):
        await self.ws.close()
        await asyncio.wait_for(self.task, 5)

    async def send(self, m):
        m["id"] = self.next_id
        self.next_id += 1
        await self.ws.send(json.dumps(m))

    async def run(self):
        try:
            async for data in self.ws:
                if isinstance(data, bytes):
                    self.on_data(data)
                else:
                    await self.on_msg(json.loads(data))
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            for st in list(self.streams.values()):
                self.drop(st)

    def drop(self, st):
        self.streams.pop(st.sid, None)
        for t in st.tasks:
            t.cancel()
        if st.writer is not None:
            st.writer.close()

    def on_data(self, data):
        sid = int.from_bytes(data[:4], "big")
        payload = data[4:]
        self.max_frame = max(self.max_frame, len(payload))
        st = self.streams.get(sid)
        if st is None:
            self.unknown.append((sid, payload))
            return
        st.received += len(payload)
        if st.received > st.granted:
            self.violations.append("stream %d: %d bytes received, %d granted" % (
                sid, st.received, st.granted))
        st.q.put_nowait(payload)

    async def on_msg(self, m):
        self.msgs.append(m)
        t = m.get("type")
        if t == "stream.open":
            self.opens.append(m)
            asyncio.ensure_future(self.open(m))
        elif t == "stream.credit":
            st = self.streams.get(m["stream"])
            if st is not None:
                st.allowance += m["bytes"]
                st.evt.set()
        elif t == "stream.close":
            st = self.streams.get(m["stream"])
            if st is not None:
                st.closed = m
                st.q.put_nowait(None)      # write what is queued, then close

    async def open(self, m):
        sid = m["stream"]
        what = self.route(m) if self.route else ("close", "not_allowed", "no route")
        if what[0] == "ignore":
            return
        if what[0] == "close":
            await self.send({"type": "stream.close", "stream": sid,
                             "reason": what[1], "message": what[2]})
            return
        try:
            r, w = await asyncio.open_connection("127.0.0.1", what[1])
        except OSError as e:
            await self.send({"type": "stream.close", "stream": sid,
                             "reason": "unreachable",
                             "message": "connect 127.0.0.1:%d: %s" % (what[1], e.strerror)})
            return
        st = FStream(sid, self.window, m["window"])
        st.writer = w
        self.streams[sid] = st
        await self.send({"type": "stream.accept", "re": m["id"], "stream": sid,
                         "window": self.window})
        st.tasks = [asyncio.ensure_future(self.pump(st, r)),
                    asyncio.ensure_future(self.drain(st))]

    async def pump(self, st, reader):
        """TCP -> comsim, within comsim's credit."""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                mv = memoryview(data)
                while mv:
                    while st.allowance <= 0 and not self.ignore_credit:
                        st.evt.clear()
                        await st.evt.wait()
                    n = len(mv) if self.ignore_credit else min(len(mv), st.allowance)
                    n = min(n, self.frame)
                    await self.ws.send(st.hdr + bytes(mv[:n]))
                    st.allowance -= n
                    st.sent += n
                    mv = mv[n:]
            if st.sid in self.streams:
                await self.send({"type": "stream.close", "stream": st.sid,
                                 "reason": "done", "message": ""})
                self.streams.pop(st.sid, None)
        except (websockets.exceptions.ConnectionClosed, ConnectionError):
            pass

    async def drain(self, st):
        """comsim -> TCP; credit back as it is written."""
        try:
            while True:
                payload = await st.q.get()
                if payload is None:
                    break
                st.writer.write(payload)
                await st.writer.drain()
                st.consumed += len(payload)
                give = st.consumed - st.credited
                if give >= self.credit_step and st.sid in self.streams:
                    st.credited += give
                    st.granted += give
                    await self.send({"type": "stream.credit", "stream": st.sid,
                                     "bytes": give})
        except (websockets.exceptions.ConnectionClosed, ConnectionError):
            pass
        finally:
            self.drop(st)


class PClient:
    """An async client of comsim's proxy."""

    def __init__(self, status, headers, body, reader=None, writer=None):
        self.status, self.headers, self.body = status, headers, body
        self.reader, self.writer = reader, writer

    async def read_all(self, timeout=10):
        out = bytearray()
        while True:
            chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not chunk:
                return bytes(out)
            out += chunk

    def close(self):
        if self.writer is not None:
            self.writer.close()


async def proxy_open(sim, target, user="reseller1", password="proxypw", auth=True,
                     raw=None):
    r, w = await asyncio.open_connection("127.0.0.1", sim.proxy_port,
                                         ssl=client_ctx(sim.ca),
                                         server_hostname="localhost")
    if raw is None:
        lines = ["CONNECT %s HTTP/1.1" % target, "Host: %s" % target]
        if auth:
            tok = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
            lines.append("Proxy-Authorization: Basic " + tok)
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
    w.write(raw)
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 20)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    hdrs = {}
    for ln in lines[1:]:
        if ":" in ln:
            k, v = ln.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    if status == 200:
        return PClient(status, hdrs, b"", r, w)
    body = await asyncio.wait_for(r.read(), 10)
    w.close()
    return PClient(status, hdrs, body)


def preq(sim, target=None, **kw):
    """Blocking proxy request (comsim.proxy_request)."""
    return comsim.proxy_request(sim.proxy_port, sim.ca, target, **kw)


async def athread(f, *a, **kw):
    return await asyncio.to_thread(f, *a, **kw)


async def await_until(pred, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------ names

NAME_RECORDS = [
    {"customer": "C1001", "system": "pbx-hq"},
    {"customer": "C1001", "system": "pbx-b"},
    {"customer": "C-1", "system": "pbx-a"},
    {"customer": "C-1", "system": "pbx-main", "primary": True},
    {"customer": "C-1", "system": "pbx-a-b"},
    {"customer": "C-1-x", "system": "s"},
    {"customer": "C-1-x", "system": "t"},
]


@pytest.mark.parametrize("label,port,want", [
    ("C1001", 22, ("C1001", "", "", "pbx-hq")),
    ("c1001", 443, ("C1001", "", "", "pbx-hq")),
    ("C1001-pbx-b", 8443, ("C1001", "pbx-b", "", "pbx-hq")),
    ("C1001-PBX-B", 8443, ("C1001", "pbx-b", "", "pbx-hq")),
    ("C1001-pbx-hq", 22, ("C1001", "pbx-hq", "", "pbx-hq")),
    ("C1001-10.0.0.7", 3389, ("C1001", "", "10.0.0.7", "pbx-hq")),
    ("C1001-pbx-b-192.168.1.254", 22, ("C1001", "pbx-b", "192.168.1.254", "pbx-hq")),
    ("C-1", 22, ("C-1", "", "", "pbx-main")),
    ("C-1-pbx-a", 22, ("C-1", "pbx-a", "", "pbx-main")),
    ("C-1-pbx-a-b", 22, ("C-1", "pbx-a-b", "", "pbx-main")),
    ("C-1-pbx-a-b-10.1.2.3", 65535, ("C-1", "pbx-a-b", "10.1.2.3", "pbx-main")),
    ("C-1-10.1.2.3", 1, ("C-1", "", "10.1.2.3", "pbx-main")),
    ("C-1-x", 22, ("C-1-x", "", "", "s")),
    ("C-1-x-t", 22, ("C-1-x", "t", "", "s")),
    ("C-1-x-0.0.0.0", 22, ("C-1-x", "", "0.0.0.0", "s")),
])
def test_parse_destination(label, port, want):
    d = comsim.parse_destination(dest(label, port).replace(DOMAIN, DOMAIN.upper()),
                                 DOMAIN, NAME_RECORDS)
    assert (d["customer"], d["system"], d["host"], d["primary"]) == want
    assert d["port"] == port


@pytest.mark.parametrize("target,status,words", [
    ("C1001.maint.example.org:22", 400, "must end in .maint.com.example.test"),
    ("C1001.com.example.test:22", 400, "must end in"),
    ("C1001.maint.com.example.test.evil:22", 400, "must end in"),
    ("C1001.maint.com.example.test", 400, "no port"),
    ("C1001.maint.com.example.test:", 400, "bad port"),
    ("C1001.maint.com.example.test:0", 400, "out of range"),
    ("C1001.maint.com.example.test:65536", 400, "out of range"),
    ("C1001.maint.com.example.test:123456", 400, "bad port"),
    ("C1001.maint.com.example.test:+22", 400, "bad port"),
    ("C1001.maint.com.example.test:2a", 400, "bad port"),
    (".maint.com.example.test:22", 400, "empty name"),
    ("maint.com.example.test:22", 400, "must end in"),
    (":22", 400, "empty host"),
    ("", 400, "empty"),
    ("C1001..maint.com.example.test:22", 400, "empty DNS label"),
    ("C1001-.maint.com.example.test:22", 400, "'-'"),
    ("-C1001.maint.com.example.test:22", 400, "'-'"),
    ("C1001!x.maint.com.example.test:22", 400, "bad character '!'"),
    ("C1001 x.maint.com.example.test:22", 400, "bad character ' '"),
    ("C1001%2e.maint.com.example.test:22", 400, "bad character '%'"),
    ("C1001/x.maint.com.example.test:22", 400, "bad character '/'"),
    ("[::1]:22", 400, "IP literal"),
    ("10.0.0.7:22", 400, "must end in"),
    ("C1001-10.0.0.256.maint.com.example.test:22", 400, "bad IPv4 address"),
    ("C1001-010.0.0.7.maint.com.example.test:22", 400, "bad IPv4 address"),
    ("C1001-pbx-b-10.0.0.999.maint.com.example.test:22", 400, "bad IPv4 address"),
    ("C1001-10.0.0.maint.com.example.test:22", 400, "'.' is only allowed"),
    ("C9.maint.com.example.test:22", 404, "unknown customer"),
    ("C10011.maint.com.example.test:22", 404, "unknown customer"),
    ("C1001x-pbx.maint.com.example.test:22", 404, "unknown customer"),
    ("C1001-nope.maint.com.example.test:22", 404, "unknown system nope"),
    ("C1001-pbx-b-x.maint.com.example.test:22", 404, "unknown system pbx-b-x"),
    ("C-1-x-pbx-a.maint.com.example.test:22", 404, "unknown system pbx-a of customer C-1-x"),
])
def test_parse_destination_refusals(target, status, words):
    with pytest.raises(comsim.ProxyRefusal) as e:
        comsim.parse_destination(target, DOMAIN, NAME_RECORDS)
    assert e.value.status == status and words in e.value.message, e.value.message


def test_parse_destination_account():
    with pytest.raises(comsim.ProxyRefusal) as e:
        comsim.parse_destination(dest("C1001"), DOMAIN, NAME_RECORDS, allowed=["C-1"])
    assert e.value.status == 403
    d = comsim.parse_destination(dest("C-1-pbx-a"), DOMAIN, NAME_RECORDS, allowed=["C-1"])
    assert d["customer"] == "C-1"


# ------------------------------------------------------------------ proxy HTTP

def test_proxy_port_and_pac(sim):
    info = json.load(open(os.path.join(sim.dir, "comsim.json")))
    assert info["proxy_port"] == sim.proxy_port > 0 and info["proxy_port"] != sim.port
    assert info["com_domain"] == DOMAIN
    r = preq(sim, "/com/remoteproxy/proxy.pac", method="GET", auth=False)
    assert r.status == 200
    assert r.headers["content-type"] == "application/x-ns-proxy-autoconfig"
    pac = r.body.decode()
    assert "function FindProxyForURL(url, host)" in pac
    assert '"*.maint.com.example.test"' in pac
    assert '"HTTPS localhost:%d"' % sim.proxy_port in pac
    assert '"DIRECT"' in pac
    r = preq(sim, "http://whatever/com/remoteproxy/proxy.pac?x=1", method="GET", auth=False)
    assert r.status == 200 and r.body.decode() == pac
    for path in ("/", "/com/remoteproxy/proxy.pac2", "/agent/v1"):
        r = preq(sim, path, method="GET", auth=False)
        assert r.status == 404, path
    assert sim.events("proxy_pac")


def test_proxy_auth(sim):
    realm = 'Basic realm="COM remote support"'
    t = dest("C1001")
    for kw in ({"auth": False}, {"password": "wrong"}, {"user": "nobody"},
               {"password": ""}):
        r = preq(sim, t, **kw)
        assert r.status == 407, kw
        assert r.headers["proxy-authenticate"] == realm
    for hdr in ("Basic !!!notbase64", "Bearer abc", "Basic " +
                base64.b64encode(b"no-colon").decode(), "Basic"):
        raw = ("CONNECT %s HTTP/1.1\r\nProxy-Authorization: %s\r\n\r\n" % (t, hdr)).encode()
        r = preq(sim, raw=raw)
        assert r.status == 407 and r.headers["proxy-authenticate"] == realm, hdr
    ev = sim.events("tunnel_refused")
    assert len(ev) == 8 and all(e["status"] == 407 for e in ev)
    assert "proxypw" not in sim.log()
    # accounts: list, upsert, use
    assert sim.admin("GET", "/proxy_accounts") == [{"user": "reseller1", "customers": None}]
    sim.admin("POST", "/proxy_accounts", {"user": "eng2", "password": "pw2"})
    r = preq(sim, t, user="eng2", password="pw2")
    assert r.status == 502      # authenticated; nobody connected
    st, body = sim.admin_status("POST", "/proxy_accounts", {"user": "x"})
    assert st == 400 and "error" in body


def test_proxy_bad_requests(sim):
    def raw(data):
        return preq(sim, raw=data)
    t = dest("C1001")
    r = raw(os.urandom(1) + b"\x00\xff" + os.urandom(2000))
    assert r.status == 400
    r = raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")   # TLS inside TLS
    assert r.status == 400
    r = raw(b"HELLO\r\n\r\n")
    assert r.status == 400
    r = raw(b"CONNECT  x HTTP/1.1\r\n\r\n")
    assert r.status == 400
    r = raw(b"CONNECT x\r\n\r\n")
    assert r.status == 400
    r = raw(b"connect x HTTP/1.1\r\n\r\n")
    assert r.status == 405 and r.headers["allow"] == "CONNECT, GET"
    for m in ("DELETE", "POST", "HEAD", "PUT", "OPTIONS"):
        r = raw(("%s / HTTP/1.1\r\n\r\n" % m).encode())
        assert r.status == 405, m
    r = raw(("CONNECT %s HTTP/2.0\r\n\r\n" % t).encode())
    assert r.status == 505
    r = raw(("CONNECT %s HTTP/1.1\r\nbad header\r\n\r\n" % t).encode())
    assert r.status == 400 and b"bad header line" in r.body
    r = raw(("CONNECT %s HTTP/1.1\r\nX-Pad: %s\r\n\r\n" % (t, "a" * 9000)).encode())
    assert r.status == 431
    r = raw(b"CONNECT " + b"a" * 9000)
    assert r.status == 400
    # a header that never completes: 408 after --proxy-header-timeout (1 s)
    t0 = time.monotonic()
    r = raw(b"CONNECT x HTTP/1.1\r\n")
    assert r.status == 408 and 0.8 < time.monotonic() - t0 < 5
    # bare LF line ends are accepted
    r = raw(("CONNECT %s HTTP/1.1\nProxy-Authorization: Basic %s\n\n" % (
        dest("C9"), base64.b64encode(b"reseller1:proxypw").decode())).encode())
    assert r.status == 404
    # malformed names, over the wire
    for target, words in (
            ("C1001.maint.example.org:22", "must end in .maint.com.example.test"),
            ("C1001.maint.com.example.test", "no port"),
            ("C1001.maint.com.example.test:0", "out of range"),
            ("C1001.maint.com.example.test:65536", "out of range"),
            (".maint.com.example.test:22", "empty name"),
            ("C1001..maint.com.example.test:22", "empty DNS label"),
            ("C1001_%.maint.com.example.test:22", "bad character '%'"),
            ("C1001-10.0.0.300.maint.com.example.test:22", "bad IPv4 address")):
        r = preq(sim, target)
        assert r.status == 400, target
        assert words in r.body.decode(), (target, r.body)
        assert r.headers["x-com-reason"] == "bad_destination"
    # raw TCP noise on the proxy port (not TLS)
    with socket.create_connection(("127.0.0.1", sim.proxy_port)) as s:
        s.sendall(os.urandom(3000))
        s.settimeout(3)
        try:
            s.recv(100)
        except OSError:
            pass
    wait_until(lambda: any(e.get("listener") == "proxy" for e in sim.events("tls_error")),
               what="tls_error on the proxy listener")
    assert sim.proxy(dest("C1001")).status == 502       # still serving


def test_proxy_404_403_502(sim):
    r = preq(sim, dest("C9999"))
    assert r.status == 404 and b"unknown customer" in r.body
    r = preq(sim, dest("C1001-nope"))
    assert r.status == 404 and b"unknown system nope" in r.body
    assert r.headers["x-com-reason"] == "unknown_system"
    sim.admin("POST", "/proxy_accounts", {"user": "limited", "password": "lpw",
                                          "customers": ["C2"]})
    r = preq(sim, dest("C1001"), user="limited", password="lpw")
    assert r.status == 403 and b"may not reach customer C1001" in r.body
    r = preq(sim, dest("C2"), user="limited", password="lpw")
    assert r.status == 502
    r = preq(sim, dest("C1001"))
    assert r.status == 502 and r.body == b"system not connected: C1001/pbx-hq\n"
    assert r.headers["x-com-reason"] == "not_connected"
    ev = sim.events("tunnel_refused")
    assert [e["status"] for e in ev] == [404, 404, 403, 502, 502]
    assert ev[-1]["customer"] == "C1001" and ev[-1]["user"] == "reseller1"


# ------------------------------------------------------------------ tunnels

def test_tunnel_echo(sim):
    async def go():
        srv, eport = await echo_server()
        agent = await FakeAgent(sim, route=lambda m: ("connect", eport)).start()
        c = await proxy_open(sim, dest("C1001"))
        assert c.status == 200
        o = agent.opens[0]
        assert {k: v for k, v in o.items() if k != "id"} == {
            "type": "stream.open", "stream": 2, "kind": "tunnel", "window": 65536,
            "system": "", "host": "", "port": 22, "user": "reseller1",
            "client": "127.0.0.1:%d" % c.writer.get_extra_info("sockname")[1]}
        data = os.urandom(3 << 20)

        async def feed():
            for i in range(0, len(data), 100000):
                c.writer.write(data[i:i + 100000])
                await c.writer.drain()
        feeder = asyncio.ensure_future(feed())
        got = bytearray()
        tun = None
        while len(got) < len(data):
            chunk = await asyncio.wait_for(c.reader.read(65536), 10)
            assert chunk
            got += chunk
            if tun is None and len(got) > len(data) // 2:
                tun = await athread(sim.tunnels)
        await feeder
        assert bytes(got) == data
        assert len(tun) == 1
        t = tun[0]
        assert (t["customer"], t["system"], t["host"], t["port"], t["stream"]) == \
            ("C1001", "pbx-hq", "", 22, 2)
        assert t["bytes_to_agent"] > 0 and t["bytes_from_agent"] > 0 and t["age"] >= 0
        # client EOF: the agent gets stream.close done
        c.writer.write_eof() if c.writer.can_write_eof() else c.writer.close()
        c.writer.close()
        await asyncio.sleep(0)
        for _ in range(200):
            if any(m["type"] == "stream.close" for m in agent.msgs):
                break
            await asyncio.sleep(0.02)
        closes = [m for m in agent.msgs if m["type"] == "stream.close"]
        assert closes and closes[0]["stream"] == 2 and closes[0]["reason"] == "done"
        # a second tunnel gets the next even id
        c2 = await proxy_open(sim, dest("C1001-pbx-hq", 443))
        assert c2.status == 200 and agent.opens[1]["stream"] == 4
        assert agent.opens[1]["system"] == "pbx-hq" and agent.opens[1]["port"] == 443
        c2.writer.write(b"ping")
        assert await asyncio.wait_for(c2.reader.readexactly(4), 5) == b"ping"
        c2.close()
        assert not agent.violations and agent.max_frame <= 16384
        await agent.stop()
        srv.close()
    run(go())
    wait_until(lambda: len(sim.events("tunnel_close")) == 2, what="two tunnel_close")
    op = sim.events("tunnel_open")[0]
    assert (op["customer"], op["system"], op["host"], op["port"], op["stream"], op["user"]) \
        == ("C1001", "pbx-hq", "", 22, 2, "reseller1")
    cl = sim.events("tunnel_close")[0]
    assert cl["bytes_to_agent"] == cl["bytes_from_agent"] == 3 << 20
    assert cl["by"] == "client" and cl["duration"] > 0
    assert not sim.events("stream_violation")
    # credit messages are not logged one by one
    assert not [m for m in sim.messages(type="stream.credit")]
    assert not [e for e in sim.events("sent") if e.get("msg", {}).get("type") == "stream.credit"]


def test_tunnel_agent_closes(sim):
    """The service ends: the client gets everything, then EOF."""
    payload = b"SSH-2.0-test\r\n" + os.urandom(300000)

    async def go():
        srv, bport = await banner_server(payload)
        agent = await FakeAgent(sim, route=lambda m: ("connect", bport),
                                frame=5000).start()
        c = await proxy_open(sim, dest("C1001"))
        assert c.status == 200
        assert await c.read_all() == payload
        await agent.stop()
        srv.close()
    run(go())
    cl = wait_until(lambda: sim.events("tunnel_close"), what="tunnel_close")[0]
    assert cl["by"] == "agent" and cl["reason"] == "done"
    assert cl["bytes_from_agent"] == len(payload)


def test_tunnel_agent_refusals(sim):
    refused_port = closed_port()

    def route(m):
        if m["port"] == 3389:
            return ("close", "not_allowed", "no tunnel configured for %s:3389" % m["host"])
        if m["port"] == 25:
            return ("close", "not_allowed", "port 25 is not a remote-support service")
        if m["port"] == 7071:
            return ("close", "limit", "too many streams")
        if m["port"] == 9:
            return ("ignore",)
        return ("connect", refused_port)

    async def go():
        agent = await FakeAgent(sim, route=route).start()
        c = await proxy_open(sim, dest("C1001-10.0.0.7", 3389))
        assert c.status == 403
        assert c.body == b"no tunnel configured for 10.0.0.7:3389\n"
        assert c.headers["x-com-reason"] == "not_allowed"
        assert agent.opens[-1]["host"] == "10.0.0.7" and agent.opens[-1]["system"] == ""
        c = await proxy_open(sim, dest("C1001", 25))
        assert c.status == 403 and b"port 25" in c.body
        c = await proxy_open(sim, dest("C1001", 22))
        assert c.status == 502 and c.headers["x-com-reason"] == "unreachable"
        assert b"connect 127.0.0.1:%d: " % refused_port in c.body
        c = await proxy_open(sim, dest("C1001", 7071))
        assert c.status == 502 and c.headers["x-com-reason"] == "limit"
        t0 = time.monotonic()
        c = await proxy_open(sim, dest("C1001", 9))          # --tunnel-timeout 2
        assert c.status == 504 and c.headers["x-com-reason"] == "timeout"
        assert 1.5 < time.monotonic() - t0 < 6
        for _ in range(100):
            if agent.msgs[-1]["type"] == "stream.close":
                break
            await asyncio.sleep(0.02)
        last = agent.msgs[-1]
        assert last["type"] == "stream.close" and last["reason"] == "timeout"
        assert last["stream"] == agent.opens[-1]["stream"]
        assert [o["stream"] for o in agent.opens] == [2, 4, 6, 8, 10]
        await agent.stop()
    run(go())
    ev = sim.events("tunnel_refused")
    assert [(e["status"], e["reason"]) for e in ev] == [
        (403, "not_allowed"), (403, "not_allowed"), (502, "unreachable"),
        (502, "limit"), (504, "timeout")]
    assert ev[0]["message"] == "no tunnel configured for 10.0.0.7:3389"
    assert not sim.events("tunnel_open")


def test_tunnel_name_routing(sim):
    """'-' in customer ids and system names, co-located IPs, primary."""
    seen = []

    def route(m):
        seen.append(m)
        return ("close", "not_allowed", "seen")

    async def go():
        main = await FakeAgent(sim, customer="C-1", system="pbx-main", route=route).start()
        cases = [("c-1", "", ""), ("C-1-pbx-a", "pbx-a", ""),
                 ("C-1-PBX-A-B", "pbx-a-b", ""),
                 ("C-1-pbx-a-b-10.1.2.3", "pbx-a-b", "10.1.2.3"),
                 ("C-1-10.1.2.3", "", "10.1.2.3"),
                 ("C-1-pbx-main", "pbx-main", "")]
        for label, system, host in cases:
            c = await proxy_open(sim, dest(label, 8443))
            assert c.status == 403 and c.body == b"seen\n", label
            assert (seen[-1]["system"], seen[-1]["host"], seen[-1]["port"]) == \
                (system, host, 8443), label
        # C-1-x is a customer of its own (longest prefix), not connected yet
        c = await proxy_open(sim, dest("C-1-x"))
        assert c.status == 502 and b"C-1-x/s" in c.body
        x = await FakeAgent(sim, customer="C-1-x", system="s", route=route).start()
        c = await proxy_open(sim, dest("C-1-x-t"))
        assert c.status == 403 and seen[-1]["system"] == "t"
        assert len(seen) == len(cases) + 1
        c = await proxy_open(sim, dest("C-1-x-pbx-a"))
        assert c.status == 404
        await main.stop()
        await x.stop()
    run(go())


def test_tunnel_credit(sim):
    """A fake agent that grants little: comsim never exceeds it, and keeps
    granting credit to an agent that sends in small frames."""
    async def go():
        srv, eport = await echo_server()
        agent = await FakeAgent(sim, route=lambda m: ("connect", eport),
                                window=3000, credit_step=1000, frame=1000).start()
        c = await proxy_open(sim, dest("C1001"))
        assert c.status == 200
        data = os.urandom(1 << 20)
        c.writer.write(data)            # far more than the agent's window
        got = await asyncio.wait_for(c.reader.readexactly(len(data)), 30)
        assert got == data
        assert not agent.violations, agent.violations[:3]
        assert 0 < agent.max_frame <= 3000
        st = agent.streams[2]
        assert st.received == len(data) <= st.granted
        c.close()
        await agent.stop()
        srv.close()
    run(go())
    assert not sim.events("stream_violation")


def test_tunnel_agent_violations(sim):
    """Data beyond comsim's credit closes the stream with flow; data for a
    stream that is not open is answered unknown_stream once per id."""
    async def go():
        srv, bport = await banner_server(os.urandom(400000))
        agent = await FakeAgent(sim, route=lambda m: ("connect", bport),
                                ignore_credit=True).start()
        # comsim grants 4096 bytes and no more credit
        r = await athread(sim.admin, "POST", "/stream_open",
                          {"customer": "C1001", "port": 22, "window": 4096,
                           "credit": False})
        await await_until(lambda: agent.opens, what="stream.open")
        assert r["stream"] == 2 and agent.opens[-1]["window"] == 4096
        cl = await await_until(lambda: [m for m in agent.msgs if m["type"] == "stream.close"],
                               what="stream.close flow")
        assert cl[0]["stream"] == 2 and cl[0]["reason"] == "flow"
        n = len(agent.msgs)
        for _ in range(2):
            await agent.ws.send(b"\x00\x00\x00\x07xx")
        await agent.ws.send(json.dumps({"type": "stream.credit", "id": 900, "stream": 11,
                                        "bytes": 5}))
        await asyncio.sleep(0.5)
        new = agent.msgs[n:]
        assert [(m["type"], m["stream"], m["reason"]) for m in new] == [
            ("stream.close", 7, "unknown_stream"), ("stream.close", 11, "unknown_stream")]
        await agent.stop()
        srv.close()
    run(go())
    ev = sim.events("stream_violation")
    assert "beyond credit" in ev[0]["error"] and ev[0]["stream"] == 2
    assert [e["stream"] for e in ev[-3:]] == [7, 7, 11]
    cl = sim.events("tunnel_close")[0]
    assert cl["by"] == "comsim" and cl["reason"] == "flow"


def test_tunnel_link_drop(sim):
    async def go():
        srv, eport = await echo_server()
        agent = await FakeAgent(sim, route=lambda m: ("connect", eport)).start()
        c = await proxy_open(sim, dest("C1001"))
        assert c.status == 200
        c.writer.write(b"x" * 1000)
        assert await asyncio.wait_for(c.reader.readexactly(1000), 5) == b"x" * 1000
        t0 = time.monotonic()
        await athread(sim.admin, "POST", "/drop", {"customer": "C1001", "system": "pbx-hq"})
        assert await c.read_all(5) == b""
        assert time.monotonic() - t0 < 3
        assert await athread(sim.tunnels) == []
        c.close()
        await asyncio.wait_for(agent.task, 5)
        srv.close()
    run(go())
    cl = sim.events("tunnel_close")[0]
    assert cl["by"] == "link" and cl["reason"] == "link_lost"


def test_tunnel_admin_api(sim):
    async def go():
        srv, eport = await echo_server()

        def route(m):
            return ("connect", eport) if m["port"] == 7 else ("ignore",)
        agent = await FakeAgent(sim, route=route).start()
        C = {"customer": "C1001", "system": "pbx-hq"}
        r = await athread(sim.admin, "POST", "/stream_open",
                          dict(C, target="pbx-b", host="10.0.0.9", port=7))
        assert r["stream"] == 2
        for _ in range(100):
            if agent.streams:
                break
            await asyncio.sleep(0.02)
        o = agent.opens[0]
        assert (o["stream"], o["system"], o["host"], o["port"], o["client"], o["id"]) == \
            (2, "pbx-b", "10.0.0.9", 7, "", r["id"])
        await athread(wait_until, lambda: sim.events("tunnel_open"), what="tunnel_open")
        tun = await athread(sim.tunnels)
        assert [(t["stream"], t["system"], t["host"], t["port"], t["admin"])
                for t in tun] == [(2, "pbx-b", "10.0.0.9", 7, True)]
        # data through the admin stream, echoed back
        await athread(sim.admin, "POST", "/stream_data",
                      dict(C, stream=2, data_b64=base64.b64encode(b"hello").decode()))
        got = b""
        for _ in range(100):
            rr = await athread(sim.admin, "POST", "/stream_read", dict(C, stream=2))
            got += base64.b64decode(rr["data_b64"])
            if got == b"hello":
                break
            await asyncio.sleep(0.02)
        assert got == b"hello"
        # raw binary frame, any stream id
        r2 = await athread(sim.admin, "POST", "/send_binary",
                           dict(C, stream=99, data_b64=base64.b64encode(b"raw").decode()))
        assert r2["sent"] == 3
        for _ in range(100):
            if agent.unknown:
                break
            await asyncio.sleep(0.02)
        assert agent.unknown == [(99, b"raw")]
        # explicit stream id; a stream id in use is refused
        r3 = await athread(sim.admin, "POST", "/stream_open", dict(C, port=9, stream=40))
        assert r3["stream"] == 40
        st, _ = await athread(sim.admin_status, "POST", "/stream_open",
                              dict(C, port=9, stream=40))
        assert st == 409
        r4 = await athread(sim.admin, "POST", "/stream_open", {"customer": "C1001", "port": 9})
        assert r4["stream"] == 42
        # close from comsim
        await athread(sim.admin, "POST", "/stream_close", dict(C, stream=2))
        for _ in range(100):
            if 2 not in agent.streams:
                break
            await asyncio.sleep(0.02)
        assert any(m["type"] == "stream.close" and m["stream"] == 2 and m["reason"] == "done"
                   for m in agent.msgs)
        st, _ = await athread(sim.admin_status, "POST", "/stream_open",
                              {"customer": "C9", "port": 9})
        assert st == 404
        await agent.stop()
        srv.close()
    run(go())
    # the agent's answers to admin streams are events
    assert any(m["type"] == "stream.accept" for m in sim.messages())
    cl = sim.events("tunnel_close")[0]
    assert cl["stream"] == 2 and cl["by"] == "comsim" and cl["admin"]


def test_stream_flood(sim):
    """POST /stream_flood: count stream.opens back to back, fresh even ids,
    every one followed up like an admin /stream_open (accept or refusal)."""
    async def go():
        srv, eport = await echo_server()
        seen = []

        def route(m):
            seen.append(m["stream"])
            if len(seen) <= 3:
                return ("connect", eport)
            return ("close", "limit", "too many streams (max 3)")
        agent = await FakeAgent(sim, route=route).start()
        C = {"customer": "C1001", "system": "pbx-hq"}
        for bad in ({"count": 0}, {"count": 10001}, {"count": "5"},
                    {"count": 5, "port": "x"}, {"count": 5, "window": -1}):
            st, _ = await athread(sim.admin_status, "POST", "/stream_flood",
                                  dict(C, **bad))
            assert st == 400, bad
        st, _ = await athread(sim.admin_status, "POST", "/stream_flood",
                              {"customer": "C9", "count": 1})
        assert st == 404
        r = await athread(sim.admin, "POST", "/stream_flood",
                          dict(C, count=20, port=7))
        assert r["streams"] == list(range(2, 42, 2)), r
        assert len(set(r["ids"])) == 20 and r["ids"] == sorted(r["ids"])
        await athread(wait_until, lambda: len(sim.events("tunnel_refused")) == 17,
                      5, "17 refusals")
        await athread(wait_until, lambda: len(sim.events("tunnel_open")) == 3,
                      5, "3 accepted")
        assert [o["stream"] for o in agent.opens] == r["streams"]
        assert all(o["kind"] == "tunnel" and o["port"] == 7 and o["window"] == 65536
                   for o in agent.opens)
        refused = sim.events("tunnel_refused")
        assert {e["reason"] for e in refused} == {"limit"}
        assert sorted(e["stream"] for e in refused) == r["streams"][3:]
        fl = sim.events("stream_flood")
        assert len(fl) == 1 and (fl[0]["count"], fl[0]["first"], fl[0]["last"]) == \
            (20, 2, 40)
        # the next admin stream takes the next id
        r2 = await athread(sim.admin, "POST", "/stream_open", dict(C, port=9))
        assert r2["stream"] == 42
        await agent.stop()
        srv.close()
    run(go())


def test_tunnel_client_gone_while_opening(sim):
    async def go():
        agent = await FakeAgent(sim, route=lambda m: ("ignore",)).start()
        r, w = await asyncio.open_connection("127.0.0.1", sim.proxy_port,
                                             ssl=client_ctx(sim.ca),
                                             server_hostname="localhost")
        tok = base64.b64encode(b"reseller1:proxypw").decode()
        w.write(("CONNECT %s HTTP/1.1\r\nProxy-Authorization: Basic %s\r\n\r\nearly"
                 % (dest("C1001"), tok)).encode())
        for _ in range(100):
            if agent.opens:
                break
            await asyncio.sleep(0.02)
        w.close()
        for _ in range(100):
            if any(m["type"] == "stream.close" for m in agent.msgs):
                break
            await asyncio.sleep(0.02)
        cl = [m for m in agent.msgs if m["type"] == "stream.close"]
        assert cl and cl[0]["stream"] == 2
        # its late accept is ignored
        await agent.send({"type": "stream.accept", "stream": 2, "window": 65536})
        await agent.send({"type": "status"})
        await asyncio.sleep(0.3)
        assert [m["type"] for m in agent.msgs[-1:]] == ["ack"]
        await agent.stop()
    run(go())
    ev = wait_until(lambda: sim.events("tunnel_refused"), what="tunnel_refused")
    assert ev[0]["reason"] == "done" and ev[0]["status"] is None


def test_tunnel_early_data_and_big_frames(sim):
    """Bytes sent right behind the CONNECT reach the agent after its accept;
    a frame above the agent's 16384 bytes (PROTOCOL.md 3.2) is delivered
    and logged once as a stream_violation."""
    async def go():
        srv, eport = await echo_server()
        agent = await FakeAgent(sim, route=lambda m: ("connect", eport),
                                frame=20000).start()
        c = await proxy_open(sim, None, raw=(
            "CONNECT %s HTTP/1.1\r\nProxy-Authorization: Basic %s\r\n\r\nearly bytes" % (
                dest("C1001"), base64.b64encode(b"reseller1:proxypw").decode())).encode())
        assert c.status == 200
        assert await asyncio.wait_for(c.reader.readexactly(11), 5) == b"early bytes"
        data = os.urandom(200000)
        c.writer.write(data)
        assert await asyncio.wait_for(c.reader.readexactly(len(data)), 10) == data
        assert agent.max_frame <= 16384
        c.close()
        await agent.stop()
        srv.close()
    run(go())
    ev = sim.events("stream_violation")
    assert len(ev) == 1 and "more than the agent's 16384" in ev[0]["error"]


# ================================================================== uploads
#
# Agent-opened upload streams (PROTOCOL.md section 3.3), driven with a fake
# agent that opens them, sends within comsim's credit and ends them.

import hashlib  # noqa: E402


def sha(data):
    return hashlib.sha256(data).hexdigest()


class UStream:
    def __init__(self, sid):
        self.sid = sid
        self.hdr = sid.to_bytes(4, "big")
        self.allowance = 0
        self.credits = []
        self.evt = asyncio.Event()
        self.q = asyncio.Queue()     # stream.accept / stream.close for it
        self.sent = 0
        self.max_allowance = 0


class UpAgent:
    """A fake agent that uploads files: upload() opens stream.open kind
    upload, sends bytes offset.. within comsim's credit (or not), then
    stream.end, and returns (answer to the open, final stream.close)."""

    def __init__(self, sim, customer="C1001", system="pbx-hq"):
        self.sim = sim
        self.customer, self.system = customer, system
        self.msgs = []
        self.binary = []
        self.streams = {}
        self.next_id = 2
        self.next_sid = 1
        self.ws = None
        self.closed = asyncio.Event()

    async def start(self):
        self.ws = await websockets.connect(
            "wss://localhost:%d/agent/v1" % self.sim.port, ssl=client_ctx(self.sim.ca),
            subprotocols=[SUB], ping_interval=None, close_timeout=2, max_size=1 << 20)
        w = await say_hello(self.ws, customer=self.customer, system=self.system)
        assert w["type"] == "welcome", w
        self.task = asyncio.ensure_future(self.run())
        return self

    async def stop(self):
        await self.ws.close()
        await asyncio.wait_for(self.task, 5)

    async def send(self, m):
        m = dict(m, id=self.next_id)
        self.next_id += 1
        await self.ws.send(json.dumps(m))
        return m

    async def run(self):
        try:
            async for data in self.ws:
                if isinstance(data, bytes):
                    self.binary.append(data)
                    continue
                m = json.loads(data)
                self.msgs.append(m)
                st = self.streams.get(m.get("stream"))
                if st is None:
                    continue
                if m["type"] == "stream.credit":
                    st.allowance += m["bytes"]
                    st.credits.append(m["bytes"])
                    st.max_allowance = max(st.max_allowance, st.allowance)
                    st.evt.set()
                elif m["type"] in ("stream.accept", "stream.close"):
                    st.q.put_nowait(m)
                    st.evt.set()
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            self.closed.set()
            for st in self.streams.values():
                st.q.put_nowait(None)
                st.evt.set()

    async def open(self, name, size, digest, job="", sid=None, **extra):
        """stream.open kind upload; returns (UStream, comsim's answer)."""
        if sid is None:
            sid = self.next_sid
        self.next_sid = max(self.next_sid, sid + 2)
        st = self.streams[sid] = UStream(sid)
        m = {"type": "stream.open", "stream": sid, "kind": "upload", "window": 65536,
             "job": job, "name": name, "size": size, "sha256": digest}
        m.update(extra)
        await self.send({k: v for k, v in m.items() if v is not Ellipsis})
        ans = await asyncio.wait_for(st.q.get(), 5)
        if ans is not None and ans["type"] == "stream.accept":
            st.allowance = st.max_allowance = ans["window"]
        return st, ans

    async def send_data(self, st, data, frame=16384, honor_credit=True, stall=5.0):
        """Send data in frames within credit; False if comsim closed the
        stream or the link went away (or no credit came within stall s)."""
        mv = memoryview(data)
        try:
            while mv:
                if not st.q.empty() or self.closed.is_set():
                    return False
                if honor_credit:
                    while st.allowance <= 0:
                        st.evt.clear()
                        if not st.q.empty() or self.closed.is_set():
                            return False
                        await asyncio.wait_for(st.evt.wait(), stall)
                    n = min(len(mv), frame, st.allowance)
                else:
                    n = min(len(mv), frame)
                await self.ws.send(st.hdr + bytes(mv[:n]))
                st.allowance -= n
                st.sent += n
                mv = mv[n:]
        except websockets.exceptions.ConnectionClosed:
            return False
        return True

    async def upload(self, data, name="backup.tar.gz", job="", digest=None, size=None,
                     frame=16384, honor_credit=True, sid=None, **extra):
        """The whole upload: returns (answer to the open, final answer)."""
        st, ans = await self.open(name, len(data) if size is None else size,
                                  sha(data) if digest is None else digest, job, sid,
                                  **extra)
        if ans is None or ans["type"] != "stream.accept":
            return ans, None
        if not await self.send_data(st, data[ans["offset"]:], frame, honor_credit):
            return ans, (None if st.q.empty() else st.q.get_nowait())
        await self.send({"type": "stream.end", "stream": st.sid})
        return ans, await asyncio.wait_for(st.q.get(), 10)


def backup_dir(sim, customer="C1001", system="pbx-hq"):
    return os.path.join(sim.dir, "backups", customer, system)


def send_job(sim, job, op="backup", args=None, customer="C1001", system="pbx-hq"):
    return sim.admin("POST", "/job", {"customer": customer, "system": system,
                                      "op": op, "job": job, "args": args or {}})


def test_upload_happy_path(sim):
    data = os.urandom(300000)
    sim.set_today("2026-11-23")

    async def go():
        ag = await UpAgent(sim).start()
        send_job(sim, "J-20261123-0042", args={"kind": "manual"})
        ans, fin = await ag.upload(data, name="backup-pbx-hq-20261123T023000Z.tar.gz",
                                   job="J-20261123-0042")
        assert ans == {"type": "stream.accept", "id": ans["id"], "re": 2, "stream": 1,
                       "window": 65536, "offset": 0}
        assert fin["type"] == "stream.close" and fin["stream"] == 1
        assert fin["reason"] == "done" and fin["message"] == ""
        st = ag.streams[1]
        assert st.credits and min(st.credits) >= 16384
        # credit only for what was written: never more than the window out
        assert st.max_allowance == 65536
        assert sum(st.credits) + 65536 >= len(data)
        # the agent's own upload (job ""): automatic; an empty file
        ans, fin = await ag.upload(b"", name="auto.tar.gz")
        assert ans["offset"] == 0 and fin["reason"] == "done"
        assert not await athread(sim.tunnels)      # uploads are not tunnels
        assert not ag.binary
        await ag.stop()
    run(go())
    bs = sim.backups("C1001", "pbx-hq")
    assert bs == [
        {"name": "backup-pbx-hq-20261123T023000Z.tar.gz", "size": len(data),
         "sha256": sha(data), "kind": "manual", "job": "J-20261123-0042",
         "op": "backup", "stored_at": "2026-11-23", "seq": 1},
        {"name": "auto.tar.gz", "size": 0, "sha256": sha(b""), "kind": "automatic",
         "job": "", "op": "", "stored_at": "2026-11-23", "seq": 2}]
    assert sim.backup_file("C1001", "pbx-hq", bs[0]["name"]) == data
    assert sim.backup_file("C1001", "pbx-hq", "auto.tar.gz") == b""
    assert sim.backup_file("C1001", "pbx-hq", "nope.tar.gz") is None
    d = backup_dir(sim)
    assert sorted(os.listdir(d)) == sorted([
        "backup-pbx-hq-20261123T023000Z.tar.gz",
        "backup-pbx-hq-20261123T023000Z.tar.gz.meta.json",
        "auto.tar.gz", "auto.tar.gz.meta.json"])
    with open(os.path.join(d, "backup-pbx-hq-20261123T023000Z.tar.gz.meta.json")) as f:
        meta = json.load(f)
    assert meta == {"name": "backup-pbx-hq-20261123T023000Z.tar.gz",
                    "job": "J-20261123-0042", "op": "backup", "kind": "manual",
                    "size": len(data), "sha256": sha(data), "stored_at": "2026-11-23",
                    "seq": 1}
    with open(os.path.join(d, "backup-pbx-hq-20261123T023000Z.tar.gz"), "rb") as f:
        assert f.read() == data
    op = sim.events("upload_open")
    assert [(e["stream"], e["offset"], e["backup_kind"]) for e in op] == \
        [(1, 0, "manual"), (3, 0, "automatic")]
    done = sim.events("upload_done")
    assert [(e["name"], e["size"], e["received"]) for e in done] == \
        [(bs[0]["name"], len(data), len(data)), ("auto.tar.gz", 0, 0)]
    assert not sim.events(("upload_refused", "upload_corrupt", "upload_interrupted",
                           "stream_violation", "backup_expired"))
    assert sim.uploads("C1001", "pbx-hq") == []
    # credit messages are not logged one by one
    assert not [e for e in sim.events("sent") if e.get("msg", {}).get("type") == "stream.credit"]
    st, body = sim.admin_status("GET", "/backups?customer=C1001")
    assert st == 400
    st, body = sim.admin_status("GET", "/backups/file?customer=C1001&system=pbx-hq&name=..")
    assert st == 400


def test_upload_resume(sim):
    """A link lost mid-upload keeps the partial file; the next open of the
    very same file gets its offset -- across a comsim restart too."""
    data = os.urandom(300000)
    other = os.urandom(300000)
    name = "backup-r.tar.gz"

    async def first():
        ag = await UpAgent(sim).start()
        send_job(sim, "J-R")
        sim.upload_fault("C1001", "pbx-hq", drop_after=100000)
        ans, fin = await ag.upload(data, name=name, job="J-R")
        assert ans["offset"] == 0 and fin is None
        await asyncio.wait_for(ag.closed.wait(), 5)
        assert ag.ws.close_code == 1001
    run(first())
    ev = wait_until(lambda: sim.events("upload_interrupted"), what="upload_interrupted")
    assert len(ev) == 1 and ev[0]["held"] == 100000 and ev[0]["by"] == "link"
    assert ev[0]["name"] == name and ev[0]["job"] == "J-R" and ev[0]["stream"] == 1
    assert [e["action"] for e in sim.events("upload_fault")] == ["set", "drop"]
    part = sim.uploads("C1001", "pbx-hq")
    assert len(part) == 1 and part[0]["held"] == 100000 and not part[0]["active"]
    assert (part[0]["name"], part[0]["size"], part[0]["sha256"]) == \
        (name, len(data), sha(data))
    assert os.path.getsize(os.path.join(backup_dir(sim), part[0]["key"] + ".part")) \
        == 100000
    assert sim.backups("C1001", "pbx-hq") == []

    assert sim.stop() == 0          # partial files and jobs survive a restart
    sim.start()

    async def second():
        ag = await UpAgent(sim).start()
        # another file of the same name (other sha256) does not resume it
        st, ans = await ag.open(name, len(other), sha(other), "J-R")
        assert ans["offset"] == 0
        assert await ag.send_data(st, other[:20000])
        await ag.send({"type": "stream.close", "stream": st.sid, "reason": "shutdown",
                       "message": ""})
        # nor does another job
        send_job(sim, "J-S")
        st, ans = await ag.open(name, len(data), sha(data), "J-S")
        assert ans["offset"] == 0
        await ag.send({"type": "stream.close", "stream": st.sid, "reason": "shutdown",
                       "message": ""})
        # the very same file does
        ans, fin = await ag.upload(data, name=name, job="J-R")
        assert ans["offset"] == 100000 and fin["reason"] == "done"
        assert ag.streams[ans["stream"]].sent == 200000
        await ag.stop()
    run(second())
    assert sim.backup_file("C1001", "pbx-hq", name) == data
    assert [e["offset"] for e in sim.events("upload_open")] == [0, 0, 100000]
    ev = sim.events("upload_interrupted")
    assert [(e["by"], e["held"]) for e in ev] == [("agent", 20000), ("agent", 0)]
    done = sim.events("upload_done")
    assert done[0]["offset"] == 100000 and done[0]["received"] == 200000
    # the two abandoned partial files are kept for a later resume
    assert sorted((p["job"], p["held"]) for p in sim.uploads("C1001", "pbx-hq")) == \
        [("J-R", 20000), ("J-S", 0)]


def test_upload_resume_on_new_link(sim):
    """The agent's new link replaces the old one mid-upload and resumes at
    once: the offset is what the old link delivered."""
    data = os.urandom(200000)

    async def go():
        a1 = await UpAgent(sim).start()
        sim.upload_fault("C1001", "pbx-hq", hold_credit=True)
        st, ans = await a1.open("x.bin", len(data), sha(data))
        ok = await asyncio.wait_for(a1.send_data(st, data[:65536]), 5)
        assert ok and st.allowance == 0
        await await_until(lambda: sim.uploads("C1001", "pbx-hq")
                          and sim.uploads("C1001", "pbx-hq")[0]["held"] == 65536,
                          what="65536 bytes held")
        sim.upload_fault("C1001", "pbx-hq", clear=True)
        a2 = await UpAgent(sim).start()
        ans, fin = await a2.upload(data, name="x.bin")
        assert ans["offset"] == 65536 and fin["reason"] == "done"
        await asyncio.wait_for(a1.closed.wait(), 5)
        assert a1.ws.close_code == 4003
        await a2.stop()
    run(go())
    assert sim.backup_file("C1001", "pbx-hq", "x.bin") == data


def test_upload_corrupt(sim):
    good = os.urandom(50000)

    async def go():
        ag = await UpAgent(sim).start()
        ans, fin = await ag.upload(good, name="a.bin", digest=sha(b"something else"))
        assert ans["offset"] == 0
        assert (fin["reason"], fin["message"]) == ("corrupt", "sha256 mismatch")
        assert fin["re"] > ans["re"]
        # short and long
        ans, fin = await ag.upload(b"0123456789", name="b.bin", size=12)
        assert (fin["reason"], fin["message"]) == ("corrupt", "size 10 != 12")
        ans, fin = await ag.upload(b"0123456789abc", name="c.bin", size=12)
        assert (fin["reason"], fin["message"]) == ("corrupt", "size 13 != 12")
        # comsim made to answer corrupt once
        sim.upload_fault("C1001", "pbx-hq", corrupt=True)
        ans, fin = await ag.upload(good, name="d.bin")
        assert (fin["reason"], fin["message"]) == ("corrupt", "sha256 mismatch")
        # the partial file is gone: the next attempt starts at 0 and works
        ans, fin = await ag.upload(good, name="d.bin")
        assert ans["offset"] == 0 and fin["reason"] == "done"
        # b.bin again, right this time
        ans, fin = await ag.upload(b"0123456789ab", name="b.bin")
        assert ans["offset"] == 0 and fin["reason"] == "done"
        await ag.stop()
    run(go())
    assert [b["name"] for b in sim.backups("C1001", "pbx-hq")] == ["d.bin", "b.bin"]
    assert sorted(os.listdir(backup_dir(sim))) == [
        "b.bin", "b.bin.meta.json", "d.bin", "d.bin.meta.json"]
    ev = sim.events("upload_corrupt")
    assert [(e["name"], e["message"], e["forced"]) for e in ev] == [
        ("a.bin", "sha256 mismatch", False), ("b.bin", "size 10 != 12", False),
        ("c.bin", "size 13 != 12", False), ("d.bin", "sha256 mismatch", True)]
    assert ev[0]["got_sha256"] == sha(good) and ev[1]["got_sha256"] is None
    assert sim.admin("GET", "/upload_fault") == []


REFUSED_OPENS = [
    # (fields over a valid open, message)
    ({"name": ""}, 'name "" is not 1..128 characters of [A-Za-z0-9._-]'),
    ({"name": "a" * 129}, 'name "%s" is not 1..128 characters of [A-Za-z0-9._-]' % ("a" * 129)),
    ({"name": "a/b"}, 'name "a/b" is not 1..128 characters of [A-Za-z0-9._-]'),
    ({"name": "b\u00e4d"}, 'name "b\\u00e4d" is not 1..128 characters of [A-Za-z0-9._-]'),
    ({"name": ".."}, "name .. is not a file name"),
    ({"name": "x.meta.json"}, "name x.meta.json is reserved (comsim's own files)"),
    ({"name": 5}, "name must be a string of 1..128 characters of [A-Za-z0-9._-]"),
    ({"name": ...}, "name must be a string of 1..128 characters of [A-Za-z0-9._-]"),
    ({"size": -1}, "size must be an integer >= 0"),
    ({"size": "12"}, "size must be an integer >= 0"),
    ({"size": True}, "size must be an integer >= 0"),
    ({"size": 1.5}, "size must be an integer >= 0"),
    ({"size": (2 << 30) + 1}, "size 2147483649 exceeds the limit of 2147483648 bytes"),
    ({"sha256": "A" * 64}, "sha256 must be 64 lower-case hex digits"),
    ({"sha256": "a" * 63}, "sha256 must be 64 lower-case hex digits"),
    ({"sha256": ...}, "sha256 must be 64 lower-case hex digits"),
    ({"job": ...}, 'job missing ("" for the agent\'s own uploads)'),
    ({"job": 7}, "job must be a string"),
    ({"job": "J-nope"}, "no such job: J-nope"),
    ({"job": "J-other"}, "no such job: J-other"),     # sent to another system
]


def test_upload_refused(sim):
    async def go():
        other = await UpAgent(sim, system="pbx-b").start()
        send_job(sim, "J-other", system="pbx-b")
        ag = await UpAgent(sim).start()
        for over, message in REFUSED_OPENS:
            args = {"name": "ok.bin", "size": 12, "digest": "0" * 64, "job": ""}
            for k, v in over.items():
                args["digest" if k == "sha256" else k] = v
            st, ans = await ag.open(args.pop("name"), args.pop("size"),
                                    args.pop("digest"), args.pop("job"))
            assert ans["type"] == "stream.close", (over, ans)
            assert (ans["stream"], ans["reason"], ans["message"]) == \
                (st.sid, "refused", message), over
        # the biggest size allowed is accepted
        st, ans = await ag.open("big.bin", 2 << 30, "0" * 64)
        assert ans["type"] == "stream.accept" and ans["offset"] == 0
        # the same file twice on one link
        st2, ans = await ag.open("big.bin", 2 << 30, "0" * 64)
        assert ans["message"] == "big.bin is already being uploaded on stream %d" % st.sid
        # not an upload; even and reused ids; a broken id
        _, ans = await ag.open("ok.bin", 1, "0" * 64, kind="tunnel")
        assert ans["message"] == 'kind "tunnel": the agent may open only upload or ' \
                                 'download streams'
        _, ans = await ag.open("ok.bin", 1, "0" * 64, sid=100)
        assert ans["message"] == "stream 100 is even: the agent opens odd stream ids"
        _, ans = await ag.open("ok.bin", 1, "0" * 64, sid=1)
        assert ans["message"] == "stream 1 was used before on this link " \
                                 "(ids are never reused)"
        m = await ag.send({"type": "stream.open", "stream": "x", "kind": "upload"})
        await await_until(lambda: ag.msgs and ag.msgs[-1].get("re") == m["id"],
                          what="error answer")
        assert ag.msgs[-1]["type"] == "error" and ag.msgs[-1]["code"] == "malformed"
        await ag.send({"type": "stream.close", "stream": st.sid, "reason": "shutdown",
                       "message": ""})
        await ag.stop()
        await other.stop()
    run(go())
    ev = sim.events("upload_refused")
    # + twice, even id, reused id (kind tunnel is not an upload)
    assert len(ev) == len(REFUSED_OPENS) + 3
    assert ev[0]["message"] == REFUSED_OPENS[0][1] and ev[0]["reason"] == "refused"
    assert not sim.backups("C1001", "pbx-hq")


def test_upload_limit(sim):
    """More than max_streams open streams: stream.close limit."""
    async def go():
        ag = await UpAgent(sim).start()
        for i in range(64):
            st, ans = await ag.open("f%d.bin" % i, 10, "0" * 64)
            assert ans["type"] == "stream.accept"
        st, ans = await ag.open("f64.bin", 10, "0" * 64)
        assert (ans["reason"], ans["message"]) == ("limit", "too many streams: 64 open")
        await ag.stop()
    run(go())
    wait_until(lambda: len(sim.events("upload_interrupted")) == 64,
               what="64 upload_interrupted")


def test_upload_credit(sim):
    """comsim grants credit as it writes and holds the agent to it."""
    data = os.urandom(200000)

    async def go():
        ag = await UpAgent(sim).start()
        # credit held back: an agent that keeps to it stops after the window
        sim.upload_fault("C1001", "pbx-hq", hold_credit=True)
        st, ans = await ag.open("c.bin", len(data), sha(data))
        send = asyncio.ensure_future(ag.send_data(st, data, stall=30))
        await await_until(lambda: st.sent == 65536, what="window sent")
        await asyncio.sleep(0.5)
        assert st.sent == 65536 and st.allowance == 0 and not send.done()
        assert (await athread(sim.uploads, "C1001", "pbx-hq"))[0]["held"] == 65536
        await athread(sim.upload_fault, "C1001", "pbx-hq", hold_credit=False)
        assert await asyncio.wait_for(send, 10)
        await ag.send({"type": "stream.end", "stream": st.sid})
        fin = await asyncio.wait_for(st.q.get(), 5)
        assert fin["reason"] == "done"
        assert st.credits[0] == 65536 and min(st.credits) >= 16384
        # an agent that sends beyond its credit: stream.close flow
        sim.upload_fault("C1001", "pbx-hq", hold_credit=True)
        ans, fin = await ag.upload(data, name="d.bin", honor_credit=False)
        assert fin is not None and fin["reason"] == "flow", fin
        assert fin["message"] == "data beyond credit"
        sim.upload_fault("C1001", "pbx-hq", clear=True)
        # it resumes from what was within credit
        ans, fin = await ag.upload(data, name="d.bin")
        assert ans["offset"] == 65536 and fin["reason"] == "done"
        # frames above the agent's 16384 bytes: logged once, stored
        ans, fin = await ag.upload(data, name="e.bin", frame=32768)
        assert fin["reason"] == "done"
        await ag.stop()
    run(go())
    for n in ("c.bin", "d.bin", "e.bin"):
        assert sim.backup_file("C1001", "pbx-hq", n) == data
    ev = sim.events("stream_violation")
    # the credit-ignoring agent went on sending: logged once more
    assert [e["error"] for e in ev] == [
        "16384 bytes beyond credit (allowance 0)",
        "16384 bytes beyond credit after stream.close (allowance 0)",
        "data frame of 32768 bytes, more than the agent's 16384 (PROTOCOL.md 3.2)"]
    it = sim.events("upload_interrupted")
    assert [(e["name"], e["reason"], e["by"], e["held"]) for e in it] == \
        [("d.bin", "flow", "comsim", 65536)]


def test_upload_retention(sim):
    """Retention (retention.py) runs after each stored backup and on
    POST /today."""
    async def go():
        ag = await UpAgent(sim).start()
        sim.set_today("2026-03-02")
        for i in range(1, 5):
            send_job(sim, "J-M%d" % i)                      # manual: no args.kind
            ans, fin = await ag.upload(b"m%d" % i, name="m%d.bin" % i, job="J-M%d" % i)
            assert fin["reason"] == "done"
        # a fetch_logs upload is not a backup: never expired
        send_job(sim, "J-L", op="fetch_logs")
        assert (await ag.upload(b"log", name="logs.tar.gz", job="J-L"))[1]["reason"] == "done"
        send_job(sim, "J-M5")
        assert (await ag.upload(b"m5", name="m5.bin", job="J-M5"))[1]["reason"] == "done"
        # automatic backups: the agent's own, and a job that says so
        sim.set_today("2026-03-04")                          # Wednesday
        assert (await ag.upload(b"a4", name="a-0304.bin"))[1]["reason"] == "done"
        sim.set_today("2026-03-05")
        send_job(sim, "J-A", args={"kind": "automatic"})
        assert (await ag.upload(b"a5", name="a-0305.bin", job="J-A"))[1]["reason"] == "done"
        await ag.stop()
    run(go())
    names = [b["name"] for b in sim.backups("C1001", "pbx-hq")]
    assert names == ["m3.bin", "m4.bin", "logs.tar.gz", "m5.bin", "a-0304.bin",
                     "a-0305.bin"]
    assert [b["kind"] for b in sim.backups("C1001", "pbx-hq")] == \
        ["manual"] * 4 + ["automatic"] * 2
    ev = sim.events("backup_expired")
    assert [(e["name"], e["backup_kind"], e["stored_at"]) for e in ev] == \
        [("m1.bin", "manual", "2026-03-02"), ("m2.bin", "manual", "2026-03-02")]
    assert not os.path.exists(os.path.join(backup_dir(sim), "m1.bin"))
    assert not os.path.exists(os.path.join(backup_dir(sim), "m1.bin.meta.json"))
    # Thursday 12 Mar: daily 6..12 Mar; the week 2..8 Mar ends with 5 Mar's
    r = sim.set_today("2026-03-12")
    assert r["date"] == "2026-03-12" and r["simulated"]
    assert [(e["customer"], e["system"], e["name"]) for e in r["expired"]] == \
        [("C1001", "pbx-hq", "a-0304.bin")]
    # Thursday 9 Apr: the week of 5 Mar is out of the weekly tier, but March
    # is a past month now and 5 Mar its last backup: it stays.
    r = sim.set_today("2026-04-09")
    assert r["expired"] == []
    # 12 months on, March 2026 is out of the monthly tier too
    assert sim.set_today("2027-03-01")["expired"] == [
        {"name": "a-0305.bin", "size": 2, "sha256": sha(b"a5"), "kind": "automatic",
         "job": "J-A", "op": "backup", "stored_at": "2026-03-05", "seq": 8,
         "customer": "C1001", "system": "pbx-hq"}]
    assert [b["name"] for b in sim.backups("C1001", "pbx-hq")] == \
        ["m3.bin", "m4.bin", "logs.tar.gz", "m5.bin"]
    assert sim.admin("GET", "/today") == {"date": "2027-03-01", "simulated": True}
    before = time.strftime("%Y-%m-%d")
    r = sim.set_today(None)
    assert r["simulated"] is False
    assert r["date"] in (before, time.strftime("%Y-%m-%d"))
    for bad in ("2026-02-30", "2026-3-1", "tomorrow", 5):
        st, body = sim.admin_status("POST", "/today", {"date": bad})
        assert st == 400 and "error" in body, bad


def test_today_option(tmp_path, pki):
    for f in os.listdir(pki):
        shutil.copy(os.path.join(pki, f), tmp_path / f)
    s = comsim.SimProcess(str(tmp_path), extra_args=["--today", "2024-02-29",
                                                     "--upload-max", "1000",
                                                     "--log-retention-days", "7"])
    s.start()
    try:
        assert s.admin("GET", "/today") == {"date": "2024-02-29", "simulated": True}
        assert s.admin("GET", "/log_retention") == {"days": 7}

        async def go():
            ag = UpAgent(s)
            ag.ws = await websockets.connect(
                "wss://localhost:%d/agent/v1" % s.port, ssl=client_ctx(s.ca),
                subprotocols=[SUB], ping_interval=None, close_timeout=2)
            await say_hello(ag.ws, password="pw")
            ag.task = asyncio.ensure_future(ag.run())
            _, ans = await ag.open("big.bin", 1001, "0" * 64)
            assert ans["message"] == "size 1001 exceeds the limit of 1000 bytes"
            ans, fin = await ag.upload(b"x" * 1000, name="ok.bin")
            assert fin["reason"] == "done"
            await ag.stop()
        run(go())
        assert s.backups("C1001", "pbx-hq")[0]["stored_at"] == "2024-02-29"
    finally:
        assert s.stop() == 0
        s.kill()
    for bad in (["--today", "2024-02-30"], ["--log-retention-days", "-1"]):
        r = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "comsim.py"),
                            "serve", "--dir", str(tmp_path)] + bad,
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 2 and "comsim:" in r.stderr, bad


def test_upload_stream_messages(sim):
    """stream.end / stream.accept / stream.close around uploads."""
    async def go():
        ag = await UpAgent(sim).start()
        # stream.end for a stream that is not open: unknown_stream
        await ag.send({"type": "stream.end", "stream": 9})
        await await_until(lambda: ag.msgs and ag.msgs[-1]["type"] == "stream.close",
                          what="unknown_stream")
        assert ag.msgs[-1]["stream"] == 9 and ag.msgs[-1]["reason"] == "unknown_stream"
        st, ans = await ag.open("a.bin", 5, sha(b"hello"))
        await ag.send({"type": "stream.accept", "stream": st.sid, "window": 1})
        await ag.send({"type": "stream.credit", "stream": st.sid, "bytes": 100})
        assert await ag.send_data(st, b"hel")
        # the agent gives up: no answer, the partial file stays
        await ag.send({"type": "stream.close", "stream": st.sid, "reason": "shutdown",
                       "message": "agent stopping"})
        await await_until(lambda: sim.events("upload_interrupted"), what="interrupted")
        # data after its own close: unknown_stream
        await ag.ws.send(st.hdr + b"lo")
        await await_until(lambda: ag.msgs[-1]["type"] == "stream.close", what="answer")
        assert ag.msgs[-1]["stream"] == st.sid
        assert ag.msgs[-1]["reason"] == "unknown_stream"
        ans, fin = await ag.upload(b"hello", name="a.bin")
        assert ans["offset"] == 3 and fin["reason"] == "done"
        await ag.stop()
    run(go())
    it = sim.events("upload_interrupted")[0]
    assert (it["by"], it["reason"], it["held"], it["message"]) == \
        ("agent", "shutdown", 3, "agent stopping")
    errs = [e["error"] for e in sim.events("stream_violation")]
    assert errs == ["stream.end for a stream that is not open",
                    "stream.accept for a stream the agent opened",
                    "data after the agent closed the stream"]
    assert sim.backup_file("C1001", "pbx-hq", "a.bin") == b"hello"


# ------------------------------------------------------------------ logs

def log_name(day, n=1, system="pbx-hq"):
    """log-<system>-<yyyymmdd>-<nnn>.log.gz (PROTOCOL.md 3.3)."""
    return "log-%s-%s-%03d.log.gz" % (system, day.replace("-", ""), n)


def log_dir(sim, customer="C1001", system="pbx-hq"):
    return os.path.join(sim.dir, "logs", customer, system)


def test_log_upload(sim):
    """content "log": stored under logs/, apart from the backups; the same
    file again is idempotent, another one of the same name replaces it;
    listing by dates, the file, delete."""
    sim.set_today("2026-11-24")
    data = os.urandom(150000)
    other = os.urandom(5000)
    n1 = log_name("2026-11-23")
    more = [("2026-11-20", 1, b"a"), ("2026-11-22", 2, b"b"), ("2026-11-22", 1, b"c"),
            ("2026-11-25", 0, b"d"), ("2026-11-22", 2, other)]

    async def go():
        ag = await UpAgent(sim).start()
        ans, fin = await ag.upload(data, name=n1, content="log")
        assert ans["offset"] == 0 and ans["type"] == "stream.accept"
        assert (fin["type"], fin["reason"], fin["message"]) == \
            ("stream.close", "done", "")
        # the same file again (an agent that restarted): done, nothing changes
        ans, fin = await ag.upload(data, name=n1, content="log")
        assert ans["offset"] == 0 and fin["reason"] == "done"
        for day, n, body in more:
            ans, fin = await ag.upload(body, name=log_name(day, n), content="log")
            assert fin["reason"] == "done", (day, n)
        # the same name as a backup ("content":"backup") is a backup
        ans, fin = await ag.upload(b"bk", name=n1, content="backup")
        assert fin["reason"] == "done"
        await ag.stop()
    run(go())
    entry = {"name": n1, "size": len(data), "sha256": sha(data), "job": "",
             "day": "2026-11-23", "stored_at": "2026-11-24"}
    logs = sim.logs("C1001", "pbx-hq")
    assert [x["name"] for x in logs] == [
        log_name("2026-11-20"), log_name("2026-11-22", 1), log_name("2026-11-22", 2),
        n1, log_name("2026-11-25", 0)]
    assert logs[3] == entry
    assert logs[2] == {"name": log_name("2026-11-22", 2), "size": len(other),
                       "sha256": sha(other), "job": "", "day": "2026-11-22",
                       "stored_at": "2026-11-24"}
    assert sim.log_file("C1001", "pbx-hq", n1) == data
    assert sim.log_file("C1001", "pbx-hq", log_name("2026-11-22", 2)) == other
    assert sim.log_file("C1001", "pbx-hq", log_name("2026-11-21")) is None
    assert [b["name"] for b in sim.backups("C1001", "pbx-hq")] == [n1]
    assert sim.backup_file("C1001", "pbx-hq", n1) == b"bk"
    d = log_dir(sim)
    assert sorted(os.listdir(d)) == sorted(
        [x["name"] for x in logs] + [x["name"] + ".meta.json" for x in logs])
    with open(os.path.join(d, n1 + ".meta.json")) as f:
        assert json.load(f) == entry
    assert [e["name"] for e in sim.events("log_stored")] == \
        [n1] + [log_name(day, n) for day, n, _ in more]
    dup, = sim.events("log_duplicate")
    assert (dup["name"], dup["sha256"], dup["stored_job"]) == (n1, sha(data), "")
    rep, = sim.events("log_replaced")
    assert (rep["name"], rep["old_sha256"], rep["sha256"]) == \
        (log_name("2026-11-22", 2), sha(b"b"), sha(other))
    assert [e["content"] for e in sim.events("upload_done")] == ["log"] * 7 + ["backup"]
    assert not sim.events(("log_expired", "backup_expired", "upload_refused"))
    assert sim.uploads("C1001", "pbx-hq") == []
    # between dates, inclusive; either end optional
    names = lambda xs: [x["name"] for x in xs]  # noqa: E731
    assert names(sim.logs("C1001", "pbx-hq", "2026-11-22", "2026-11-23")) == \
        [log_name("2026-11-22", 1), log_name("2026-11-22", 2), n1]
    assert names(sim.logs("C1001", "pbx-hq", frm="2026-11-23")) == \
        [n1, log_name("2026-11-25", 0)]
    assert names(sim.logs("C1001", "pbx-hq", to="2026-11-20")) == [log_name("2026-11-20")]
    assert sim.logs("C1001", "pbx-hq", "2026-11-24", "2026-11-24") == []
    assert sim.logs("C1001", "pbx-b") == []
    for q in ("customer=C1001", "customer=C1001&system=pbx-hq&from=2026-11-31",
              "customer=C1001&system=pbx-hq&to=yesterday"):
        st, body = sim.admin_status("GET", "/logs?" + q)
        assert st == 400 and "error" in body, q
    r = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "comsim.py"), "ctl",
                        "--dir", sim.dir, "logs", "C1001", "pbx-hq", "2026-11-22",
                        "2026-11-22"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert names(json.loads(r.stdout)) == [log_name("2026-11-22", 1),
                                           log_name("2026-11-22", 2)]
    # delete
    assert sim.delete_log("C1001", "pbx-hq", n1) == \
        (200, dict(entry, customer="C1001", system="pbx-hq"))
    st, body = sim.delete_log("C1001", "pbx-hq", n1)
    assert st == 404 and body["error"] == "no log %s of C1001/pbx-hq" % n1
    assert sim.log_file("C1001", "pbx-hq", n1) is None
    assert not os.path.exists(os.path.join(d, n1 + ".meta.json"))
    assert sim.delete_log("C1001", "pbx-hq", "..")[0] == 400
    assert sim.admin_status("POST", "/logs/delete", {"customer": "C1001"})[0] == 400
    assert sim.admin_status("GET", "/logs/delete")[0] == 404
    assert [e["name"] for e in sim.events("log_deleted")] == [n1]
    assert sim.backup_file("C1001", "pbx-hq", n1) == b"bk"     # the backup stays


def test_log_upload_resume(sim):
    """A log upload resumes after a drop as a backup does (its partial file
    under logs/); a corrupt one starts again at 0."""
    data = os.urandom(300000)
    name = log_name("2026-11-23")

    async def first():
        ag = await UpAgent(sim).start()
        sim.upload_fault("C1001", "pbx-hq", drop_after=100000)
        ans, fin = await ag.upload(data, name=name, content="log")
        assert ans["offset"] == 0 and fin is None
        await asyncio.wait_for(ag.closed.wait(), 5)
    run(first())
    ev = wait_until(lambda: sim.events("upload_interrupted"), what="upload_interrupted")
    assert (ev[0]["content"], ev[0]["held"]) == ("log", 100000)
    part, = sim.uploads("C1001", "pbx-hq")
    assert (part["content"], part["name"], part["held"]) == ("log", name, 100000)
    assert os.path.getsize(os.path.join(log_dir(sim), part["key"] + ".part")) == 100000
    assert sim.logs("C1001", "pbx-hq") == [] and sim.backups("C1001", "pbx-hq") == []

    async def second():
        ag = await UpAgent(sim).start()
        # the same file as a backup does not resume the log
        st, ans = await ag.open(name, len(data), sha(data))
        assert ans["offset"] == 0
        await ag.send({"type": "stream.close", "stream": st.sid, "reason": "shutdown",
                       "message": ""})
        ans, fin = await ag.upload(data, name=name, content="log")
        assert ans["offset"] == 100000 and fin["reason"] == "done"
        assert ag.streams[ans["stream"]].sent == 200000
        sim.upload_fault("C1001", "pbx-hq", corrupt=True)
        n2 = log_name("2026-11-23", 2)
        ans, fin = await ag.upload(b"x" * 1000, name=n2, content="log")
        assert (fin["reason"], fin["message"]) == ("corrupt", "sha256 mismatch")
        ans, fin = await ag.upload(b"x" * 1000, name=n2, content="log")
        assert ans["offset"] == 0 and fin["reason"] == "done"
        await ag.stop()
    run(second())
    assert sim.log_file("C1001", "pbx-hq", name) == data
    assert sim.log_file("C1001", "pbx-hq", log_name("2026-11-23", 2)) == b"x" * 1000
    done = sim.events("upload_done")
    assert (done[0]["offset"], done[0]["received"]) == (100000, 200000)
    assert [e["content"] for e in sim.events("upload_corrupt")] == ["log"]
    # what is left: the backup's abandoned partial file
    assert [(p["content"], p["held"]) for p in sim.uploads("C1001", "pbx-hq")] == \
        [("backup", 0)]
    assert sorted(os.listdir(log_dir(sim))) == sorted(
        [name, name + ".meta.json", log_name("2026-11-23", 2),
         log_name("2026-11-23", 2) + ".meta.json"])


LOG_REFUSALS = [
    # (fields over a valid log upload's open, message)
    ({"content": "config"}, "content must be backup or log"),
    ({"content": 5}, "content must be backup or log"),
    ({"content": None}, "content must be backup or log"),
    ({"name": "backup-pbx-hq-20261123T023000Z.tar.gz"},
     "a log's name must be log-pbx-hq-<yyyymmdd>-<nnn>.log.gz, not "
     "backup-pbx-hq-20261123T023000Z.tar.gz"),
    ({"name": "log-pbx-hq-20261123-1.log.gz"},
     "a log's name must be log-pbx-hq-<yyyymmdd>-<nnn>.log.gz, not "
     "log-pbx-hq-20261123-1.log.gz"),
    ({"name": "log-pbx-hq-20261123-001.log"},
     "a log's name must be log-pbx-hq-<yyyymmdd>-<nnn>.log.gz, not "
     "log-pbx-hq-20261123-001.log"),
    ({"name": "log-pbx-b-20261123-001.log.gz"},
     "log log-pbx-b-20261123-001.log.gz is of system pbx-b, not of this link's "
     "system pbx-hq (name must be log-pbx-hq-<yyyymmdd>-<nnn>.log.gz)"),
    ({"name": "log-hq-20261123-001.log.gz"},
     "log log-hq-20261123-001.log.gz is of system hq, not of this link's "
     "system pbx-hq (name must be log-pbx-hq-<yyyymmdd>-<nnn>.log.gz)"),
    ({"name": "log-pbx-hq-20260230-001.log.gz"},
     "log log-pbx-hq-20260230-001.log.gz: 20260230 is not a date (yyyymmdd)"),
    ({"name": "log-pbx-hq-20261301-001.log.gz"},
     "log log-pbx-hq-20261301-001.log.gz: 20261301 is not a date (yyyymmdd)"),
    ({"name": "a/b"}, 'name "a/b" is not 1..128 characters of [A-Za-z0-9._-]'),
    ({"job": "J-B"}, 'job J-B (backup) does not upload logs: a log belongs to a '
                     'fetch_logs job or to job ""'),
    ({"job": "J-nope"}, "no such job: J-nope"),
]


def test_log_upload_refused(sim):
    """Unknown content, names that are not this system's logs, a job that
    does not upload logs: refused.  A fetch_logs job's upload is a log."""
    async def go():
        ag = await UpAgent(sim).start()
        send_job(sim, "J-B")
        for over, message in LOG_REFUSALS:
            f = dict({"name": log_name("2026-11-23"), "job": "", "content": "log"},
                     **over)
            st, ans = await ag.open(f.pop("name"), 3, sha(b"abc"), f.pop("job"), **f)
            assert ans["type"] == "stream.close", (over, ans)
            assert (ans["reason"], ans["message"]) == ("refused", message), over
        # COM's "fetch new logs": a job like any other, its uploads are logs
        r = send_job(sim, "J-L", op="fetch_logs")
        assert r["job"] == "J-L" and r["status"] == "in progress"
        jobs = lambda: [m for m in ag.msgs  # noqa: E731
                        if m.get("type") == "job" and m.get("job") == "J-L"]
        job, = await await_until(jobs, what="the fetch_logs job")
        assert (job["op"], job["args"]) == ("fetch_logs", {})
        for n in (1, 2):
            ans, fin = await ag.upload(b"log%d" % n, name=log_name("2026-11-23", n),
                                       job="J-L", content="log")
            assert fin["reason"] == "done"
        await ag.send({"type": "job.state", "job": "J-L", "state": "succeeded"})
        # another system's logs carry its own name
        b = await UpAgent(sim, system="pbx-b").start()
        ans, fin = await b.upload(b"b", name=log_name("2026-11-23", system="pbx-b"),
                                  content="log")
        assert fin["reason"] == "done"
        await b.stop()
        await ag.stop()
    run(go())
    ev = sim.events("upload_refused")
    assert [e["message"] for e in ev] == [m for _, m in LOG_REFUSALS]
    assert [e.get("content") for e in ev[:3]] == ["config", 5, None]
    assert [(x["name"], x["job"]) for x in sim.logs("C1001", "pbx-hq")] == \
        [(log_name("2026-11-23", 1), "J-L"), (log_name("2026-11-23", 2), "J-L")]
    assert [x["name"] for x in sim.logs("C1001", "pbx-b")] == \
        [log_name("2026-11-23", system="pbx-b")]
    assert sim.backups("C1001", "pbx-hq") == [] and sim.uploads("C1001", "pbx-hq") == []
    j, = [j for j in sim.jobs("C1001", "pbx-hq") if j["job"] == "J-L"]
    assert (j["op"], j["status"]) == ("fetch_logs", "completed")


def test_log_retention(sim):
    """Logs whose day is more than N days (default 30) before today go after
    each log upload and when today moves; backups are not touched."""
    assert sim.admin("GET", "/log_retention") == {"days": 30}
    sim.set_today("2026-03-31")
    days = ["2026-02-28", "2026-03-01", "2026-03-10", "2026-03-30", "2026-03-31"]

    async def go():
        ag = await UpAgent(sim).start()
        send_job(sim, "J-M")
        assert (await ag.upload(b"m", name="m.bin", job="J-M"))[1]["reason"] == "done"
        assert (await ag.upload(b"a", name="a.bin"))[1]["reason"] == "done"
        for day in days:
            ans, fin = await ag.upload(day.encode(), name=log_name(day), content="log")
            assert fin["reason"] == "done"      # stored, then expired if too old
        await ag.stop()
    run(go())
    backups = sim.backups("C1001", "pbx-hq")
    assert [b["name"] for b in backups] == ["m.bin", "a.bin"]
    ev = sim.events("log_expired")
    assert [(e["name"], e["day"], e["today"], e["days"]) for e in ev] == \
        [(log_name("2026-02-28"), "2026-02-28", "2026-03-31", 30)]
    assert [x["day"] for x in sim.logs("C1001", "pbx-hq")] == days[1:]
    # today moves: 1 and 10 Mar are more than 30 days back now
    r = sim.set_today("2026-04-10")
    assert r["expired"] == []
    assert [(x["name"], x["customer"]) for x in r["expired_logs"]] == \
        [(log_name("2026-03-01"), "C1001"), (log_name("2026-03-10"), "C1001")]
    assert [x["day"] for x in sim.logs("C1001", "pbx-hq")] == days[3:]
    assert not os.path.exists(os.path.join(log_dir(sim), log_name("2026-03-01")))
    # a shorter retention applies at once
    r = sim.set_log_retention(10)
    assert r["days"] == 10 and [x["day"] for x in r["expired_logs"]] == ["2026-03-30"]
    assert sim.admin("GET", "/log_retention") == {"days": 10}
    assert [x["day"] for x in sim.logs("C1001", "pbx-hq")] == ["2026-03-31"]
    assert sim.set_today("2026-04-11")["expired_logs"][0]["day"] == "2026-03-31"
    assert sim.logs("C1001", "pbx-hq") == []
    assert sim.backups("C1001", "pbx-hq") == backups
    assert not sim.events("backup_expired")
    for bad in (-1, "7", True, None, 1.5):
        st, body = sim.admin_status("POST", "/log_retention", {"days": bad})
        assert st == 400 and body["error"] == "days must be an integer >= 0", bad


# ------------------------------------------------------------------ downloads

import library  # noqa: E402


class DStream(UStream):
    def __init__(self, sid, window):
        super().__init__(sid)
        self.data = bytearray()
        self.granted = window        # what comsim may send us on it, in total
        self.got = 0
        self.frames = 0
        self.max_frame = 0
        self.over = []               # bytes comsim sent beyond our credit
        self.hold = False            # grant no credit
        self.uncredited = 0
        self.accept = None
        self.closed = None


class DownAgent(UpAgent):
    """A fake agent that downloads (PROTOCOL.md 3.4): download() opens a
    stream kind download, takes the data and grants credit as it takes it
    (16 KiB steps, none while st.hold), and records any byte beyond credit."""

    credit_step = 16384

    async def run(self):
        try:
            async for data in self.ws:
                if isinstance(data, bytes):
                    await self.on_data(data)
                    continue
                m = json.loads(data)
                self.msgs.append(m)
                st = self.streams.get(m.get("stream"))
                if st is not None and m["type"] in ("stream.accept", "stream.close"):
                    st.q.put_nowait(m)
                    st.evt.set()
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            self.closed.set()
            for st in self.streams.values():
                st.q.put_nowait(None)
                st.evt.set()

    async def on_data(self, data):
        sid = int.from_bytes(data[:4], "big")
        st = self.streams.get(sid)
        if not isinstance(st, DStream):
            self.binary.append(data)
            return
        n = len(data) - 4
        st.data += data[4:]
        st.got += n
        st.frames += 1
        st.max_frame = max(st.max_frame, n)
        if st.got > st.granted:
            st.over.append((st.got, st.granted))
        st.uncredited += n
        if not st.hold and st.closed is None:
            try:
                await self.grant(st)
            except websockets.exceptions.ConnectionClosed:
                pass          # take the frames still queued before the close

    async def grant(self, st, force=False, n=None):
        give = st.uncredited if n is None else n
        if give > 0 and (force or n is not None or give >= self.credit_step):
            if n is None:
                st.uncredited = 0
            st.granted += give
            await self.send({"type": "stream.credit", "stream": st.sid, "bytes": give})

    async def dopen(self, job, name, offset=0, window=65536, sid=None, hold=False,
                    **extra):
        """stream.open kind download; returns (DStream, comsim's answer).
        hold: grant no credit (until st.hold is cleared)."""
        if sid is None:
            sid = self.next_sid
        self.next_sid = max(self.next_sid, sid + 2)
        st = self.streams[sid] = DStream(sid, window if isinstance(window, int) else 0)
        st.hold = hold
        m = {"type": "stream.open", "stream": sid, "kind": "download",
             "window": window, "job": job, "name": name, "offset": offset}
        m.update(extra)
        await self.send({k: v for k, v in m.items() if v is not Ellipsis})
        ans = await asyncio.wait_for(st.q.get(), 5)
        if ans is not None and ans["type"] == "stream.accept":
            st.accept = ans
        else:
            st.closed = ans
        return st, ans

    async def finish(self, st, timeout=10):
        """Wait for comsim's stream.close (None: the link went away)."""
        if st.closed is None:
            st.closed = await asyncio.wait_for(st.q.get(), timeout)
        return st.closed

    async def download(self, job, name, offset=0, window=65536):
        """The whole download: (accept or refusal, bytes, final stream.close)."""
        st, ans = await self.dopen(job, name, offset, window)
        if st.accept is None:
            return ans, b"", None
        fin = await self.finish(st)
        return ans, bytes(st.data), fin


def openssl_verify(pub, text, sig_b64, tmp):
    """True if openssl says the base64 DER signature over text checks with pub."""
    msg, sig = os.path.join(tmp, "m"), os.path.join(tmp, "s")
    with open(msg, "wb") as f:
        f.write(text.encode("utf-8"))
    with open(sig, "wb") as f:
        f.write(base64.b64decode(sig_b64))
    r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", pub, "-signature",
                        sig, msg], capture_output=True, text=True)
    assert ("Verified OK" in r.stdout) == (r.returncode == 0), r
    return r.returncode == 0


def store_backup(sim, data, name, job="J-B"):
    """A stored backup of C1001/pbx-hq, uploaded by a fake agent."""
    async def go():
        ag = await UpAgent(sim).start()
        send_job(sim, job)
        ans, fin = await ag.upload(data, name=name, job=job)
        assert fin["reason"] == "done"
        await ag.stop()
    run(go())


def job_msg(ag, jid):
    return [m for m in ag.msgs if m["type"] == "job" and m["job"] == jid]


def test_download_backup(sim):
    data = os.urandom(300000)
    name = "backup-pbx-hq-20261123T023000Z.tar.gz"
    store_backup(sim, data, name)
    st, body = sim.admin_status("POST", "/job", {"customer": "C1001", "system": "pbx-hq",
                                                 "op": "restore", "backup": "nope.tgz"})
    assert st == 404 and body["error"] == "no such backup: nope.tgz of C1001/pbx-hq"

    async def go():
        ag = await DownAgent(sim).start()
        r = await athread(sim.job, "C1001", "pbx-hq", "restore", job="J-RS",
                          backup=name, args={"elements": ["config"]})
        assert r["job"] == "J-RS" and r["status"] == "in progress"
        await await_until(lambda: job_msg(ag, "J-RS"), what="the restore job")
        assert job_msg(ag, "J-RS")[0]["args"] == {"backup": name, "sha256": sha(data),
                                                  "elements": ["config"]}
        ans, got, fin = await ag.download("J-RS", name)
        assert ans == {"type": "stream.accept", "id": ans["id"], "re": ans["re"],
                       "stream": 1, "window": 65536, "size": len(data),
                       "sha256": sha(data), "offset": 0}
        assert got == data and sha(got) == sha(data)
        assert fin == {"type": "stream.close", "id": fin["id"], "stream": 1,
                       "reason": "done", "message": ""}
        st = ag.streams[1]
        assert st.max_frame <= 16384 and not st.over and st.frames >= 19
        # resume: the rest from the offset
        ans, got, fin = await ag.download("J-RS", name, offset=100000)
        assert ans["offset"] == 100000 and got == data[100000:]
        assert fin["reason"] == "done"
        # all of it held already: accept, then done without data
        ans, got, fin = await ag.download("J-RS", name, offset=len(data))
        assert (ans["offset"], got, fin["reason"]) == (len(data), b"", "done")
        # an offset beyond the file: from 0
        ans, got, fin = await ag.download("J-RS", name, offset=len(data) + 1)
        assert ans["offset"] == 0 and got == data
        # sha256 given: it wins over the sidecar's
        await athread(sim.job, "C1001", "pbx-hq", "restore", job="J-RS2",
                      backup=name, sha256="0" * 64)
        await await_until(lambda: job_msg(ag, "J-RS2"), what="the restore job")
        assert job_msg(ag, "J-RS2")[0]["args"] == {"backup": name, "sha256": "0" * 64}
        assert not ag.binary
        await ag.stop()
    run(go())
    op = sim.events("download_open")
    assert [(e["stream"], e["offset"], e["asked_offset"], e["source"]) for e in op] == \
        [(1, 0, 0, "backup"), (3, 100000, 100000, "backup"),
         (5, len(data), len(data), "backup"), (7, 0, len(data) + 1, "backup")]
    assert op[0]["size"] == len(data) and op[0]["sha256"] == sha(data)
    assert op[0]["job"] == "J-RS" and op[0]["name"] == name
    done = sim.events("download_done")
    assert [(e["offset"], e["sent"]) for e in done] == \
        [(0, len(data)), (100000, 200000), (len(data), 0), (0, len(data))]
    assert all(e["duration"] >= 0 for e in done)
    assert not sim.events(("download_refused", "download_interrupted",
                           "stream_violation"))


def test_download_component_and_manifest(sim):
    blob = os.urandom(5000)
    m = sim.add_release("12.0.1.0", [{"name": "ipoffice-12.0.1.0.bin", "size": 200000},
                                     {"name": "notes.txt", "content_b64":
                                      base64.b64encode(blob).decode()}])
    big = b"".join(library.filler("12.0.1.0", "ipoffice-12.0.1.0.bin", 200000))
    assert len(big) == 200000
    assert m == {"release": "12.0.1.0", "profile": "linux", "components": [
        {"name": "ipoffice-12.0.1.0.bin", "version": "12.0.1.0", "size": 200000,
         "sha256": sha(big)},
        {"name": "notes.txt", "version": "12.0.1.0", "size": 5000, "sha256": sha(blob)}]}
    with open(sim.library_file("12.0.1.0", "ipoffice-12.0.1.0.bin"), "rb") as f:
        assert f.read() == big
    lib = sim.admin("GET", "/library")
    assert [(x["release"], x["manifest"]) for x in lib] == [("12.0.1.0", m)]
    assert lib[0]["dir"] == os.path.join(sim.dir, "library", "12.0.1.0")

    async def go():
        ag = await DownAgent(sim).start()
        await athread(sim.job, "C1001", "pbx-hq", "transfer", job="J-T",
                      release="12.0.1.0", restart_phones=True)
        await await_until(lambda: job_msg(ag, "J-T"), what="the transfer job")
        args = job_msg(ag, "J-T")[0]["args"]
        assert set(args) == {"manifest", "signature", "restart_phones"}
        assert args["restart_phones"] is True
        assert args["manifest"] == (
            '{"release":"12.0.1.0","profile":"linux","components":['
            '{"name":"ipoffice-12.0.1.0.bin","version":"12.0.1.0","size":200000,'
            '"sha256":"%s"},{"name":"notes.txt","version":"12.0.1.0","size":5000,'
            '"sha256":"%s"}]}' % (sha(big), sha(blob)))
        ans, got, fin = await ag.download("J-T", "ipoffice-12.0.1.0.bin")
        assert (ans["size"], ans["sha256"], ans["offset"]) == (200000, sha(big), 0)
        assert got == big and fin["reason"] == "done"
        ans, got, fin = await ag.download("J-T", "notes.txt", offset=4000)
        assert ans["offset"] == 4000 and got == blob[4000:] and fin["reason"] == "done"
        # a claimed size (component_patch) does not change what is served
        await athread(sim.job, "C1001", "pbx-hq", "transfer_upgrade", job="J-TU",
                      release="12.0.1.0", component_patch={"size": 1 << 40})
        await await_until(lambda: job_msg(ag, "J-TU"), what="the job")
        man = json.loads(job_msg(ag, "J-TU")[0]["args"]["manifest"])
        assert [c["size"] for c in man["components"]] == [1 << 40, 1 << 40]
        ans, got, fin = await ag.download("J-TU", "notes.txt")
        assert ans["size"] == 5000 and got == blob
        await ag.stop()
    run(go())
    assert [e["source"] for e in sim.events("download_open")] == ["library"] * 3
    assert sim.events("library_release")[0]["release"] == "12.0.1.0"


def test_download_credit(sim):
    """comsim never sends beyond the agent's window + credit."""
    data = os.urandom(100000)
    sim.add_release("1.0", {"f.bin": data})

    def downloads():
        return sim.admin("GET", "/downloads?customer=C1001&system=pbx-hq")

    async def go():
        ag = await DownAgent(sim).start()
        await athread(sim.job, "C1001", "pbx-hq", "transfer", job="J-C", release="1.0")
        st, ans = await ag.dopen("J-C", "f.bin", window=20000, hold=True)
        await await_until(lambda: st.got == 20000, what="the window")
        d = await athread(downloads)
        assert [(x["stream"], x["pos"], x["sent"], x["send_credit"]) for x in d] == \
            [(st.sid, 20000, 20000, 0)]
        assert st.frames == 2 and st.max_frame == 16384       # 16384 + 3616
        await ag.grant(st, n=5000)
        await await_until(lambda: st.got == 25000, what="5000 more")
        d = await athread(downloads)
        assert d[0]["pos"] == 25000 and d[0]["send_credit"] == 0
        assert st.got == 25000
        st.hold = False
        await ag.grant(st, force=True, n=100000)
        fin = await ag.finish(st)
        assert fin["reason"] == "done" and bytes(st.data) == data and not st.over
        # window 0: nothing until credit comes
        st, ans = await ag.dopen("J-C", "f.bin", window=0, hold=True)
        await ag.grant(st, n=1)
        await await_until(lambda: st.got == 1, what="1 byte")
        assert st.frames == 1 and st.data == data[:1]
        # a credit overflow (allowance 0 + 2^31): stream.close flow
        await ag.grant(st, n=2**31)
        fin = await ag.finish(st)
        assert (fin["reason"], fin["message"]) == ("flow", "credit above 2^31-1")
        assert not st.over
        # a window above 2^31-1 in the open: refused flow
        st, ans = await ag.dopen("J-C", "f.bin", window=2**31)
        assert (ans["type"], ans["reason"], ans["message"]) == \
            ("stream.close", "flow", "window above 2^31-1")
        # the agent stops a download early; comsim stops sending
        st, ans = await ag.dopen("J-C", "f.bin", window=16384, hold=True)
        await await_until(lambda: st.got == 16384, what="the window")
        await ag.send({"type": "stream.close", "stream": st.sid, "reason": "shutdown",
                       "message": "stopping"})
        await await_until(lambda: sim.events("download_interrupted"),
                          what="download_interrupted")
        # stream.end and stream.accept on a download are violations
        st, ans = await ag.dopen("J-C", "f.bin", window=1000, hold=True)
        await ag.send({"type": "stream.end", "stream": st.sid})
        await ag.send({"type": "stream.accept", "stream": st.sid, "window": 1})
        await await_until(lambda: len(sim.events("stream_violation")) == 4,
                          what="two more violations")
        st.hold = False
        await ag.grant(st, force=True, n=100000)
        fin = await ag.finish(st)
        assert fin["reason"] == "done" and bytes(st.data) == data
        assert await athread(downloads) == []
        await ag.stop()
    run(go())
    it = sim.events("download_interrupted")
    assert [(e["by"], e["reason"]) for e in it] == \
        [("comsim", "flow"), ("agent", "shutdown")]
    assert it[1]["sent"] == 16384
    assert [e["error"] for e in sim.events("stream_violation")] == [
        "credit overflow: allowance 2147483648",
        "window 2147483648 above 2^31-1 in stream.open",
        "stream.end on a download (COM ends it)",
        "stream.accept for a stream the agent opened"]


DOWNLOAD_REFUSALS = [
    # (job, name, extra open fields, message)
    ("J-none", "b.tgz", {}, "no such job: J-none"),
    ("J-other", "b.tgz", {}, "no such job: J-other"),          # another system's
    ("J-later", "b.tgz", {}, "no such job: J-later"),          # scheduled, not sent
    ("", "b.tgz", {}, 'job "": a download belongs to a restore, transfer or '
                      'transfer_upgrade job'),
    (..., "b.tgz", {}, "job missing (the restore or transfer job)"),
    (5, "b.tgz", {}, "job must be a string"),
    ("J-RS", "nope.tgz", {}, "no such backup: nope.tgz"),
    ("J-RS", "c.tgz", {}, "job J-RS restores b.tgz, not c.tgz"),
    ("J-RS", "a/b", {}, 'name "a/b" is not 1..128 characters of [A-Za-z0-9._-]'),
    ("J-RS", "", {}, 'name "" is not 1..128 characters of [A-Za-z0-9._-]'),
    ("J-RS", None, {}, "name must be a string of 1..128 characters of [A-Za-z0-9._-]"),
    ("J-RS", "b.tgz", {"offset": -1}, "offset must be an integer >= 0"),
    ("J-RS", "b.tgz", {"offset": "0"}, "offset must be an integer >= 0"),
    ("J-RS", "b.tgz", {"offset": ...}, "offset missing (0 for a new download)"),
    ("J-RS", "b.tgz", {"window": -1}, "window must be an integer 0..2^31-1"),
    ("J-T", "b.tgz", {}, "b.tgz is not a component of job J-T's manifest"),
    ("J-T2", "x.bin", {}, "x.bin of release 9.9 is not in COM's software library"),
    ("J-X", "x.bin", {}, "job J-X has no readable manifest"),
    ("J-B", "b.tgz", {}, "job J-B (backup) has nothing to download"),
    ("J-U", "x.bin", {}, "job J-U (upgrade) has nothing to download"),
]


def test_download_refused(sim):
    store_backup(sim, b"backup bytes", "b.tgz")
    store_backup(sim, b"other bytes", "c.tgz")
    sim.add_release("1.0", {"x.bin": b"x" * 10})

    async def go():
        other = await DownAgent(sim, system="pbx-b").start()
        send_job(sim, "J-other", op="restore", system="pbx-b")
        ag = await DownAgent(sim).start()
        sim.job("C1001", "pbx-hq", "restore", job="J-later", at=time.time() + 3600)
        send_job(sim, "J-RS", op="restore", args={"backup": "b.tgz"})
        sim.job("C1001", "pbx-hq", "transfer", job="J-T", release="1.0")
        send_job(sim, "J-T2", op="transfer", args={
            "manifest": '{"release":"9.9","components":[{"name":"x.bin"}]}'})
        send_job(sim, "J-X", op="transfer", args={"manifest": "not json"})
        sim.job("C1001", "pbx-hq", "upgrade", job="J-U", release="1.0",
                with_manifest=True)
        for job, name, extra, message in DOWNLOAD_REFUSALS:
            st, ans = await ag.dopen(job, name, **extra)
            assert ans["type"] == "stream.close", (job, name, ans)
            assert (ans["stream"], ans["reason"], ans["message"]) == \
                (st.sid, "refused", message), (job, name)
            assert ans["re"] == ag.next_id - 1
        assert not ag.binary
        # the same downloads that work
        ans, got, fin = await ag.download("J-RS", "b.tgz")
        assert got == b"backup bytes" and fin["reason"] == "done"
        ans, got, fin = await ag.download("J-T", "x.bin")
        assert got == b"x" * 10 and fin["reason"] == "done"
        await ag.stop()
        await other.stop()
    run(go())
    ev = sim.events("download_refused")
    assert [e["message"] for e in ev] == [r[3] for r in DOWNLOAD_REFUSALS]
    assert ev[0]["job"] == "J-none" and ev[0]["name"] == "b.tgz" and ev[0]["offset"] == 0


def test_download_drop_and_resume(sim):
    data = os.urandom(250000)
    sim.add_release("2.0", {"big.bin": data})

    async def first():
        ag = await DownAgent(sim).start()
        await athread(sim.job, "C1001", "pbx-hq", "transfer", job="J-D", release="2.0")
        await athread(sim.download_fault, "C1001", "pbx-hq", drop_after=100000)
        ans, got, fin = await ag.download("J-D", "big.bin")
        assert ans["offset"] == 0 and fin is None
        await asyncio.wait_for(ag.closed.wait(), 5)
        assert ag.ws.close_code == 1001
        return got
    part = run(first())
    assert part == data[:100000]
    it = wait_until(lambda: sim.events("download_interrupted"), what="interrupted")
    assert [(e["by"], e["reason"], e["sent"], e["pos"]) for e in it] == \
        [("link", "link_lost", 100000, 100000)]
    assert [e["action"] for e in sim.events("download_fault")] == ["set", "drop"]
    assert sim.admin("GET", "/download_fault") == []

    assert sim.stop() == 0        # the job and the library survive a restart
    sim.start()

    async def second():
        ag = await DownAgent(sim).start()
        ans, got, fin = await ag.download("J-D", "big.bin", offset=len(part))
        assert ans["offset"] == 100000 and fin["reason"] == "done"
        await ag.stop()
        return got
    assert part + run(second()) == data


def test_download_corrupt(sim):
    data = os.urandom(70000)
    store_backup(sim, data, "c.tgz")

    async def go():
        ag = await DownAgent(sim).start()
        await athread(send_job, sim, "J-C", "restore", {"backup": "c.tgz"})
        r = await athread(sim.download_fault, "C1001", "pbx-hq", corrupt=True)
        assert r == {"customer": "C1001", "system": "pbx-hq", "corrupt": True}
        ans, got, fin = await ag.download("J-C", "c.tgz")
        assert ans["sha256"] == sha(data) and fin["reason"] == "done"
        assert len(got) == len(data) and sha(got) != sha(data)
        diff = [i for i in range(len(data)) if got[i] != data[i]]
        assert len(diff) == 1
        ans, got, fin = await ag.download("J-C", "c.tgz")      # one-shot
        assert got == data
        await ag.stop()
        return diff[0]
    pos = run(go())
    f = [e for e in sim.events("download_fault") if e["action"] == "corrupt"]
    assert len(f) == 1 and f[0]["position"] == pos
    st, body = sim.admin_status("POST", "/download_fault",
                                {"customer": "C1001", "system": "pbx-hq",
                                 "drop_after": -1})
    assert st == 400 and body["error"] == "drop_after must be an integer >= 0 or null"
    sim.download_fault("C1001", "pbx-hq", drop_after=5, corrupt=True)
    assert sim.download_fault("C1001", "pbx-hq", clear=True) == \
        {"customer": "C1001", "system": "pbx-hq"}


# ------------------------------------------------------------------ library, signing

def test_library_signing(sim, tmp_path):
    sim.add_release("12.0.1.0", {"a.bin": 1000, "b.bin": b"bee"})
    keys = sim.signing_keys()
    assert [(k["id"], k["current"]) for k in keys] == [("k1", True)]
    k1 = keys[0]["public_pem_path"]
    assert k1 == os.path.join(sim.dir, "pki", "k1.pub.pem")
    assert open(k1).read().startswith("-----BEGIN PUBLIC KEY-----")
    assert os.stat(os.path.join(sim.dir, "pki", "k1.key")).st_mode & 0o077 == 0
    assert sim.info["signing_keys"] == [k1]

    sent = {}

    async def go():
        ag = await DownAgent(sim).start()

        async def job(jid, op="transfer", **kw):
            await athread(sim.job, "C1001", "pbx-hq", op, job=jid, **kw)
            await await_until(lambda: job_msg(ag, jid), what=jid)
            sent[jid] = job_msg(ag, jid)[0]["args"]
        await job("J-1", release="12.0.1.0")
        rot = await athread(sim.rotate_signing_key)
        assert rot["id"] == "k2" and rot["current"]
        await job("J-2", release="12.0.1.0", allow_downgrade=True)
        await job("J-old", release="12.0.1.0", sign_with="k1")
        await job("J-unk", release="12.0.1.0", sign_with="unknown")
        await job("J-tam", release="12.0.1.0", tamper=True)
        await job("J-pat", "transfer_upgrade", release="12.0.1.0",
                  manifest_patch={"profile": "ip500v2", "extra": 1},
                  component_patch={"size": 1 << 40})
        await job("J-up", "upgrade", release="12.0.1.0")
        await job("J-upm", "upgrade", release="12.0.1.0", with_manifest=True,
                  restart_phones=False)
        await job("J-args", release="12.0.1.0", args={"signature": "AAAA"})
        await ag.stop()
    run(go())
    keys = sim.signing_keys()
    assert [(k["id"], k["current"]) for k in keys] == [("k1", False), ("k2", True)]
    k2 = keys[1]["public_pem_path"]
    t = str(tmp_path)

    def ok(jid, pub):
        return openssl_verify(pub, sent[jid]["manifest"], sent[jid]["signature"], t)
    assert ok("J-1", k1) and not ok("J-1", k2)
    assert ok("J-2", k2) and not ok("J-2", k1)
    assert sent["J-2"]["allow_downgrade"] is True
    assert ok("J-old", k1)
    assert not ok("J-unk", k1) and not ok("J-unk", k2)
    assert not ok("J-tam", k2)
    tam, good = sent["J-tam"]["manifest"], sent["J-2"]["manifest"]
    assert len(tam) == len(good) and sum(a != b for a, b in zip(tam, good)) == 1
    json.loads(tam)                                  # still JSON
    assert ok("J-pat", k2)
    pat = json.loads(sent["J-pat"]["manifest"])
    assert pat["profile"] == "ip500v2" and pat["extra"] == 1
    assert [c["size"] for c in pat["components"]] == [1 << 40, 1 << 40]
    assert sent["J-up"] == {}
    assert ok("J-upm", k2) and sent["J-upm"]["restart_phones"] is False
    assert sent["J-args"]["signature"] == "AAAA"     # explicit args win
    # the history shows the release, not the manifest text
    h = {j["job"]: j for j in sim.jobs("C1001", "pbx-hq")}
    assert h["J-1"]["release"] == "12.0.1.0" and "manifest" not in h["J-1"]["args"]
    assert h["J-1"]["args"]["release"] == "12.0.1.0" and "signature" in h["J-1"]["args"]
    assert h["J-up"]["args"] == {"release": "12.0.1.0"}
    ev = sim.events("signing_key")
    assert [e["id"] for e in ev] == ["k2"]


LIBRARY_ERRORS = [
    ({"release": "1.0", "profile": "linux", "components": [{"name": "a", "size": 1}]},
     409, "release 1.0 is in the library already"),
    ({"release": ".x", "profile": "linux", "components": [{"name": "a", "size": 1}]},
     400, "release must be 1..64 characters of [A-Za-z0-9._-], starting with a "
          "letter or digit"),
    ({"release": "2.0", "profile": "windows", "components": [{"name": "a", "size": 1}]},
     400, "profile must be ip500v2 or linux"),
    ({"release": "2.0", "profile": "linux", "components": []},
     400, "components must be a list of 1..16 objects"),
    ({"release": "2.0", "profile": "linux",
      "components": [{"name": "c%d" % i, "size": 1} for i in range(17)]},
     400, "components must be a list of 1..16 objects"),
    ({"release": "2.0", "profile": "linux", "components": [{"name": "a/b", "size": 1}]},
     400, 'components[0]: name "a/b" is not 1..128 characters of [A-Za-z0-9._-]'),
    ({"release": "2.0", "profile": "linux",
      "components": [{"name": "a", "size": 1}, {"name": "a", "size": 2}]},
     400, "components[1]: name a appears twice"),
    ({"release": "2.0", "profile": "linux",
      "components": [{"name": "a", "size": 1, "content_b64": ""}]},
     400, "components[0]: give size or content_b64 (one of them)"),
    ({"release": "2.0", "profile": "linux", "components": [{"name": "a", "size": -1}]},
     400, "components[0]: size must be an integer 0..4294967296"),
    ({"release": "2.0", "profile": "linux",
      "components": [{"name": "a", "content_b64": "!!"}]},
     400, None),
]

JOB_ERRORS = [
    ({"op": "transfer", "release": "3.0"}, 404, 'no release "3.0" in the software library'),
    ({"op": "backup", "release": "1.0"}, 400,
     "release is for transfer, transfer_upgrade, upgrade jobs"),
    ({"op": "transfer", "tamper": True}, 400,
     "tamper needs release (a manifest from the library)"),
    ({"op": "upgrade", "release": "1.0", "sign_with": "unknown"}, 400,
     "sign_with needs a manifest (with_manifest: true)"),
    ({"op": "transfer", "release": "1.0", "sign_with": "k9"}, 404,
     'sign_with: no signing key "k9" (ids: k1, or "unknown")'),
    ({"op": "transfer", "release": "1.0", "manifest_patch": []}, 400,
     "manifest_patch must be an object"),
    ({"op": "backup", "backup": "x.tgz"}, 400, "backup is for restore jobs"),
    ({"op": "restore", "backup": "../x"}, 400,
     'backup: name "../x" is not 1..128 characters of [A-Za-z0-9._-]'),
    ({"op": "backup", "at": "soon"}, 400, "at must be a number (unix time in seconds)"),
    ({"op": "backup", "job": 5}, 400, "job must be a string"),
    ({"op": "backup"}, 404, "no link for C1001/pbx-hq"),
]


def test_library_and_job_errors(sim):
    sim.add_release("1.0", {"a": 1})
    for body, status, error in LIBRARY_ERRORS:
        st, ans = sim.admin_status("POST", "/library", body)
        assert st == status, (body, ans)
        assert error is None or ans["error"] == error
    assert [x["release"] for x in sim.admin("GET", "/library")] == ["1.0"]
    assert os.listdir(os.path.join(sim.dir, "library")) == ["1.0"]
    for body, status, error in JOB_ERRORS:
        st, ans = sim.admin_status("POST", "/job", dict(body, customer="C1001",
                                                        system="pbx-hq"))
        assert (st, ans) == (status, {"error": error}), body
    assert sim.jobs("C1001", "pbx-hq") == []
    st, ans = sim.admin_status("GET", "/jobs?customer=C1001")
    assert st == 400


# ------------------------------------------------------------------ scheduled jobs

def test_scheduled_jobs(sim):
    async def go():
        ag = await DownAgent(sim).start()
        t0 = time.time()
        r = await athread(sim.job, "C1001", "pbx-hq", "backup", job="J-due",
                          at=t0 + 0.5, args={"kind": "manual"})
        assert r == {"job": "J-due", "status": "scheduled", "at": t0 + 0.5}
        h = await athread(sim.jobs, "C1001", "pbx-hq")
        assert [(j["job"], j["status"], j["sent_at"]) for j in h] == \
            [("J-due", "scheduled", None)]
        await await_until(lambda: job_msg(ag, "J-due"), what="the due job")
        assert time.time() >= t0 + 0.5
        assert job_msg(ag, "J-due")[0]["args"] == {"kind": "manual"}
        h = await athread(sim.jobs, "C1001", "pbx-hq")
        assert h[0]["status"] == "in progress" and h[0]["sent_at"] >= t0 + 0.5
        # paused: not sent when due, even after a later job went out
        t1 = time.time()
        await athread(sim.job, "C1001", "pbx-hq", "backup", job="J-p", at=t1 + 0.5)
        await athread(sim.job, "C1001", "pbx-hq", "backup", job="J-s", at=t1 + 0.5)
        r = await athread(sim.admin, "POST", "/job/pause", {"job": "J-p"})
        assert r["status"] == "paused" and r["job"] == "J-p"
        r = await athread(sim.admin, "POST", "/job/stop", {"job": "J-s"})
        assert r["status"] == "stopped"
        await athread(sim.job, "C1001", "pbx-hq", "backup", job="J-probe", at=t1 + 0.7)
        await await_until(lambda: job_msg(ag, "J-probe"), what="the probe job")
        assert not job_msg(ag, "J-p") and not job_msg(ag, "J-s")
        # 409s
        for verb, jid, words in (
                ("pause", "J-p", "job J-p is paused: only a scheduled job can be paused"),
                ("resume", "J-s", "job J-s is stopped: only a paused job can be resumed"),
                ("stop", "J-s", "job J-s is stopped: only a scheduled or paused job "
                                "can be stopped"),
                ("pause", "J-due", "job J-due is in progress: only a scheduled job "
                                   "can be paused"),
                ("stop", "J-due", "job J-due is in progress: only a scheduled or "
                                  "paused job can be stopped"),
                ("resume", "J-due", "job J-due is in progress: only a paused job "
                                    "can be resumed")):
            st, ans = await athread(sim.admin_status, "POST", "/job/" + verb,
                                    {"job": jid})
            assert (st, ans) == (409, {"error": words}), (verb, jid)
        st, ans = await athread(sim.admin_status, "POST", "/job/pause", {"job": "J-x"})
        assert (st, ans) == (404, {"error": "no such job: J-x"})
        st, ans = await athread(sim.admin_status, "POST", "/job", {
            "customer": "C1001", "system": "pbx-hq", "op": "backup", "job": "J-p",
            "at": t1})
        assert (st, ans) == (409, {"error": "job J-p is paused already"})
        # resumed after its time: sent at once
        r = await athread(sim.admin, "POST", "/job/resume", {"job": "J-p"})
        assert r["status"] == "scheduled"
        await await_until(lambda: job_msg(ag, "J-p"), what="the resumed job")
        await ag.stop()
        # due while the system has no link: sent after the next welcome
        r = await athread(sim.job, "C1001", "pbx-b", "backup", job="J-b",
                          at=time.time() - 1)
        assert r["status"] == "scheduled"
        b = await DownAgent(sim, system="pbx-b").start()
        await await_until(lambda: job_msg(b, "J-b"), what="the job after welcome")
        await b.stop()
    run(go())
    h = {j["job"]: j for j in sim.jobs("C1001", "pbx-hq")}
    assert [j["job"] for j in sim.jobs("C1001", "pbx-hq")] == \
        ["J-due", "J-p", "J-s", "J-probe"]
    assert {k: v["status"] for k, v in h.items()} == {
        "J-due": "in progress", "J-p": "in progress", "J-s": "stopped",
        "J-probe": "in progress"}
    assert h["J-s"]["sent_at"] is None and h["J-s"]["at"] > 0
    b = sim.jobs("C1001", "pbx-b")
    assert b[0]["status"] == "in progress" and b[0]["sent_at"] > b[0]["at"]
    w = [e for e in sim.events("welcome") if e["system"] == "pbx-b"][-1]
    s = [e for e in sim.events("job_sent") if e["job"] == "J-b"][0]
    assert s["seq"] > w["seq"] and s["scheduled"]
    assert [e["job"] for e in sim.events("job_paused")] == ["J-p"]
    assert [e["job"] for e in sim.events("job_resumed")] == ["J-p"]
    assert [e["job"] for e in sim.events("job_stopped")] == ["J-s"]


def test_job_history(sim):
    sim.add_release("12.0.1.0", {"a.bin": 10})

    async def go():
        ag = await DownAgent(sim).start()
        for jid, op, kw in (("J-ok", "backup", {}), ("J-bad", "restore", {}),
                            ("J-no", "backup", {}), ("J-tr", "transfer",
                                                     {"release": "12.0.1.0"}),
                            ("J-wait", "backup", {"at": time.time() + 3600})):
            await athread(sim.job, "C1001", "pbx-hq", op, job=jid, **kw)
        await await_until(lambda: job_msg(ag, "J-tr"), what="the jobs")
        for st in ({"job": "J-ok", "state": "accepted"},
                   {"job": "J-ok", "state": "running", "progress": 40, "phase": "backup",
                    "message": "making the backup"},
                   {"job": "J-ok", "state": "succeeded"},
                   {"job": "J-bad", "state": "accepted"},
                   {"job": "J-bad", "state": "failed", "reason": "corrupt",
                    "message": "sha256 mismatch"},
                   {"job": "J-no", "state": "rejected", "reason": "busy",
                    "message": "backup J-ok runs"},
                   {"job": "J-tr", "state": "accepted"},
                   {"job": "J-unknown", "state": "accepted"}):
            await ag.send(dict(st, type="job.state"))
        await await_until(lambda: len([m for m in ag.msgs if m["type"] == "ack"]) >= 3,
                          what="acks of the final states")
        await ag.stop()
    t0 = time.time()
    run(go())
    h = sim.jobs("C1001", "pbx-hq")
    assert [(j["job"], j["op"], j["status"], j["reason"], j["message"]) for j in h] == [
        ("J-ok", "backup", "completed", None, None),
        ("J-bad", "restore", "failed", "corrupt", "sha256 mismatch"),
        ("J-no", "backup", "rejected", "busy", "backup J-ok runs"),
        ("J-tr", "transfer", "in progress", None, None),
        ("J-wait", "backup", "scheduled", None, None)]
    ok = h[0]
    assert [s["state"] for s in ok["states"]] == ["accepted", "running", "succeeded"]
    assert {k: ok["states"][1][k] for k in ("progress", "phase", "message", "reason")} \
        == {"progress": 40, "phase": "backup", "message": "making the backup",
            "reason": None}
    assert all(t0 - 30 <= s["at"] <= time.time() for s in ok["states"])
    assert ok["created"] <= ok["sent_at"] and ok["at"] is None and ok["args"] == {}
    assert h[3]["args"]["release"] == "12.0.1.0" and "manifest" not in h[3]["args"]
    assert [(e["job"], e["status"]) for e in sim.events("job_status")] == [
        ("J-ok", "completed"), ("J-bad", "failed"), ("J-no", "rejected")]
    # the history and the jobs survive a comsim restart
    assert sim.stop() == 0
    sim.start()
    assert sim.jobs("C1001", "pbx-hq") == h

    async def again():
        ag = await DownAgent(sim).start()
        ans, got, fin = await ag.download("J-tr", "a.bin")
        assert got == b"".join(library.filler("12.0.1.0", "a.bin", 10))
        await ag.stop()
    run(again())


# ---- custom files (guide ch. 18): provider / reseller / system tree

import io as _io  # noqa: E402
import tarfile as _tarfile  # noqa: E402


def _b64(data):
    return base64.b64encode(data).decode()


def test_custom_files_store_list_delete(sim):
    rec = dict(CUSTOMERS[0], reseller="R7")
    sim.admin("POST", "/customers", rec)
    xml = b'<customdata version="1"><security/></customdata>'
    stored = {}
    for body in ({"level": "provider", "name": "CustomTemplates.tar",
                  "content_b64": _b64(b"P" * 1024)},
                 {"level": "reseller", "reseller": "R7",
                  "name": "CustomPhoneFiles.tar",
                  "files": {"a.txt": "alpha", "dir/b.cfg": "beta\n"}},
                 {"level": "system", "customer": "C1001", "system": "pbx-hq",
                  "name": "CustomData.xml", "content_b64": _b64(xml)},
                 {"level": "system", "customer": "C1001", "system": "pbx-hq",
                  "name": "CustomPhoneFiles.tar", "content_b64": _b64(b"T" * 10)}):
        r = sim.admin("POST", "/custom_files", body)
        assert r["name"] == body["name"] and r["level"] == body["level"]
        stored[(body["level"], body["name"])] = r
    # stored on disk, atomically (no temp files left)
    d = os.path.join(sim.dir, "custom")
    with open(os.path.join(d, "customers", "C1001", "pbx-hq",
                           "CustomData.xml"), "rb") as f:
        assert f.read() == xml
    for root, _, names in os.walk(d):
        assert not [n for n in names if ".tmp." in n]

    # the tar built from "files" holds exactly those members
    with open(os.path.join(d, "resellers", "R7", "CustomPhoneFiles.tar"),
              "rb") as f:
        tdata = f.read()
    with _tarfile.open(fileobj=_io.BytesIO(tdata)) as t:
        members = t.getmembers()
        assert sorted(m.name for m in members) == ["a.txt", "dir/b.cfg"]
        assert all(m.isfile() and m.mtime == 0 for m in members)
        assert t.extractfile("a.txt").read() == b"alpha"
        assert t.extractfile("dir/b.cfg").read() == b"beta\n"
    assert stored[("reseller", "CustomPhoneFiles.tar")]["sha256"] == \
        hashlib.sha256(tdata).hexdigest()
    # deterministic: the same members give the same bytes
    again = sim.admin("POST", "/custom_files", {
        "level": "reseller", "reseller": "R7", "name": "CustomPhoneFiles.tar",
        "files": {"a.txt": "alpha", "dir/b.cfg": "beta\n"}})
    assert again["sha256"] == hashlib.sha256(tdata).hexdigest()

    lst = sim.admin("GET", "/custom_files?customer=C1001&system=pbx-hq")
    assert [lv["level"] for lv in lst["levels"]] == ["provider", "reseller",
                                                     "system"]
    prov, res, cust = lst["levels"]
    assert res["reseller"] == "R7"
    assert prov["files"] == [{"name": "CustomTemplates.tar", "size": 1024,
                              "sha256": hashlib.sha256(b"P" * 1024).hexdigest()}]
    assert [f["name"] for f in res["files"]] == ["CustomPhoneFiles.tar"]
    assert [f["name"] for f in cust["files"]] == ["CustomPhoneFiles.tar",
                                                  "CustomData.xml"]
    assert cust["files"][1] == {"name": "CustomData.xml", "size": len(xml),
                                "sha256": hashlib.sha256(xml).hexdigest()}

    # the other system of the customer: no reseller, no system files
    other = sim.admin("GET", "/custom_files?customer=C1001&system=pbx-b")
    assert [lv["level"] for lv in other["levels"]] == ["provider", "system"]
    assert other["levels"][1]["files"] == []
    assert len(other["levels"][0]["files"]) == 1

    # delete
    sim.admin("POST", "/custom_files/delete", {
        "level": "system", "customer": "C1001", "system": "pbx-hq",
        "name": "CustomData.xml"})
    lst = sim.admin("GET", "/custom_files?customer=C1001&system=pbx-hq")
    assert [f["name"] for f in lst["levels"][2]["files"]] == \
        ["CustomPhoneFiles.tar"]
    st, body = sim.admin_status("POST", "/custom_files/delete", {
        "level": "system", "customer": "C1001", "system": "pbx-hq",
        "name": "CustomData.xml"})
    assert st == 404 and "error" in body
    sim.admin("POST", "/custom_files/delete", {
        "level": "provider", "name": "CustomTemplates.tar"})
    lst = sim.admin("GET", "/custom_files?customer=C1001&system=pbx-hq")
    assert lst["levels"][0]["files"] == []


def test_custom_files_bad_requests(sim):
    ok = {"level": "provider", "name": "CustomData.xml",
          "content_b64": _b64(b"<x/>")}
    cases = [
        (dict(ok, level="distributor"), "level"),
        (dict(ok, level="customer"), "level"),      # the level is "system" now
        (dict(ok, level=None), "level"),
        (dict(ok, name="Custom.tar"), "name"),
        (dict(ok, name="../CustomData.xml"), "name"),
        ({"level": "system", "system": "pbx-hq", "name": "CustomData.xml",
          "content_b64": _b64(b"<x/>")}, "customer"),
        ({"level": "system", "customer": "C1001", "name": "CustomData.xml",
          "content_b64": _b64(b"<x/>")}, "system"),
        ({"level": "system", "customer": "..", "system": "s",
          "name": "CustomData.xml", "content_b64": _b64(b"<x/>")}, "customer"),
        (dict(ok, level="reseller"), "reseller"),
        (dict(ok, level="reseller", reseller="a/b"), "reseller"),
        (dict(ok, content_b64="!!notbase64"), "base64"),
        ({"level": "provider", "name": "CustomData.xml"}, "content_b64"),
        (dict(ok, files={"a": "b"}), "content_b64"),
        ({"level": "provider", "name": "CustomData.xml", "files": {"a": "b"}},
         "tar"),
        ({"level": "provider", "name": "CustomTemplates.tar",
          "files": {"a": 1}}, "files"),
        ({"level": "provider", "name": "CustomTemplates.tar",
          "content_b64": _b64(b"\0" * ((10 << 20) + 1))}, "too large"),
        ({"level": "provider", "name": "CustomTemplates.tar",
          "files": {"big": "x" * (10 << 20)}}, "too large"),
    ]
    for body, word in cases:
        st, r = sim.admin_status("POST", "/custom_files", body)
        assert st == 400 and word in r["error"], (body.keys(), r)
    st, r = sim.admin_status("POST", "/custom_files/delete",
                             {"level": "nope", "name": "CustomData.xml"})
    assert st == 400 and "level" in r["error"]
    # exactly 10 MiB is allowed
    sim.admin("POST", "/custom_files", {
        "level": "provider", "name": "CustomTemplates.tar",
        "content_b64": _b64(b"\0" * (10 << 20))})
    st, r = sim.admin_status("GET", "/custom_files?system=pbx-hq")
    assert st == 400 and "customer" in r["error"]
    st, r = sim.admin_status("GET", "/custom_files?customer=C1001")
    assert st == 400
    st, r = sim.admin_status("GET", "/custom_files?customer=C9&system=zz")
    assert st == 404
    st, r = sim.admin_status("POST", "/customers",
                             dict(CUSTOMERS[0], reseller=5))
    assert st == 400 and "reseller" in r["error"]
    assert not os.path.exists(os.path.join(sim.dir, "custom", "customers"))


# ---- custom files for the agent (PROTOCOL.md 3.5): custom.list, downloads

PHONES, TEMPLATES, DATA = comsim.CUSTOM_NAMES


def entry(data):
    return {"size": len(data), "sha256": sha(data)}


async def custom_list(ag, timeout=5):
    """custom.list; returns comsim's answer (custom.files or error)."""
    m = await ag.send({"type": "custom.list"})
    ans = await await_until(lambda: [x for x in ag.msgs if x.get("re") == m["id"]],
                            timeout, "the answer to custom.list %d" % m["id"])
    assert len(ans) == 1
    return m["id"], ans[0]


async def custom_list_silent(ag):
    """custom.list that comsim does not answer: the status sent after it is
    acked, and nothing came for the list before (one reader per link)."""
    m = await ag.send({"type": "custom.list"})
    st = await ag.send({"type": "status", "operation": "idle"})
    await await_until(lambda: [x for x in ag.msgs if x.get("re") == st["id"]],
                      what="the ack of the status after a silent list")
    assert not [x for x in ag.msgs if x.get("re") == m["id"]]
    return m["id"]


async def cdownload(ag, level, name, job="", offset=0, **extra):
    """A custom-file download: (accept or refusal, bytes, final stream.close)."""
    st, ans = await ag.dopen(job, name, offset, content="custom", level=level,
                             **extra)
    if st.accept is None:
        return ans, b"", None
    fin = await ag.finish(st)
    return ans, bytes(st.data), fin


def hq_with_reseller(sim, reseller="R7"):
    sim.admin("POST", "/customers", dict(CUSTOMERS[0], reseller=reseller))


def test_custom_list_levels(sim):
    hq_with_reseller(sim)
    ids = {"customer": "C1001", "system": "pbx-hq"}
    p_ph, p_tp = os.urandom(4000), os.urandom(3000)
    s_ph, r_tp = os.urandom(2000), os.urandom(1000)
    xml = {lv: b'<customdata version="1"><!-- %s --></customdata>' % lv.encode()
           for lv in comsim.CUSTOM_LEVELS}

    async def go():
        ag = await DownAgent(sim).start()
        b = await DownAgent(sim, system="pbx-b").start()      # no reseller
        # nothing anywhere: an empty custom.files
        mid, ans = await custom_list(ag)
        assert ans == {"type": "custom.files", "id": ans["id"], "re": mid}
        # provider: both tars; reseller: only CustomData.xml (so no key);
        # system: the phone files
        await athread(sim.custom_file, "provider", PHONES, p_ph)
        await athread(sim.custom_file, "provider", TEMPLATES, p_tp)
        await athread(sim.custom_file, "reseller", DATA, xml["reseller"],
                      reseller="R7")
        await athread(sim.custom_file, "system", PHONES, s_ph, **ids)
        mid, ans = await custom_list(ag)
        assert ans == {"type": "custom.files", "id": ans["id"], "re": mid,
                       "provider": {"phones": entry(p_ph), "templates": entry(p_tp)},
                       "system": {"phones": entry(s_ph)},
                       "customdata": dict(entry(xml["reseller"]), level="reseller")}
        # customdata precedence: system, else reseller, else provider
        await athread(sim.custom_file, "provider", DATA, xml["provider"])
        _, ans = await custom_list(ag)
        assert ans["customdata"]["level"] == "reseller"
        await athread(sim.custom_file, "system", DATA, xml["system"], **ids)
        _, ans = await custom_list(ag)
        assert ans["customdata"] == dict(entry(xml["system"]), level="system")
        await athread(sim.delete_custom_file, "system", DATA, **ids)
        await athread(sim.delete_custom_file, "reseller", DATA, reseller="R7")
        _, ans = await custom_list(ag)
        assert ans["customdata"] == dict(entry(xml["provider"]), level="provider")
        # a reseller tar: the reseller level appears
        await athread(sim.custom_file, "reseller", TEMPLATES, r_tp, reseller="R7")
        _, ans = await custom_list(ag)
        assert set(ans) == {"type", "id", "re", "provider", "reseller", "system",
                            "customdata"}
        assert ans["reseller"] == {"templates": entry(r_tp)}
        # pbx-b has no reseller: R7's files are not its; no system files
        await athread(sim.custom_file, "reseller", DATA, xml["reseller"],
                      reseller="R7")
        mid, ans = await custom_list(b)
        assert ans == {"type": "custom.files", "id": ans["id"], "re": mid,
                       "provider": {"phones": entry(p_ph), "templates": entry(p_tp)},
                       "customdata": dict(entry(xml["provider"]), level="provider")}
        # the record's reseller is read at list time
        await athread(sim.admin, "POST", "/customers",
                      dict(CUSTOMERS[1], reseller="R7"))
        _, ans = await custom_list(b)
        assert ans["reseller"] == {"templates": entry(r_tp)}
        assert ans["customdata"]["level"] == "reseller"
        # everything gone: empty again
        for lv, name, kw in (("provider", PHONES, {}), ("provider", TEMPLATES, {}),
                             ("provider", DATA, {}), ("reseller", TEMPLATES,
                                                      {"reseller": "R7"}),
                             ("reseller", DATA, {"reseller": "R7"}),
                             ("system", PHONES, ids)):
            st, _ = await athread(sim.delete_custom_file, lv, name, **kw)
            assert st == 200
        mid, ans = await custom_list(ag)
        assert ans == {"type": "custom.files", "id": ans["id"], "re": mid}
        await ag.stop()
        await b.stop()
    run(go())
    ev = sim.events("custom_list", system="pbx-hq")
    assert [e["n"] for e in ev] == list(range(1, 8))
    assert all(e["answer"] == "custom.files" and e["fault"] is None for e in ev)
    assert ev[1]["files"]["system"] == {"phones": entry(s_ph)}
    assert sim.agent("C1001", "pbx-hq")["custom_lists"] == 7
    assert sim.agent("C1001", "pbx-b")["custom_lists"] == 2
    assert not sim.events(("stream_violation", "internal_error"))


def test_custom_list_fault(sim):
    sim.custom_file("provider", PHONES, b"phones")
    hq = {"customer": "C1001", "system": "pbx-hq"}
    unavailable = {"type": "error", "code": "unavailable",
                   "message": "custom files unavailable"}

    async def go():
        ag = await DownAgent(sim).start()
        other = await DownAgent(sim, system="pbx-b").start()
        # error: persistent until cleared, for this system only
        r = await athread(sim.custom_list_fault, "C1001", "pbx-hq", "error")
        assert r == dict(hq, mode="error")
        for _ in range(2):
            mid, ans = await custom_list(ag)
            assert ans == dict(unavailable, id=ans["id"], re=mid)
        _, ans = await custom_list(other)
        assert ans["type"] == "custom.files"
        assert await athread(sim.admin, "GET", "/custom_list_fault") == \
            [dict(hq, mode="error")]
        r = await athread(sim.custom_list_fault, "C1001", "pbx-hq", "none")
        assert r == hq
        _, ans = await custom_list(ag)
        assert ans["type"] == "custom.files" and ans["provider"]["phones"]
        # silent, persistent
        await athread(sim.custom_list_fault, "C1001", "pbx-hq", "silent")
        await custom_list_silent(ag)
        await custom_list_silent(ag)
        await athread(sim.custom_list_fault, "C1001", "pbx-hq", "none")
        _, ans = await custom_list(ag)
        assert ans["type"] == "custom.files"
        # count: that many lists, then it clears itself
        r = await athread(sim.custom_list_fault, "C1001", "pbx-hq", "error", 2)
        assert r == dict(hq, mode="error", count=2)
        for _ in range(2):
            _, ans = await custom_list(ag)
            assert ans["type"] == "error"
        _, ans = await custom_list(ag)
        assert ans["type"] == "custom.files"
        assert await athread(sim.admin, "GET", "/custom_list_fault") == []
        await athread(sim.custom_list_fault, "C1001", "pbx-hq", "silent", 1)
        await custom_list_silent(ag)
        _, ans = await custom_list(ag)
        assert ans["type"] == "custom.files"
        # a fault survives a reconnect (it belongs to the system)
        await athread(sim.custom_list_fault, "C1001", "pbx-hq", "error")
        await ag.stop()
        ag = await DownAgent(sim).start()
        _, ans = await custom_list(ag)
        assert ans["type"] == "error"
        await athread(sim.custom_list_fault, "C1001", "pbx-hq", "none")
        await ag.stop()
        await other.stop()
    run(go())
    ev = sim.events("custom_list", system="pbx-hq")
    assert [(e["answer"], e["fault"]) for e in ev] == [
        ("error", "error"), ("error", "error"), ("custom.files", None),
        ("silent", "silent"), ("silent", "silent"), ("custom.files", None),
        ("error", "error"), ("error", "error"), ("custom.files", None),
        ("silent", "silent"), ("custom.files", None), ("error", "error")]
    assert all(e["files"] is None for e in ev if e["fault"])
    assert [e["n"] for e in ev] == list(range(1, 13))
    f = sim.events("custom_list_fault")
    assert [(e["action"], e.get("mode")) for e in f] == [
        ("set", "error"), ("set", None), ("set", "silent"), ("set", None),
        ("set", "error"), ("expired", "error"), ("set", "silent"),
        ("expired", "silent"), ("set", "error"), ("set", None)]
    for body, word in (({"system": "pbx-hq", "mode": "error"}, "customer"),
                       (dict(hq, mode="boom"), "mode"),
                       (dict(hq), "mode"),
                       (dict(hq, mode="error", count=0), "count"),
                       (dict(hq, mode="error", count="2"), "count"),
                       (dict(hq, mode="error", count=True), "count"),
                       (dict(hq, mode="none", count=1), "count")):
        st, r = sim.admin_status("POST", "/custom_list_fault", body)
        assert st == 400 and word in r["error"], (body, r)
    assert sim.admin("GET", "/custom_list_fault") == []


def test_custom_download(sim):
    hq_with_reseller(sim)
    ids = {"customer": "C1001", "system": "pbx-hq"}
    p_ph = os.urandom(100000)
    r_tp = os.urandom(20000)
    s_data = b'<customdata version="1"><vmpro>1</vmpro></customdata>'
    sim.custom_file("provider", PHONES, p_ph)
    sim.custom_file("reseller", TEMPLATES, r_tp, reseller="R7")
    sim.custom_file("system", DATA, s_data, **ids)

    def downloads():
        return sim.admin("GET", "/downloads?customer=C1001&system=pbx-hq")

    async def go():
        ag = await DownAgent(sim).start()
        _, lst = await custom_list(ag)
        # the agent's own fetch (job ""), each level
        ans, got, fin = await cdownload(ag, "provider", PHONES)
        assert ans == {"type": "stream.accept", "id": ans["id"], "re": ans["re"],
                       "stream": ans["stream"], "window": 65536,
                       "size": len(p_ph), "sha256": sha(p_ph), "offset": 0}
        assert {"size": ans["size"], "sha256": ans["sha256"]} == \
            lst["provider"]["phones"]
        assert got == p_ph and fin["reason"] == "done"
        ans, got, fin = await cdownload(ag, "reseller", TEMPLATES)
        assert got == r_tp and ans["sha256"] == sha(r_tp) and fin["reason"] == "done"
        ans, got, fin = await cdownload(ag, lst["customdata"]["level"], DATA)
        assert got == s_data and ans["sha256"] == lst["customdata"]["sha256"]
        # resume by offset; all held; beyond the file (from 0)
        ans, got, fin = await cdownload(ag, "provider", PHONES, offset=60000)
        assert ans["offset"] == 60000 and got == p_ph[60000:]
        assert fin["reason"] == "done"
        ans, got, fin = await cdownload(ag, "provider", PHONES, offset=len(p_ph))
        assert (ans["offset"], got, fin["reason"]) == (len(p_ph), b"", "done")
        ans, got, fin = await cdownload(ag, "provider", PHONES,
                                        offset=len(p_ph) + 1)
        assert ans["offset"] == 0 and got == p_ph
        # a refresh_custom job COM issued: its downloads name it
        r = await athread(sim.job, "C1001", "pbx-hq", "refresh_custom",
                          job="J-RC", prune=True)
        assert r["status"] == "in progress"
        await await_until(lambda: job_msg(ag, "J-RC"), what="the refresh job")
        assert job_msg(ag, "J-RC")[0]["op"] == "refresh_custom"
        assert job_msg(ag, "J-RC")[0]["args"] == {"prune": True}
        ans, got, fin = await cdownload(ag, "reseller", TEMPLATES, job="J-RC")
        assert got == r_tp and fin["reason"] == "done"
        # /downloads shows the level of a custom download in progress
        st, ans = await ag.dopen("J-RC", PHONES, content="custom", level="provider",
                                 window=1000, hold=True)
        await await_until(lambda: st.got == 1000, what="the window")
        d = await athread(downloads)
        assert [(x["source"], x["level"], x["job"], x["op"]) for x in d] == \
            [("custom", "provider", "J-RC", "refresh_custom")]
        st.hold = False
        await ag.grant(st, force=True, n=len(p_ph))
        fin = await ag.finish(st)
        assert fin["reason"] == "done" and bytes(st.data) == p_ph
        assert not ag.binary
        await ag.stop()
    run(go())
    cd = sim.events("custom_download")
    assert [(e["level"], e["name"], e["offset"], e["job"]) for e in cd] == [
        ("provider", PHONES, 0, ""), ("reseller", TEMPLATES, 0, ""),
        ("system", DATA, 0, ""), ("provider", PHONES, 60000, ""),
        ("provider", PHONES, len(p_ph), ""), ("provider", PHONES, 0, ""),
        ("reseller", TEMPLATES, 0, "J-RC"), ("provider", PHONES, 0, "J-RC")]
    assert cd[5]["asked_offset"] == len(p_ph) + 1
    assert (cd[0]["size"], cd[0]["sha256"]) == (len(p_ph), sha(p_ph))
    op = sim.events("download_open")
    assert [(e["source"], e["level"]) for e in op] == \
        [("custom", e["level"]) for e in cd]
    done = sim.events("download_done")
    assert [(e["name"], e["offset"], e["sent"]) for e in done] == [
        (PHONES, 0, len(p_ph)), (TEMPLATES, 0, len(r_tp)), (DATA, 0, len(s_data)),
        (PHONES, 60000, len(p_ph) - 60000), (PHONES, len(p_ph), 0),
        (PHONES, 0, len(p_ph)), (TEMPLATES, 0, len(r_tp)), (PHONES, 0, len(p_ph))]
    assert not sim.events(("download_refused", "download_interrupted",
                           "stream_violation"))


CUSTOM_REFUSALS = [
    # (system, job, level, name, extra open fields, message)
    ("pbx-hq", "", "customer", PHONES, {},
     'level must be one of provider, reseller, system, not "customer"'),
    ("pbx-hq", "", None, PHONES, {},
     "level must be one of provider, reseller, system, not null"),
    ("pbx-hq", "", "provider", "Custom.tar", {},
     "name must be one of CustomPhoneFiles.tar, CustomTemplates.tar, "
     'CustomData.xml, not "Custom.tar"'),
    ("pbx-hq", "", "provider", None, {},
     "name must be one of CustomPhoneFiles.tar, CustomTemplates.tar, "
     "CustomData.xml, not null"),
    ("pbx-hq", "", "provider", TEMPLATES, {},
     "no CustomTemplates.tar at the provider level"),
    ("pbx-hq", "", "reseller", PHONES, {}, "no CustomPhoneFiles.tar at the "
                                          "reseller level"),
    ("pbx-hq", "", "system", PHONES, {}, "no CustomPhoneFiles.tar at the "
                                        "system level"),
    ("pbx-b", "", "reseller", TEMPLATES, {},
     "no reseller for C1001/pbx-b: it has no reseller level"),
    ("pbx-b", "", "system", DATA, {}, "no CustomData.xml at the system level"),
    ("pbx-hq", "J-none", "provider", PHONES, {}, "no such job: J-none"),
    ("pbx-hq", "J-other", "provider", PHONES, {}, "no such job: J-other"),
    ("pbx-hq", "J-later", "provider", PHONES, {}, "no such job: J-later"),
    ("pbx-hq", "J-B", "provider", PHONES, {},
     'job J-B (backup) does not fetch custom files: a custom file belongs to '
     'a refresh_custom job or to job ""'),
    ("pbx-hq", ..., "provider", PHONES, {},
     'job missing (the refresh_custom job, or "")'),
    ("pbx-hq", 7, "provider", PHONES, {}, "job must be a string"),
    ("pbx-hq", "", "provider", PHONES, {"offset": ...},
     "offset missing (0 for a new download)"),
    ("pbx-hq", "", "provider", PHONES, {"offset": -5},
     "offset must be an integer >= 0"),
    ("pbx-hq", "", "provider", PHONES, {"content": "phones"},
     'content "phones": a download\'s content is "custom" or absent'),
]


def test_custom_download_refused(sim):
    hq_with_reseller(sim)
    sim.custom_file("provider", PHONES, b"p" * 100)
    sim.custom_file("reseller", TEMPLATES, b"r" * 10, reseller="R7")
    sim.custom_file("system", DATA, b"<customdata/>", customer="C1001",
                    system="pbx-hq")

    async def go():
        ags = {"pbx-hq": await DownAgent(sim).start(),
               "pbx-b": await DownAgent(sim, system="pbx-b").start()}
        send_job(sim, "J-other", op="refresh_custom", system="pbx-b")
        send_job(sim, "J-B", op="backup")
        sim.job("C1001", "pbx-hq", "refresh_custom", job="J-later",
                at=time.time() + 3600)
        await await_until(lambda: job_msg(ags["pbx-hq"], "J-B"), what="J-B")
        for system, job, level, name, extra, message in CUSTOM_REFUSALS:
            ag = ags[system]
            kw = dict({"content": "custom", "level": level}, **extra)
            st, ans = await ag.dopen(job, name, **{"offset": 0, **kw})
            assert ans["type"] == "stream.close", (job, level, name, ans)
            assert (ans["stream"], ans["reason"], ans["message"]) == \
                (st.sid, "refused", message), (job, level, name)
            assert ans["re"] == ag.next_id - 1
        # without a level (or content) it is an ordinary download
        st, ans = await ags["pbx-hq"].dopen("", PHONES)
        assert ans["message"] == ('job "": a download belongs to a restore, '
                                  'transfer or transfer_upgrade job')
        # the same files that are there download
        ans, got, fin = await cdownload(ags["pbx-hq"], "reseller", TEMPLATES)
        assert got == b"r" * 10 and fin["reason"] == "done"
        ans, got, fin = await cdownload(ags["pbx-b"], "provider", PHONES)
        assert got == b"p" * 100 and fin["reason"] == "done"
        for ag in ags.values():
            assert not ag.binary
            await ag.stop()
    run(go())
    ev = sim.events("download_refused")
    assert [e["message"] for e in ev] == [r[5] for r in CUSTOM_REFUSALS] + [
        'job "": a download belongs to a restore, transfer or transfer_upgrade job']
    assert (ev[4]["level"], ev[4]["name"], ev[4]["content"], ev[4]["job"]) == \
        ("provider", TEMPLATES, "custom", "")
    assert [(e["level"], e["system"]) for e in sim.events("custom_download")] == \
        [("reseller", "pbx-hq"), ("provider", "pbx-b")]


def test_custom_download_faults(sim):
    data = os.urandom(90000)
    sim.custom_file("provider", PHONES, data)
    sim.custom_file("provider", TEMPLATES, b"t" * 5000)

    async def first():
        ag = await DownAgent(sim).start()
        await athread(sim.download_fault, "C1001", "pbx-hq", drop_after=40000)
        ans, got, fin = await cdownload(ag, "provider", PHONES)
        assert ans["offset"] == 0 and fin is None
        await asyncio.wait_for(ag.closed.wait(), 5)
        assert ag.ws.close_code == 1001
        return got
    part = run(first())
    assert part == data[:40000]
    it = wait_until(lambda: sim.events("download_interrupted"), what="interrupted")
    assert [(e["by"], e["reason"], e["sent"], e["name"]) for e in it] == \
        [("link", "link_lost", 40000, PHONES)]

    async def second():
        ag = await DownAgent(sim).start()
        # resumed on the next link, then the next file (the agent's order)
        ans, got, fin = await cdownload(ag, "provider", PHONES, offset=len(part))
        assert ans["offset"] == 40000 and fin["reason"] == "done"
        assert part + got == data
        # corrupt: one byte flipped, once; the accept still has the right hash
        await athread(sim.download_fault, "C1001", "pbx-hq", corrupt=True)
        ans, got, fin = await cdownload(ag, "provider", TEMPLATES)
        assert ans["sha256"] == sha(b"t" * 5000) and fin["reason"] == "done"
        assert len(got) == 5000 and sha(got) != ans["sha256"]
        ans, got, fin = await cdownload(ag, "provider", TEMPLATES)
        assert got == b"t" * 5000
        await ag.stop()
    run(second())
    assert [(e["name"], e["offset"]) for e in sim.events("custom_download")] == \
        [(PHONES, 0), (PHONES, 40000), (TEMPLATES, 0), (TEMPLATES, 0)]
    assert [e["action"] for e in sim.events("download_fault")] == \
        ["set", "drop", "set", "corrupt"]


def test_refresh_custom_job(sim):
    async def go():
        ag = await DownAgent(sim).start()
        for jid, kw in (("J-1", {}), ("J-2", {"prune": True}),
                        ("J-3", {"prune": False}),
                        ("J-4", {"args": {"prune": "yes"}})):   # broken, as asked
            r = await athread(sim.job, "C1001", "pbx-hq", "refresh_custom",
                              job=jid, **kw)
            assert r["status"] == "in progress"
        r = await athread(sim.job, "C1001", "pbx-hq", "refresh_custom",
                          job="J-5", prune=True, at=time.time() + 3600)
        assert r["status"] == "scheduled"
        await await_until(lambda: job_msg(ag, "J-4"), what="the jobs")
        assert [(m["op"], m["args"]) for j in ("J-1", "J-2", "J-3", "J-4")
                for m in job_msg(ag, j)] == [
            ("refresh_custom", {}), ("refresh_custom", {"prune": True}),
            ("refresh_custom", {"prune": False}),
            ("refresh_custom", {"prune": "yes"})]
        for st in ({"job": "J-1", "state": "accepted"},
                   {"job": "J-1", "state": "running", "progress": 10,
                    "phase": "list", "message": "asking COM"},
                   {"job": "J-1", "state": "running", "progress": 50,
                    "phase": "download", "message": "CustomPhoneFiles.tar"},
                   {"job": "J-1", "state": "failed", "reason": "refused",
                    "message": "provider CustomPhoneFiles.tar: 46xxsettings.txt "
                               "is generated by the system"},
                   {"job": "J-2", "state": "rejected", "reason": "busy",
                    "message": "refresh_custom J-1 runs"},
                   {"job": "J-3", "state": "accepted"},
                   {"job": "J-3", "state": "succeeded",
                    "message": "3 phone files, 1 template"},
                   {"job": "J-4", "state": "rejected", "reason": "invalid",
                    "message": "prune must be true or false"}):
            await ag.send(dict(st, type="job.state"))
        await await_until(lambda: len([m for m in ag.msgs if m["type"] == "ack"]) >= 4,
                          what="acks of the final states")
        await ag.stop()
    run(go())
    h = {j["job"]: j for j in sim.jobs("C1001", "pbx-hq")}
    assert [(j, h[j]["op"], h[j]["status"], h[j]["reason"]) for j in sorted(h)] == [
        ("J-1", "refresh_custom", "failed", "refused"),
        ("J-2", "refresh_custom", "rejected", "busy"),
        ("J-3", "refresh_custom", "completed", None),
        ("J-4", "refresh_custom", "rejected", "invalid"),
        ("J-5", "refresh_custom", "scheduled", None)]
    assert [(s["state"], s["phase"]) for s in h["J-1"]["states"]] == [
        ("accepted", None), ("running", "list"), ("running", "download"),
        ("failed", None)]
    assert h["J-1"]["message"].startswith("provider CustomPhoneFiles.tar")
    assert h["J-2"]["args"] == {"prune": True} and h["J-5"]["args"] == {"prune": True}
    for body, word in (({"op": "backup", "prune": True}, "prune is for refresh_custom"),
                       ({"op": "refresh_custom", "prune": 1}, "prune must be true"),
                       ({"op": "refresh_custom", "prune": None}, "prune must be true")):
        st, r = sim.admin_status("POST", "/job", dict(body, customer="C1001",
                                                      system="pbx-hq"))
        assert st == 400 and word in r["error"], (body, r)


def test_status_kept(sim):
    first = {"customer": "C1001", "system": "pbx-hq", "profile": "linux",
             "version": "11.1.3.0", "operation": "idle", "uptime": 5,
             "customdata": "rejected",
             "customdata_message": "CustomData.xml line 3: unknown tag <foo>",
             "custom_refresh": "running", "custom_refresh_message": ""}
    second = dict(first, operation="refresh_custom", uptime=9,
                  custom_refresh="failed",
                  custom_refresh_message="provider CustomTemplates.tar: refused")
    del second["customdata_message"]

    async def go():
        ag = await DownAgent(sim).start()
        assert (await athread(sim.agent, "C1001", "pbx-hq"))["status"] is None
        for st in (first, second):
            m = await ag.send(dict(st, type="status"))
            await await_until(lambda: [x for x in ag.msgs if x.get("re") == m["id"]
                                       and x["type"] == "ack"], what="the ack")
            a = await athread(sim.agent, "C1001", "pbx-hq")
            assert a["status"] == st        # the last one, whole
            assert a["status_at"] > time.time() - 30
        # a malformed status is not kept
        await ag.send({"type": "status", "customdata": "x" * 5000})
        await await_until(lambda: [x for x in ag.msgs if x["type"] == "error"],
                          what="the error")
        await ag.stop()
    run(go())
    a = sim.agent("C1001", "pbx-hq")
    assert not a["connected"] and a["status"] == second     # kept after the link
    assert sim.agent("C1001", "pbx-b")["status"] is None

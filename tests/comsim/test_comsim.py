"""Self-test of the COM simulator (no agent needed).

    /usr/bin/python3 -m pytest tests/comsim

Drives comsim with websockets' own client over TLS and checks the behaviour
PROTOCOL.md asks of COM, plus the admin API.
"""

import asyncio
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
                          customers=CUSTOMERS, extra_args=["--hello-timeout", "1"])
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
                 "last_hello": None, "stalled": False}
    last = sim.last_seq()

    async def go():
        async with connect(sim) as ws:
            await say_hello(ws)
    run(go())
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

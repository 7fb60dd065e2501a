"""The agent's link to COM, end to end: comagent (ASan build) against comsim.

Config used by every agent here (see conftest.Agent): ping_interval 1s,
idle_timeout 3s, connect_timeout 3s, retry 100ms..1s, auth retry 30s..60s,
grace 2s.
"""

import os
import time

import pytest

from conftest import DEFAULT_CUSTOMER, never_connects, observe, tail, wait_until
import comsim as comsim_mod

C, S = "C1001", "pbx-hq"


def connected_again(a, sim, min_reconnects=1, timeout=15):
    st = a.wait_status(lambda s: s.get("code") == "connected"
                       and s.get("reconnects", 0) >= min_reconnects,
                       timeout, "agent connected again (reconnects >= %d)" % min_reconnects)
    assert st["state"] == "Connection successful"
    wait_until(lambda: sim.connected(), 5, "comsim shows the agent connected")
    return st


# ------------------------------------------------------------------ connect

def test_connect_status(comsim, agent):
    sim = comsim()
    a = agent(sim)
    st = a.wait_connected(15)
    assert st["state"] == "Connection successful"
    assert st["customer_id"] == C and st["system_name"] == S
    assert st["profile"] == "linux"
    assert st["url"] == "wss://localhost:%d/agent/v1" % sim.port
    assert st["connecting"] is False
    assert st["reconnects"] == 0 and st["attempts"] >= 1
    assert isinstance(st["since"], (int, float)) and abs(st["since"] - time.time()) < 60
    assert isinstance(st["version"], str)
    assert st.get("next_retry") is None

    ag = sim.agent(C, S)
    assert ag["connected"] and ag["welcomes"] == 1 and not ag["stalled"]
    hello = sim.hellos()[0]
    assert hello["user"] == "COMAdmin" and hello["proto"] == 1
    assert hello["profile"] == "linux"
    assert str(hello.get("agent", "")).startswith("comagent/")

    m = sim.wait_message(lambda m: m["type"] == "status", what="a status message")
    assert (m["customer"], m["system"], m["profile"]) == (C, S, "linux")
    assert m.get("operation") == "idle"
    assert isinstance(m.get("uptime"), int)
    # comsim acked it
    acks = [e["msg"] for e in sim.events("sent") if e.get("msg", {}).get("type") == "ack"]
    assert any(x["re"] == m["id"] for x in acks)

    r = a.cli("status")
    assert r.returncode == 0 and "Connection successful" in r.stdout, r.stdout + r.stderr


def test_idle_link_stays_up(comsim, agent):
    """comsim never pings and sends nothing: only the agent's own pings (and
    comsim's pongs) keep the link inside idle_timeout (3s)."""
    sim = comsim()
    a = agent(sim)
    a.wait_connected(15)
    seq = sim.last_seq()
    observe(5)
    assert not sim.events("close", since=seq), "link dropped while idle"
    assert sim.agent(C, S)["welcomes"] == 1
    st = a.status()
    assert st["code"] == "connected" and st["reconnects"] == 0


# ------------------------------------------------------------------ refusals

REFUSALS = [
    # (record state, agent identity override, reason, COM wording)
    ("disabled", {}, "user_disabled", "Service user disabled"),
    ("locked", {}, "user_locked", "Service user temporarily locked"),
    ("expired", {}, "password_expired", "Service user password expired"),
    ("insufficient", {}, "insufficient_permissions", "Insufficient permissions"),
    ("new_password", {}, "password_change_required", "Service user needs a new password"),
    ("ok", {"password": "not-the-password"}, "auth_failed", "Authorization failed"),
    ("ok", {"user": "Administrator"}, "credentials_invalid", "Credentials invalid"),
    ("ok", {"system": "pbx-unknown"}, "not_primary",
     "Not reachable / not a valid primary IP Office"),
    ("no_such_reason", {}, "no_such_reason", "Connection failed"),   # unknown reason
]


@pytest.mark.parametrize("state,ident,reason,words", REFUSALS,
                         ids=[r[0] if r[0] != "ok" else r[2] for r in REFUSALS])
def test_refused(comsim, agent, state, ident, reason, words):
    sim = comsim([dict(DEFAULT_CUSTOMER, state=state)])
    # The production auth back-off (5m..1h) rather than the suite's 30s..60s:
    # full jitter from 0 would let a correct agent retry twice within the 3s
    # window about once in 400 runs at 30s; at 5m that is out of reach. An
    # agent that ignores the auth back-off still retries every ~100ms.
    a = agent(sim, {"com": {"auth_retry_min": "5m", "auth_retry_max": "1h"}}, **ident)
    system = ident.get("system", S)
    ref = wait_until(lambda: sim.events("refused", customer=C, system=system),
                     15, "comsim refusing the agent")[0]
    assert ref["reason"] == reason
    st = a.wait_status(lambda s: s.get("state") == words, 5,
                       "status showing %r" % words)
    if reason in comsim_mod.REASONS:
        assert st["code"] == reason
    # No hammering: the auth back-off (30s..60s) applies, not retry_min (100ms).
    remaining = ref["t"] + 3.0 - time.time()
    if remaining > 0:
        observe(remaining)
    later = [h for h in sim.hellos(C, system) if h["seq"] > ref["seq"]]
    assert len(later) <= 1, "%d hellos within 3s after a refusal" % len(later)
    st = a.status()
    assert st["state"] == words
    assert st["reconnects"] == 0
    if st.get("next_retry") is not None:
        assert st["next_retry"] <= time.time() + 3601
    assert not sim.events("welcome")


# ------------------------------------------------------------------ COM restarts

def test_comsim_process_restart(comsim, agent):
    sim = comsim()
    a = agent(sim)
    a.wait_connected(15)
    port = sim.port
    assert sim.stop() == 0
    a.wait_status(lambda s: s.get("code") != "connected", 10,
                  "agent noticing COM went away")
    sim.start()
    assert sim.port == port
    connected_again(a, sim)
    assert sim.events("welcome")          # a welcome from the new process


def test_admin_restart(comsim, agent):
    sim = comsim()
    a = agent(sim)
    a.wait_connected(15)
    seq = sim.last_seq()
    sim.admin("POST", "/restart", {"down_ms": 1000})
    c = wait_until(lambda: sim.events("close", since=seq), 5, "link closed")[0]
    assert c["code"] == 1001
    wait_until(lambda: sim.agent(C, S)["welcomes"] >= 2, 15, "a second welcome")
    connected_again(a, sim)


def test_stall_detected(comsim, agent):
    sim = comsim()
    a = agent(sim)
    a.wait_connected(15)
    seq = sim.last_seq()
    t0 = time.time()
    sim.admin("POST", "/stall", {"customer": C, "system": S})
    hello = wait_until(lambda: sim.hellos(since=seq), 3 + 6,
                       "a new hello after the stall (idle_timeout 3s)")[0]
    dt = hello["t"] - t0
    assert dt <= 3 + 4, "took %.1fs to notice a dead link (idle_timeout 3s)" % dt
    assert dt >= 1.5, "hung up after %.1fs, before idle_timeout (3s)" % dt
    connected_again(a, sim)
    assert sim.agent(C, S)["welcomes"] == 2


# ------------------------------------------------------------------ TLS

def test_wrong_ca(comsim, agent, tmp_path):
    sim = comsim()
    other_ca, _ = comsim_mod.make_ca(str(tmp_path / "otherca"), cn="not COM's CA")
    a = agent(sim, {"com": {"ca_file": other_ca}})
    never_connects(sim, a, "an untrusted CA")


def test_wrong_host_name(comsim, agent):
    sim = comsim(cert_name="wronghost")      # agent dials localhost
    a = agent(sim)
    never_connects(sim, a, "a certificate for another host name")


# ------------------------------------------------------------------ proxy

def test_proxy_connect(comsim, agent, proxy):
    sim = comsim()
    p = proxy("agent", "pr0xy-pw")
    a = agent(sim, {"com": {"proxy": "127.0.0.1:%d" % p.port,
                            "proxy_user": "agent", "proxy_password": "pr0xy-pw"}})
    a.wait_connected(15)
    recs = p.connects()
    assert len(recs) == 1, recs
    r = recs[0]
    assert r["method"] == "CONNECT"
    assert r["target"] == "localhost:%d" % sim.port
    assert (r["auth_user"], r["auth_password"]) == ("agent", "pr0xy-pw")
    assert r["status"] == 200
    assert sim.agent(C, S)["connected"]


def test_proxy_wrong_password(comsim, agent, proxy):
    sim = comsim()
    p = proxy("agent", "pr0xy-pw")
    a = agent(sim, {"com": {"proxy": "127.0.0.1:%d" % p.port,
                            "proxy_user": "agent", "proxy_password": "wrong"}})
    wait_until(lambda: len(p.connects()) >= 2, 15, "two CONNECT attempts")
    assert all(r["status"] == 407 for r in p.connects())
    st = a.wait_status(lambda s: s.get("state") == "Connection failed", 10,
                       "'Connection failed' through a refusing proxy")
    assert st["reconnects"] == 0 and st["code"] == "failed"
    assert not sim.hellos()


# ------------------------------------------------------------------ shutdown

def test_sigterm_clean(comsim, agent):
    sim = comsim()
    a = agent(sim)
    a.wait_connected(15)
    seq = sim.last_seq()
    assert a.stop() == 0            # also asserts no sanitizer report
    c = wait_until(lambda: sim.events("close", since=seq), 5, "close event")[0]
    assert c["by"] == "agent" and c["code"] == 1000, c
    r = a.cli("status", "--json")
    assert r.returncode != 0 and r.stderr.strip(), "status must fail without a daemon"


# ------------------------------------------------------------------ messages

def test_unknown_type_unsupported(comsim, agent):
    sim = comsim()
    a = agent(sim)
    a.wait_connected(15)
    seq = sim.last_seq()
    r = sim.send({"type": "frobnicate", "x": {"y": [1, 2]}})
    m = sim.wait_message(lambda m: m["type"] == "unsupported", seq,
                         what="unsupported from the agent")
    assert m["re"] == r["id"] and m["what"] == "frobnicate"
    assert sim.agent(C, S)["welcomes"] == 1 and sim.connected()
    assert a.status()["code"] == "connected"
    # comsim never answers an unsupported
    assert not [e for e in sim.events("sent", since=seq)
                if e.get("msg", {}).get("re") == m["id"]]


def test_garbage_malformed(comsim, agent):
    sim = comsim()
    a = agent(sim)
    a.wait_connected(15)
    seq = sim.last_seq()
    sim.send(raw="this is not json{")
    m = sim.wait_message(lambda m: m["type"] == "error", seq,
                         what="error from the agent")
    assert m["code"] == "malformed" and "re" not in m
    seq = sim.last_seq()
    sim.send(raw='{"id":77,"x":1}')                 # readable id, no type
    m = sim.wait_message(lambda m: m["type"] == "error", seq,
                         what="error (re 77) from the agent")
    assert m["code"] == "malformed" and m.get("re") == 77
    assert sim.agent(C, S)["welcomes"] == 1 and sim.connected()
    assert a.status()["code"] == "connected"


def test_job_rejected(comsim, agent):
    sim = comsim()
    a = agent(sim)
    a.wait_connected(15)
    seq = sim.last_seq()
    # an op this agent does not know: rejected, unsupported
    j = sim.admin("POST", "/job", {"customer": C, "system": S, "op": "frobnicate"})["job"]
    m = sim.wait_message(lambda m: m["type"] == "job.state" and m.get("job") == j, seq,
                         what="job.state for %s" % j)
    assert m["state"] == "rejected" and m["reason"] == "unsupported"
    wait_until(lambda: [e for e in sim.events("sent", since=seq)
                        if e.get("msg", {}).get("type") == "ack"
                        and e["msg"].get("re") == m["id"]], 5, "comsim ack")
    # a job without op is invalid
    seq = sim.last_seq()
    sim.send({"type": "job", "job": "J-no-op", "args": {}})
    m = sim.wait_message(lambda m: m["type"] == "job.state" and m.get("job") == "J-no-op",
                         seq, what="job.state for J-no-op")
    assert m["state"] == "rejected" and m["reason"] == "invalid"
    # a job id seen before is answered with the recorded state, not run again
    seq = sim.last_seq()
    sim.admin("POST", "/job", {"customer": C, "system": S, "op": "frobnicate", "job": j})
    m = sim.wait_message(lambda m: m["type"] == "job.state" and m.get("job") == j, seq,
                         what="job.state for the repeated %s" % j)
    assert m["state"] == "rejected" and m["reason"] == "unsupported"
    assert sim.connected() and sim.agent(C, S)["welcomes"] == 1


def test_stream_open_refused(comsim, agent):
    sim = comsim()
    a = agent(sim)
    a.wait_connected(15)
    seq = sim.last_seq()
    r = sim.send({"type": "stream.open", "stream": 2, "kind": "tunnel",
                  "window": 65536})
    m = sim.wait_message(lambda m: m["type"] == "stream.close", seq,
                         what="stream.close from the agent")
    # a tunnel without a port is malformed: refused, the link stays up
    assert m["stream"] == 2 and m["reason"] == "refused"
    assert "port" in m["message"]
    assert m.get("re") in (None, r["id"])
    assert sim.connected() and sim.agent(C, S)["welcomes"] == 1


def test_oversized_frame(comsim, agent):
    sim = comsim()
    a = agent(sim)
    a.wait_connected(15)
    seq = sim.last_seq()
    big = '{"type":"frobnicate","id":999,"pad":"%s"}' % ("x" * 70000)
    assert len(big) > 65536
    sim.send(raw=big)

    def reaction():
        for e in sim.events(("message", "close"), since=seq):
            if e["kind"] == "close":
                return e
            if e.get("msg", {}).get("type") == "error":
                return e
        return None
    e = wait_until(reaction, 10, "the agent rejecting a 70000-byte frame")
    if e["kind"] == "close":
        assert e["code"] == 4002 and e["by"] == "agent", e
    else:
        assert e["msg"]["code"] == "malformed"
    # usable afterwards, on the same link or a new one
    wait_until(lambda: sim.connected(), 15, "agent connected again")
    a.wait_connected(10)
    seq = sim.last_seq()
    r = sim.send({"type": "frobnicate"})
    m = sim.wait_message(lambda m: m["type"] == "unsupported", seq,
                         what="unsupported after the oversized frame")
    assert m["re"] == r["id"]


def test_proxy_without_auth(comsim, agent, proxy):
    sim = comsim()
    p = proxy()                                  # no credentials required
    a = agent(sim, {"com": {"proxy": "127.0.0.1:%d" % p.port}})
    a.wait_connected(15)
    recs = p.connects()
    assert len(recs) == 1 and recs[0]["target"] == "localhost:%d" % sim.port
    assert "proxy-authorization" not in recs[0]["headers"]


# ------------------------------------------------------------------ timeouts, back-off

def test_hello_unanswered(comsim, agent):
    """COM accepts the WebSocket and never answers hello: the attempt must be
    given up after connect_timeout (3s) and retried."""
    sim = comsim([dict(DEFAULT_CUSTOMER, on_hello="ignore")])
    a = agent(sim)
    first = wait_until(lambda: sim.hellos(), 10, "first hello")[0]
    second = wait_until(lambda: sim.hellos(since=first["seq"]), 3 + 1 + 4,
                        "a second hello after connect_timeout")[0]
    dt = second["t"] - first["t"]
    assert dt >= 2.5, "gave up on hello after %.1fs (connect_timeout 3s)" % dt
    st = a.status()
    assert st["state"] == "Connection failed" and st["reconnects"] == 0, st
    assert not sim.events("welcome")


def test_tcp_blackhole(agent, comsim):
    """A TCP peer that never speaks TLS: connect_timeout (3s) applies."""
    import socket
    import threading
    sim = comsim()                                  # only for its CA
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    accepted = []

    def acceptor():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            accepted.append((time.time(), c))
    th = threading.Thread(target=acceptor, daemon=True)
    th.start()
    try:
        a = agent(sim, url="wss://localhost:%d/agent/v1" % ls.getsockname()[1])
        wait_until(lambda: len(accepted) >= 2, 3 + 1 + 4, "a second TCP connection")
        dt = accepted[1][0] - accepted[0][0]
        assert dt >= 2.5, "gave up after %.1fs (connect_timeout 3s)" % dt
        st = a.wait_status(lambda s: s.get("state") == "Connection failed", 5,
                           "'Connection failed'")
        assert st["reconnects"] == 0
    finally:
        ls.close()
        for _, c in accepted:
            c.close()


def test_flapping_com_backoff(comsim, agent):
    """COM welcomes and drops at once: the failure count must not reset
    (grace 2s), so the agent backs off instead of redialling every ~100ms."""
    sim = comsim([dict(DEFAULT_CUSTOMER, after_welcome="drop")])
    a = agent(sim)
    first = wait_until(lambda: sim.events("welcome"), 10, "first welcome")[0]
    end = first["t"] + 3.0
    if end > time.time():
        observe(end - time.time())
    n = len([h for h in sim.hellos() if first["t"] < h["t"] <= end])
    # back-off 100ms * 2^n capped at 1s, full jitter: ~6-10 hellos in 3s;
    # an agent resetting its failure count on every welcome makes ~30+.
    assert n <= 20, "%d hellos in 3s from a flapping COM" % n
    assert n >= 2, "only %d hellos in 3s: retry_max is 1s" % n
    assert a.status()["reconnects"] >= 1


def test_welcome_unknown_fields(comsim, agent):
    """Unknown fields MUST be ignored (forward compatibility)."""
    sim = comsim([dict(DEFAULT_CUSTOMER, welcome_extra={
        "future": {"a": [1, 2, {"b": None}], "c": "x"}, "flag": True,
        "max_streams": 8})])
    a = agent(sim)
    a.wait_connected(15)
    seq = sim.last_seq()
    j = sim.admin("POST", "/job", {"customer": C, "system": S, "op": "backup",
                                   "args": {}, })["job"]
    sim.wait_message(lambda m: m["type"] == "job.state" and m.get("job") == j, seq,
                     what="job.state")
    seq = sim.last_seq()
    r = sim.send({"type": "job", "job": "J-extra", "op": "frobnicate", "args": {},
                  "unknown_field": [1, {"x": 2}]})
    m = sim.wait_message(lambda m: m["type"] == "job.state" and m.get("job") == "J-extra",
                         seq, what="job.state for a job with unknown fields")
    assert m["state"] == "rejected" and m["reason"] == "unsupported"
    assert sim.agent(C, S)["welcomes"] == 1


def test_job_state_resent_until_acked(comsim, agent):
    """An unacknowledged final job.state is re-sent after every reconnect
    until COM acknowledges it."""
    rec = dict(DEFAULT_CUSTOMER, ack_jobs=False)
    sim = comsim([rec])
    a = agent(sim)
    a.wait_connected(15)
    seq = sim.last_seq()
    j = sim.admin("POST", "/job", {"customer": C, "system": S, "op": "backup"})["job"]
    sim.wait_message(lambda m: m["type"] == "job.state" and m.get("job") == j, seq,
                     what="job.state")

    def relink():
        seq = sim.last_seq()
        sim.admin("POST", "/drop", {"customer": C, "system": S})
        wait_until(lambda: sim.events("welcome", since=seq), 10, "a new link")
        return seq

    # not acked: sent again on the next link
    seq = relink()
    m = sim.wait_message(lambda m: m["type"] == "job.state" and m.get("job") == j, seq,
                         what="job.state re-sent after reconnect")
    assert m["state"] == "rejected"
    # acked this time
    sim.admin("POST", "/customers", dict(rec, ack_jobs=True))
    seq = relink()
    sim.wait_message(lambda m: m["type"] == "job.state" and m.get("job") == j, seq,
                     what="job.state re-sent again (still unacked)")
    wait_until(lambda: [e for e in sim.events("sent", since=seq)
                        if e.get("msg", {}).get("type") == "ack"
                        and e["msg"].get("re") in [x["id"] for x in sim.messages(
                            type="job.state", since=seq)]], 5, "comsim's ack")
    # acked: not sent again
    seq = relink()
    a.wait_connected(10)
    wait_until(lambda: sim.messages(type="status", since=seq), 5, "status on the new link")
    sim.barrier(seq)
    assert not [m for m in sim.messages(type="job.state", since=seq)
                if m.get("job") == j], "acknowledged job.state sent again"

"""Fault injection (issue 8, item 2): the link dropped at random points of
every transfer kind, a half-open link, COM answering at 1 byte/s, garbage
and truncated frames, a flood of stream opens, the service user's state
flipping while connected, clock jumps, a full disk under the state
directory and under the log store, SIGKILL while state files are written.

What every test checks, besides its own outcome: the agent keeps running
(or restarts cleanly when the test kills it), loses nothing COM
acknowledged, never runs a job twice (hook runs are counted by wrapper
hooks, COM's job history and transfer events are read), its state files
always parse (read here, and read back by a restarted agent without a
complaint), and no sanitizer report (the fixtures' teardown).

Faults between the agent and comsim come from faultrelay.FaultRelay, a TCP
relay in the agent's path (TLS stays end to end, so every cut and every
garbage byte lands at some byte of the TLS stream); faults at COM's end
(drop after N transfer bytes, held credit, a burst of stream.opens) from
comsim's admin API. A full disk is a small tmpfs mounted over the
directory for the one test (as root; the test is skipped where mounting is
not allowed) and filled by a file the test then removes. Clock jumps go
through the test build's injected wall clock. Random offsets, and which
state write a SIGKILL lands on, come from one seeded generator per test:
COMAGENT_TEST_SEED (default 8) picks them again.

Faults the other files already cover (kept there, not repeated here):
half-open or silent COM at connect and when idle (test_link.py:
test_tcp_blackhole, test_hello_unanswered, test_stall_detected), garbage
and oversized text frames (test_garbage_malformed, test_oversized_frame),
refusals at connect (test_refused), a flapping COM (test_flapping_com_
backoff), unacknowledged final states (test_job_state_resent_until_acked);
one clean drop at a fixed byte count per transfer kind
(test_jobs.py test_backup_upload_resumes_after_link_drop, test_upgrade.py
test_download_resumes_after_link_drop and test_restore_after_simulated_
restart, test_custom.py test_refresh_resumes_after_a_dropped_link,
test_logs.py test_nightly_upload_once_and_resumed), a tunnel's link lost
while idle (test_tunnel.py test_link_loss_closes_tunnels), 3 opens against
max_streams 2 (test_max_streams); SIGKILL mid-job at a quiet moment
(test_jobs.py test_agent_killed_mid_job_reports_once, test_upgrade.py
test_transfer_resumes_after_agent_restart) and power cuts in the
custom-files install (test_custom.py); a log store filled by its own files
(test_logs.py test_full_filesystem_survived); test-clock jumps into and
within the backup window and over DST (test_autobackup.py).
"""

import base64
import gzip
import hashlib
import json
import os
import random
import re
import socket
import subprocess
import threading
import time

import pytest

from conftest import (DEFAULT_CUSTOMER, HOOKS_DIR, sanitizer_report,
                      tail, wait_until, write_ini)
from faultrelay import FaultRelay
import tunnelkit as tk
from test_jobs import put
from tunnelkit import free_tcp_udp_port as free_port

C, S = "C1001", "pbx-hq"
SEED = int(os.environ.get("COMAGENT_TEST_SEED", "8"))
STATE = "var/lib/comagent"
FINAL = ("succeeded", "failed", "rejected")
SETTINGS = ("centralmgmt", "logtransfer", "remoteupgrade", "remoteaccess",
            "externalremoteaccess", "centralcert")


def rng(tag):
    """The test's own generator: the same seed gives the same faults."""
    return random.Random("%d/%s" % (SEED, tag))


# ------------------------------------------------------------------ fixtures

@pytest.fixture
def relay():
    relays = []

    def make(sim):
        r = FaultRelay(sim.port).start()
        relays.append(r)
        return r
    yield make
    for r in relays:
        r.stop()


@pytest.fixture
def hooks(tmp_path):
    """A hooks directory whose every hook appends "NAME JOB" to a file
    (runs() reads it) and then execs the repository's hook: counts what
    ran, for "never run twice"."""
    d = tmp_path / "hooks"
    runs = tmp_path / "hook-runs"
    for profile in ("linux", "ip500v2"):
        os.makedirs(d / profile)
        src = os.path.join(HOOKS_DIR, profile)
        for name in os.listdir(src):
            w = d / profile / name
            w.write_text('#!/bin/bash\nprintf "%%s %%s\\n" %s "${COMAGENT_JOB:-}" >> %s\n'
                         'exec %s "$@"\n' % (name, runs, os.path.join(src, name)))
            os.chmod(w, 0o755)

    class Hooks:
        dir = str(d)

        def runs(self, name=None):
            try:
                lines = runs.read_text().splitlines()
            except OSError:
                return []
            out = [tuple(ln.split(" ", 1)) if " " in ln else (ln, "") for ln in lines]
            return [o for o in out if name is None or o[0] == name]
    return Hooks()


# ------------------------------------------------------------------ helpers

def settings(a, **kw):
    put(a.root, STATE + "/settings",
        "".join("%s=%d\n" % (k, 1 if v else 0) for k, v in kw.items()), 0o600)


def system_files(a, size=0):
    put(a.root, "etc/ipoffice/config.xml", "<config>hq</config>\n")
    put(a.root, "etc/ipoffice-version", "11.1.3.0\n")
    if size:
        # random bytes: gzip cannot shrink them, the archive is about size
        put(a.root, "var/lib/ipoffice/media.bin", os.urandom(size))


def make_agent(agent, sim, hooks=None, relay=None, overrides=None, allow=True,
               size=0, start=True, settings_kw=None, **kw):
    """An agent (through `relay` when given) on a small Linux system, its
    hooks counted when `hooks` is given; started and connected."""
    o = {"system": {"profile": "linux"}}
    if hooks is not None:
        o["jobs"] = {"hooks_dir": hooks.dir}
    for sec, kv in (overrides or {}).items():
        o.setdefault(sec, {}).update(kv)
    if relay is not None:
        kw["url"] = "wss://localhost:%d/agent/v1" % relay.port
    a = agent(sim, o, start=False, **kw)
    settings(a, **dict({"remoteupgrade": allow}, **(settings_kw or {})))
    system_files(a, size)
    if start:
        a.start()
        a.wait_connected(15)
    return a


def job(sim, op, **body):
    body.update({"customer": C, "system": S, "op": op})
    return sim.admin("POST", "/job", body)["job"]


def states(sim, jid, since=0):
    return [e["msg"] for e in sim.events("message", since, C, S)
            if e.get("msg", {}).get("type") == "job.state"
            and e["msg"].get("job") == jid]


def finals(sim, jid, since=0):
    return [m for m in states(sim, jid, since) if m["state"] in FINAL]


def wait_final(sim, jid, timeout=60, since=0):
    return wait_until(lambda: (finals(sim, jid, since) or [None])[0], timeout,
                      "a final state of job %s" % jid)


def settled_once(sim, jid, want="succeeded", timeout=60):
    """The job ended as `want`, and every final state COM ever got for it
    says the same (re-sends of an unacknowledged one included): it was
    never run again, nor reported two ways."""
    wait_final(sim, jid, timeout)
    sim.barrier()
    fs = finals(sim, jid)
    assert fs and {(m["state"], m.get("reason")) for m in fs} == \
        {(fs[0]["state"], fs[0].get("reason"))}, fs
    assert fs[0]["state"] == want, fs[0]
    return fs[0]


def sha(data):
    return hashlib.sha256(data).hexdigest()


def link_closes(sim, since):
    return sim.events("close", since, C, S)


def newest_link(sim):
    """The number of the last link comsim welcomed (0: none yet)."""
    w = sim.events("welcome", 0, C, S)
    return w[-1]["link"] if w else 0


def link_is_up(sim):
    """The newest link's number while it is up (welcomed, not closed)."""
    n = newest_link(sim)
    if n and not [e for e in sim.events("close", 0, C, S) if e.get("link") == n]:
        return n
    return None


def no_sanitizer(a):
    bad = sanitizer_report(a.log())
    assert not bad, "sanitizer report (%s):\n%s" % (", ".join(bad), tail(a.log(), 80))


def kill(a):
    """SIGKILL, as a power cut or the OOM killer would."""
    a.kill()
    a.proc = None
    a._logf.close()
    no_sanitizer(a)


def restart(a, timeout=15):
    """Start the agent again; the log offset where this process begins."""
    mark = len(a.log())
    a.rc = None
    a.start()
    a.wait_connected(timeout)
    return mark


# ---- state files: every one must parse, whatever happened to the agent

JOB_KEYS = {"type": str, "id": int, "job": str, "op": str, "state": str,
            "progress": int, "reason": str, "message": str, "created": int,
            "updated": int, "acked": bool}
DAY = re.compile(r"^last=\d{4}-\d\d-\d\d\n$")
LOGNAME = re.compile(r"^log-\d{8}-\d{3}\.log\.gz$")


def parse_state(root):
    """Reads every state file the agent keeps (whatever exists) strictly;
    returns {name: parsed}; an AssertionError names a file that does not
    parse. A leftover NAME.tmp is allowed (state.h: a crash leaves at most
    one stale copy, which the next write replaces)."""
    d = os.path.join(root, STATE)
    out = {}

    def text(name):
        p = os.path.join(d, name)
        if not os.path.exists(p):
            return None
        with open(p, "rb") as f:
            b = f.read()
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            raise AssertionError("%s is not UTF-8: %r" % (p, b[:200]))

    t = text("jobs")
    if t is not None:
        jobs = []
        for i, ln in enumerate(t.splitlines(), 1):
            try:
                r = json.loads(ln)
            except ValueError:
                raise AssertionError("jobs:%d does not parse: %r" % (i, ln))
            for k, ty in JOB_KEYS.items():
                assert isinstance(r.get(k), ty), ("jobs:%d: %s" % (i, k), ln)
            assert r["type"] == "job" and r["state"] in (
                "accepted", "running") + FINAL, ("jobs:%d" % i, ln)
            jobs.append(r)
        assert t == "" or t.endswith("\n"), "jobs: torn last line %r" % t[-200:]
        ids = [j["job"] for j in jobs]
        assert len(ids) == len(set(ids)), "jobs: a job twice: %r" % ids
        out["jobs"] = jobs
    t = text("settings")
    if t is not None:
        kv = {}
        for ln in t.splitlines():
            k, _, v = ln.partition("=")
            assert k in SETTINGS and v in ("0", "1"), ("settings", ln)
            kv[k] = v == "1"
        out["settings"] = kv
    for name in ("autobackup", "logupload"):
        t = text(name)
        if t is not None:
            assert DAY.match(t), (name, t)
            out[name] = t[5:15]
    t = text("customdata")
    if t is not None:
        lines = t.split("\n")
        assert len(lines) >= 3 and lines[0] in ("pending", "applied", "none",
                                                "rejected") \
            and lines[1] in ("0", "1"), ("customdata", t)
        out["customdata"] = lines[0]
    t = text("custom-refresh")
    if t is not None:
        assert t.split("\n")[0] in ("never", "running", "succeeded", "failed"), t
    t = text("vmpro")
    if t is not None:
        assert t.strip() in ("none", "config", "full"), ("vmpro", t)
    for name in ("custom-files", "custom-files.pending"):
        t = text(name)
        if t is not None:
            lines = t.splitlines()
            assert lines and lines[0] == "# comagent custom files 1", (name, t[:200])
            for ln in lines[1:]:
                f = ln.split(" ", 5)
                assert len(f) == 6 and f[3].isdigit() and len(f[4]) == 64, (name, ln)
    man = parse_log_manifest(os.path.join(d, "logs"))
    if man is not None:
        out["logs/manifest"] = man
    return out


def parse_log_manifest(store):
    """The log store's manifest, {name: (size, sha256, uploaded)}, every
    line checked, every file it names present with that size; None if
    there is none."""
    p = os.path.join(store, "manifest")
    if not os.path.exists(p):
        return None
    with open(p, "rb") as f:
        t = f.read().decode("utf-8")
    assert t == "" or t.endswith("\n"), "manifest: torn last line %r" % t[-200:]
    man = {}
    for ln in t.splitlines():
        f = ln.split(" ")
        assert len(f) == 4 and LOGNAME.match(f[0]) and f[1].isdigit() and \
            re.match(r"^[0-9a-f]{64}$", f[2]) and f[3] in ("0", "1"), ("manifest", ln)
        assert f[0] not in man, ("manifest: a file twice", ln)
        man[f[0]] = (int(f[1]), f[2], f[3] == "1")
        assert os.path.getsize(os.path.join(store, f[0])) == int(f[1]), ln
    return man


def read_back_cleanly(a, mark, dirs=(STATE,)):
    """The agent process started at log offset `mark` read its state files
    without a complaint (no error line about a file of the state
    directory, or of the other `dirs` under its root)."""
    log = a.log()[mark:]
    ds = [os.path.join(a.root, d) for d in dirs]
    bad = [ln for ln in log.splitlines()
           if " error " in ln and any(d in ln for d in ds)]
    assert not bad, "the restarted agent complained about its state:\n%s" % \
        "\n".join(bad[:10])


# ------------------------------------------------------------------ link drops mid-transfer

PACE = 1536 * 1024     # bytes/s through the relay while stages run


def stage_drops(sim, r, what, stages, opens):
    """Drive a running transfer through `stages`, each ("com", n): comsim
    closes the link cleanly once n more bytes of this kind went out or
    came in (`what`: "download" or "upload"), or ("rst", n): the relay cuts
    the TCP connection abortively after n more bytes in the transfer's
    direction — the middle of a TLS record and of a WebSocket frame. After
    each, the transfer must be opened again on a new link. `opens()` lists
    the transfer's opens so far. The caller has the relay pace the
    transfer (PACE), so that each stage lands in its middle, not after its
    end."""
    direction = "down" if what == "download" else "up"
    for how, n in stages:
        link0 = wait_until(lambda: link_is_up(sim), 15, "the link up")
        k = len(opens())
        seq = sim.last_seq()
        if how == "com":
            sim.admin("POST", "/%s_fault" % what, {"customer": C, "system": S,
                                                   "drop_after": n})
            link0 = wait_until(lambda: [e for e in sim.events("%s_fault" % what, seq, C, S)
                                        if e.get("action") == "drop"], 30,
                               "comsim dropping the link after %d %s bytes" % (
                                   n, what))[0]["link"]
        else:
            r.cut(direction, n)
        # (comsim logs the old link's close when its closing handshake
        # ends, which may be after the agent's next welcome)
        wait_until(lambda: newest_link(sim) > link0, 15, "a new link after the drop")
        wait_until(lambda: len(opens()) > k, 30,
                   "the %s opened again after the drop" % what)


def test_download_dropped_at_random_offsets(comsim, agent, relay):
    """Fault: the link lost at random points of a download (a transfer job
    from the software library): comsim's clean close after a random byte
    count (twice), the relay's TCP reset in the middle of a frame (once),
    and, for a second release, exactly after the last byte, before COM's
    `done`. Outcome: every reopen resumes at what the agent holds (never
    from 0 again), the staged files match the manifest, each job succeeds
    once, the agent never stops."""
    g = rng("download")
    sim = comsim()
    r = relay(sim)
    size = 1536 * 1024 + g.randrange(4096)
    mf = sim.admin("POST", "/library", {"release": "12.0.1.0", "profile": "linux",
                                        "components": [{"name": "big.bin", "size": size}]})
    small = sim.admin("POST", "/library", {"release": "12.0.2.0", "profile": "linux",
                                           "components": [{"name": "small.bin",
                                                           "size": 70000}]})
    keys = " ".join(k["public_pem_path"] for k in sim.admin("GET", "/signing_keys"))
    a = make_agent(agent, sim, relay=r, overrides={"jobs": {"trusted_keys": keys}})

    def opens(name="big.bin"):
        return [e for e in sim.events("download_open", 0, C, S) if e["name"] == name]
    # the first drop is armed before the job: it may hit the first frames
    sim.admin("POST", "/download_fault", {"customer": C, "system": S,
                                          "drop_after": g.randrange(1, 16384)})
    r.throttle(PACE, "down")
    jid = job(sim, "transfer", release="12.0.1.0")
    wait_until(lambda: [e for e in sim.events("download_fault", 0, C, S)
                        if e.get("action") == "drop"], 30, "the first drop")
    wait_until(lambda: len(opens()) >= 2, 30, "the download reopened")
    stage_drops(sim, r, "download", [("com", g.randrange(16384, 300000)),
                                     ("rst", g.randrange(1000, 300000))], opens)
    r.throttle(None, "down")
    settled_once(sim, jid)
    offs = [e["offset"] for e in opens()]
    assert offs[0] == 0 and all(0 < x <= size for x in offs[1:]), offs
    assert offs == sorted(offs), offs
    with open(os.path.join(a.root, STATE, "staging", "big.bin"), "rb") as f:
        assert sha(f.read()) == mf["components"][0]["sha256"]

    # exactly the whole file, then the link goes before COM's "done"
    sim.admin("POST", "/download_fault", {"customer": C, "system": S,
                                          "drop_after": 70000})
    j2 = job(sim, "transfer", release="12.0.2.0")
    settled_once(sim, j2)
    o2 = [e["offset"] for e in opens("small.bin")]
    assert o2 == [0, 70000], o2
    with open(os.path.join(a.root, STATE, "staging", "small.bin"), "rb") as f:
        assert sha(f.read()) == small["components"][0]["sha256"]
    assert a.running
    parse_state(a.root)


def test_upload_dropped_at_random_offsets(comsim, agent, relay, hooks):
    """Fault: the link lost at random points of a backup's upload: after
    the first byte, at a random byte (comsim), a TCP reset at a random
    byte (relay), and on a second backup exactly after the last byte,
    before COM's `done`. Outcome: each reopen's offset is what COM holds,
    the stored backup is the one the hook made (size and SHA-256 of the
    open), the backup hook ran once per job, each job succeeds once."""
    g = rng("upload")
    sim = comsim()
    r = relay(sim)
    a = make_agent(agent, sim, hooks, relay=r, size=1536 * 1024)

    def opens():
        return sim.events("upload_open", 0, C, S)
    sim.admin("POST", "/upload_fault", {"customer": C, "system": S, "drop_after": 1})
    r.throttle(PACE, "up")
    jid = job(sim, "backup")
    wait_until(lambda: len(opens()) >= 2, 30, "the upload reopened after 1 byte")
    stage_drops(sim, r, "upload", [("com", g.randrange(2, 400000)),
                                   ("rst", g.randrange(1000, 300000))], opens)
    r.throttle(None, "up")
    settled_once(sim, jid)
    offs = [e["offset"] for e in opens()]
    assert offs[:2] == [0, 1] and offs == sorted(offs), offs
    stored = sim.backups(C, S)
    assert len(stored) == 1 and stored[0]["job"] == jid, stored
    body = sim.backup_file(C, S, stored[0]["name"])
    assert (len(body), sha(body)) == (opens()[0]["size"], opens()[0]["sha256"])
    assert hooks.runs("backup") == [("backup", jid)]

    # exactly the whole file, then the link goes before COM's "done": COM
    # holds back credit so that the first window is all that can arrive
    sim.admin("POST", "/upload_fault", {"customer": C, "system": S,
                                        "hold_credit": True})
    seq = sim.last_seq()
    j2 = job(sim, "backup")
    op = wait_until(lambda: sim.events("upload_open", seq, C, S), 30,
                    "the second upload")[0]
    wait_until(lambda: [u for u in sim.uploads(C, S) if u["held"] == 65536], 15,
               "the first window of the second upload at COM")
    sim.admin("POST", "/upload_fault", {"customer": C, "system": S,
                                        "hold_credit": False,
                                        "drop_after": op["size"] - 65536})
    settled_once(sim, j2)
    offs = [e["offset"] for e in sim.events("upload_open", seq, C, S)]
    assert offs == [0, op["size"]], offs
    stored = {b["job"]: b for b in sim.backups(C, S)}
    assert sha(sim.backup_file(C, S, stored[j2]["name"])) == op["sha256"]
    assert hooks.runs("backup") == [("backup", jid), ("backup", j2)]
    parse_state(a.root)




def syslog_send(port, lines):
    """One TCP connection, newline-framed: the store keeps this order."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"".join(ln + b"\n" for ln in lines))
    s.close()


def stored_lines(sim):
    out = []
    for meta in sim.logs(C, S):
        body = sim.log_file(C, S, meta["name"])
        assert sha(body) == meta["sha256"], meta
        out += gzip.decompress(body).decode().splitlines()
    return out


def logs_status(a):
    return a.status()["logs"]


def test_log_upload_dropped_at_random_offsets(comsim, agent, relay):
    """Fault: the link lost at random points of a fetch_logs job's uploads
    (a dozen log files): comsim's clean close after a random byte count, a
    TCP reset at a random byte. Outcome: the job succeeds once; COM holds
    every line, in order, once, each file stored once (no file replaced by
    other bytes); the log store's manifest marks them all uploaded."""
    g = rng("logs")
    sim = comsim()
    r = relay(sim)
    port = free_port()
    a = make_agent(agent, sim, relay=r, allow=False, settings_kw={"logtransfer": True},
                   overrides={"logs": {"syslog": "127.0.0.1:%d" % port,
                                       "file_max": "64K"}})
    msgs = [b"<14>%05d " % i + g.randbytes(300).hex().encode() for i in range(1500)]
    syslog_send(port, msgs)
    wait_until(lambda: logs_status(a)["stored"] == len(msgs), 20, "all stored")

    def opens():
        return [e for e in sim.events("upload_open", 0, C, S) if e.get("content") == "log"]
    sim.admin("POST", "/upload_fault", {"customer": C, "system": S,
                                        "drop_after": g.randrange(1, 30000)})
    r.throttle(PACE // 3, "up")
    jid = job(sim, "fetch_logs")
    wait_until(lambda: [e for e in sim.events("upload_fault", 0, C, S)
                        if e.get("action") == "drop"], 30, "the first drop")
    stage_drops(sim, r, "upload", [("com", g.randrange(1, 100000)),
                                   ("rst", g.randrange(1000, 100000))], opens)
    r.throttle(None, "up")
    settled_once(sim, jid)
    assert stored_lines(sim) == [m.decode() for m in msgs]
    assert not sim.events("log_replaced", 0, C, S)
    names = [e["name"] for e in sim.events("log_stored", 0, C, S)]
    assert len(names) == len(set(names)) == len(sim.logs(C, S)) > 3, names
    resumed = [e for e in opens() if e["offset"] > 0]
    print("log upload opens: %d, resumed at %s" % (
        len(opens()), [(e["name"], e["offset"]) for e in resumed]))
    man = parse_state(a.root)["logs/manifest"]
    assert man and all(up for _, _, up in man.values()), man
    # nothing left to send: a second fetch uploads nothing
    seq = sim.last_seq()
    j2 = job(sim, "fetch_logs")
    settled_once(sim, j2)
    assert not sim.events("upload_open", seq, C, S)


def test_custom_download_dropped_at_random_offsets(comsim, agent, relay):
    """Fault: the link lost at random points of a custom-files refresh's
    download (a phone-files tar of ~800 KB): comsim's clean close after a
    random byte count, a TCP reset at a random byte. Outcome: the download
    resumes where it was, the installed files are COM's bytes, the
    agent's manifest lists them once, the refresh succeeds once."""
    g = rng("custom")
    sim = comsim()
    r = relay(sim)
    a = make_agent(agent, sim, relay=r)
    wait_until(lambda: a.status()["custom"]["refresh"] == "succeeded", 15,
               "the first connect's refresh")
    big = g.randbytes(400000).hex()
    sim.custom_file("system", "CustomPhoneFiles.tar",
                    files={"46xxspecials.txt": "SET A 1\n", "big.png": big},
                    customer=C, system=S)

    def opens():
        return sim.events("custom_download", 0, C, S)
    sim.admin("POST", "/download_fault", {"customer": C, "system": S,
                                          "drop_after": g.randrange(1, 100000)})
    r.throttle(PACE // 2, "down")
    jid = sim.admin("POST", "/job", {"customer": C, "system": S,
                                     "op": "refresh_custom"})["job"]
    wait_until(lambda: len(opens()) >= 2, 30, "the download reopened")
    stage_drops(sim, r, "download", [("rst", g.randrange(1000, 200000))], opens)
    r.throttle(None, "down")
    settled_once(sim, jid)
    offs = [e["offset"] for e in opens()]
    assert offs[0] == 0 and all(x > 0 for x in offs[1:]) and offs == sorted(offs), offs
    d = os.path.join(a.root, "opt/ipoffice/system/primary")
    with open(os.path.join(d, "big.png")) as f:
        assert f.read() == big
    with open(os.path.join(d, "46xxspecials.txt")) as f:
        assert f.read() == "SET A 1\n"
    r2 = a.cli("custom-files", "--json")
    files = json.loads(r2.stdout)["files"]
    assert sorted(f["name"] for f in files) == ["46xxspecials.txt", "big.png"], files
    parse_state(a.root)


def pport(sim):
    return sim.info["proxy_port"]


def tunnel_agent(agent, sim, echo, relay=None, overrides=None, **kw):
    """An agent whose web control panel (7071) is `echo`, remote access on."""
    o = {"system": {"address": "127.0.0.1"},
         "services": {"webcontrol": str(echo.port)}}
    for sec, kv in (overrides or {}).items():
        o.setdefault(sec, {}).update(kv)
    return make_agent(agent, sim, relay=relay, overrides=o,
                      settings_kw={"remoteaccess": True}, **kw)


def echo_tunnel(sim):
    t, banner = tk.open_echo(pport(sim), sim.ca, tk.maint() + ":7071")
    assert banner.startswith("ECHO 127.0.0.1:"), banner
    return t


class Pump:
    """Sends `data` through an echo tunnel while reading what comes back,
    until the tunnel closes or everything is back. One thread, non-blocking
    (an SSL socket cannot be read and written from two threads)."""

    def __init__(self, t, data):
        self.t, self.data = t, data
        self.sent = 0
        self.got = bytearray(t.buf)
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        import select
        import ssl
        s = self.t.sock
        s.setblocking(False)
        sending = True
        while len(self.got) < len(self.data):
            if not s.pending():
                r, w, _ = select.select([s], [s] if sending and self.sent < len(
                    self.data) else [], [], 30)
                if not r and not w:
                    return
            else:
                r, w = [s], []
            if r:
                try:
                    b = s.recv(262144)
                    if not b:
                        return
                    self.got += b
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
                except OSError:
                    return
            if w:
                try:
                    self.sent += s.send(self.data[self.sent:self.sent + 16384])
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
                except OSError:
                    sending = False


def test_tunnel_cut_mid_data(comsim, agent, relay, tcp_server):
    """Fault: the link cut by a TCP reset at random points while an echo
    tunnel carries data both ways, once in each direction of the link.
    Outcome: what came back through the tunnel before the cut is exactly
    the start of what was sent (nothing corrupted, reordered or
    duplicated), the agent closes the service's connection and COM the
    engineer's, the agent links again with no tunnel left over, and a new
    tunnel works."""
    g = rng("tunnel")
    e = tcp_server()
    sim = comsim()
    r = relay(sim)
    a = tunnel_agent(agent, sim, e, relay=r)
    data = g.randbytes(3 << 20)
    for i, direction in enumerate(("down", "up")):
        t = echo_tunnel(sim)
        t.roundtrip(b"before the cut\n")
        conn = e.connections()[-1]
        r.throttle(PACE, "both")
        seq = sim.last_seq()
        p = Pump(t, data)
        wait_until(lambda: len(p.got) > 100000, 20, "data flowing both ways")
        at = g.randrange(1000, 400000)
        r.cut(direction, at)
        wait_until(lambda: link_closes(sim, seq), 15, "the link cut")
        r.throttle(None, "both")
        p.th.join(15)
        assert not p.th.is_alive(), "the engineer's connection stayed open"
        wait_until(lambda: conn.closed, 10,
                   "the agent closing the service's connection")
        got = bytes(p.got)
        assert got == data[:len(got)], "tunnel data changed at byte %d" % next(
            k for k in range(len(got)) if got[k] != data[k])
        assert 100000 < len(got) < len(data), len(got)
        assert conn.bytes_in <= p.sent
        print("cut %s after %d more bytes: %d bytes came back, %d sent" % (
            direction, at, len(got), p.sent))
        wait_until(lambda: sim.events("welcome", seq, C, S), 15, "a new link")
        a.wait_status(lambda s: s.get("code") == "connected"
                      and s.get("tunnels") == [], 10, "linked, no tunnel left")
        t.close()
        t2 = echo_tunnel(sim)
        t2.roundtrip(b"after the cut %d\n" % i)
        t2.close()
    assert a.status()["reconnects"] >= 2


# ------------------------------------------------------------------ half-open, slow COM

def test_half_open_link_during_upload(comsim, agent, relay, hooks):
    """Fault: the link goes half-open in the middle of a backup's upload:
    from then on every packet either way vanishes and neither end sees a
    FIN or a reset (test_link.py's test_stall_detected covers an idle link,
    test_tcp_blackhole the connect). Outcome: the agent notices by its
    idle_timeout (3 s; not before ~2.5 s, not after ~7 s), links again, the
    upload resumes at what COM holds (it is not started again), the hook
    ran once, the backup is stored intact and the job succeeds once."""
    sim = comsim()
    r = relay(sim)
    a = make_agent(agent, sim, hooks, relay=r, size=3 << 20)
    r.throttle(PACE, "up")
    jid = job(sim, "backup")
    wait_until(lambda: [u for u in sim.uploads(C, S) if u["held"] > 200000], 30,
               "the upload under way")
    n = len(r.conns())
    t0 = time.time()
    r.blackhole()
    new = wait_until(lambda: r.conns()[n:], 3 + 6, "a new connection after the half-open")
    dt = new[0]["t_open"] - t0
    assert 2.5 <= dt <= 3 + 4, "noticed a half-open link after %.1fs (idle_timeout 3s)" % dt
    r.throttle(None, "up")
    settled_once(sim, jid)
    opens = sim.events("upload_open", 0, C, S)
    assert len(opens) == 2 and opens[1]["offset"] > 200000, opens
    stored = sim.backups(C, S)
    assert len(stored) == 1
    body = sim.backup_file(C, S, stored[0]["name"])
    assert (len(body), sha(body)) == (opens[0]["size"], opens[0]["sha256"])
    assert hooks.runs("backup") == [("backup", jid)]
    st = a.status()
    assert st["code"] == "connected" and st["reconnects"] == 1, st
    assert "idle_timeout" in a.log()


def test_com_answering_one_byte_per_second(comsim, agent, relay):
    """Fault: COM answers slowly, 1 byte/s (a throttling relay): first from
    the start of the connection, then on a link that is up. Outcome: the
    agent gives up each attempt at its connect_timeout (3 s) and says so
    ("Connection failed", the timeout in last_error); on the up link, its
    idle_timeout hangs up and the status says "Not reachable or offline";
    when COM is fast again it links normally; it never crashes."""
    sim = comsim()
    r = relay(sim)
    r.throttle(1, "down")
    a = make_agent(agent, sim, relay=r, start=False)
    a.start()
    st = a.wait_status(lambda s: s.get("attempts", 0) >= 3, 15,
                       "three attempts against a 1 byte/s COM")
    assert st["state"] == "Connection failed" and st["code"] == "failed", st
    assert "within 3000 ms" in st["last_error"], st
    assert not sim.events("welcome")
    cs = [c for c in r.conns() if c["closed"]][:2]
    assert len(cs) == 2
    for c in cs:                       # each attempt lasted connect_timeout
        assert 2.5 <= c["t_closed"] - c["t_open"] <= 5, cs
        assert c["down"] <= 12, cs      # ~1 byte/s of COM's handshake got through
    r.throttle(None, "down")
    a.wait_connected(15)
    seq = sim.last_seq()
    # the link is up: COM turns slow
    r.throttle(1, "both")
    st = a.wait_status(lambda s: s.get("code") == "offline", 3 + 5,
                       "the idle_timeout hanging up the slow link")
    assert st["state"].startswith("Not reachable or offline for the last"), st
    assert "idle_timeout" in st["last_error"] or "within 3000 ms" in st["last_error"], st
    t_down = time.time()
    a.wait_status(lambda s: s.get("attempts", 0) >= st["attempts"] + 1 and
                  s.get("code") == "offline", 10,
                  "an attempt failing against the slow COM")
    r.throttle(None, "both")
    st = a.wait_status(lambda s: s.get("code") == "connected", 15,
                       "linked again once COM is fast")
    assert st["reconnects"] == 1, st
    assert len(sim.events("welcome", seq, C, S)) == 1
    assert time.time() - t_down < 20
    r2 = a.cli("status")
    assert "Connection successful" in r2.stdout
    sim.barrier()


# ------------------------------------------------------------------ garbage, truncated, oversized

def big_text(mid):
    """A valid 60 KB message of an unknown type (15 strings of 4000 bytes:
    within the limits of PROTOCOL.md 2): answered "unsupported" whole."""
    return json.dumps(dict({"type": "test.big", "id": mid},
                           **{"pad%d" % i: "x" * 4000 for i in range(15)}))


def answers_to(sim, mid, since=0):
    return [m for m in sim.messages(C, S, since=since) if m.get("re") == mid]


def test_truncated_frames(comsim, agent, relay):
    """Fault: the link cut (reset or FIN, at random) in the middle of a
    60 KB text frame and of a 32 KB binary frame — COM's message never
    arrives whole. Outcome: the agent acts on no part of it (no answer to
    the cut message, ever), links again at once, and answers the same
    message sent whole afterwards."""
    g = rng("truncated")
    sim = comsim()
    r = relay(sim)
    a = make_agent(agent, sim, relay=r)
    cuts = 0
    for i in range(4):
        seq = sim.last_seq()
        how = ("rst", "fin")[i % 2]
        if i < 3:
            mid = 700000 + i
            frame = big_text(mid)
            at = g.randrange(100, 50000)
            r.cut("down", at, how)
            sim.send(raw=frame)
        else:
            sid = 777777
            at = g.randrange(100, 30000)
            r.cut("down", at, how)
            sim.admin("POST", "/send_binary", {"customer": C, "system": S, "stream": sid,
                                              "data_b64": base64.b64encode(
                                                  g.randbytes(32768)).decode()})
        cuts += 1
        wait_until(lambda: link_closes(sim, seq), 10, "the cut link")
        wait_until(lambda: sim.events("welcome", seq, C, S), 15, "a new link")
        a.wait_connected(10)
        print("cut (%s) %d bytes into a frame" % (how, at))
    sim.barrier()
    for i in range(3):
        assert not answers_to(sim, 700000 + i), "the agent acted on a cut frame"
    assert not [m for m in sim.messages(C, S, type="stream.close")
                if m.get("stream") == 777777]
    st = a.status()
    assert st["reconnects"] == cuts, st
    # whole, the same frames are answered
    seq = sim.last_seq()
    sim.send(raw=big_text(700009))
    sim.admin("POST", "/send_binary", {"customer": C, "system": S, "stream": 777777,
                                      "data_b64": base64.b64encode(b"x" * 32768).decode()})
    sim.wait_message(lambda m: m["type"] == "unsupported" and m.get("re") == 700009,
                     seq, 5, "the whole frame answered")
    m = sim.wait_message(lambda m: m["type"] == "stream.close" and
                         m.get("stream") == 777777, seq, 5, "unknown_stream")
    assert m["reason"] == "unknown_stream"
    assert not link_closes(sim, seq)


def test_garbage_on_the_raw_socket(comsim, agent, relay):
    """Fault: garbage bytes on the TCP connection, below TLS: (1) before
    TLS — random bytes, then a plaintext HTTP answer — from COM's side of
    new connections; (2) inside an established link's TLS stream, towards
    the agent and towards COM. Outcome: (1) every attempt fails cleanly
    ("Connection failed"), no hello is ever sent through it, and the agent
    links once the garbage stops; (2) the TLS record check catches it, the
    link is dropped (by the agent, or by COM) and made again; COM's
    process survives it; nothing crashes."""
    g = rng("garbage")
    sim = comsim()
    r = relay(sim)
    r.on_accept = "garbage"
    a = make_agent(agent, sim, relay=r, start=False)
    a.start()
    st = a.wait_status(lambda s: s.get("attempts", 0) >= 2, 15, "two attempts")
    assert st["state"] == "Connection failed", st
    r.on_accept = "http"
    n = st["attempts"]
    st = a.wait_status(lambda s: s.get("attempts", 0) >= n + 2, 15,
                       "two attempts against a plaintext answer")
    assert st["state"] == "Connection failed", st
    assert not sim.hellos(), "a hello went through garbage"
    r.on_accept = None
    a.wait_connected(15)
    for k, direction in enumerate(("down", "up", "down")):
        seq = sim.last_seq()
        r.inject(direction, g.randbytes(g.randrange(1, 300)))
        wait_until(lambda: link_closes(sim, seq), 10,
                   "the link dropped after garbage %s" % direction)
        wait_until(lambda: sim.events("welcome", seq, C, S), 15, "a new link")
        a.wait_status(lambda s: s.get("code") == "connected" and
                      s.get("reconnects") == k + 1, 10, "linked again")
    seq = sim.last_seq()
    r2 = sim.send({"type": "frobnicate"})
    sim.wait_message(lambda m: m["type"] == "unsupported" and m.get("re") == r2["id"],
                     seq, 5, "an answer on the new link")


def test_bad_binary_frames(comsim, agent):
    """Fault: binary frames the protocol does not allow: 4 bytes (a stream
    id, no payload), data for an odd stream id (the agent's side) it never
    opened, three times, and 4 + 32 769 bytes (over the frame limit; the
    text case is test_link.py's test_oversized_frame). Outcome: the short
    one is ignored and the link stays; the odd id is answered once with
    stream.close unknown_stream (PROTOCOL.md 3; the agent used to drop
    such data without a word — fixed in xfer.c); the oversized one closes
    the link with 4002 (PROTOCOL.md 1) and the agent links again."""
    sim = comsim()
    a = make_agent(agent, sim)
    seq = sim.last_seq()
    sim.admin("POST", "/send_binary", {"customer": C, "system": S, "stream": 5,
                                      "data_b64": ""})
    for _ in range(3):
        sim.admin("POST", "/send_binary", {"customer": C, "system": S, "stream": 4001,
                                          "data_b64": base64.b64encode(b"?" * 100).decode()})
    sim.barrier(seq)
    assert not link_closes(sim, seq)
    assert "too short" in a.log()
    closes = [m for m in sim.messages(C, S, type="stream.close", since=seq)
              if m.get("stream") == 4001]
    assert [m["reason"] for m in closes] == ["unknown_stream"], closes
    sim.admin("POST", "/send_binary", {"customer": C, "system": S, "stream": 5,
                                      "data_b64": base64.b64encode(
                                          b"y" * 32769).decode()})
    c = wait_until(lambda: link_closes(sim, seq), 10, "the link closed")[0]
    assert c["code"] == 4002 and c["by"] == "agent", c
    wait_until(lambda: sim.events("welcome", seq, C, S), 15, "a new link")
    a.wait_connected(10)
    sim.barrier()



# ------------------------------------------------------------------ a flood of stream opens

def test_stream_open_flood(comsim, agent, tcp_server, monkeypatch):
    """Fault: 400 tunnel stream.opens at once (comsim's /stream_flood),
    far beyond the agent's max_streams (64), while two tunnels are open
    and in use (test_tunnel.py's test_max_streams opens 3 against a limit
    of 2). Outcome: every open gets exactly one answer — accepted up to
    the limit, then stream.close "limit" with the agent's words — none is
    left unanswered (COM would time it out); the link stays up; the two
    tunnels keep working during and after; the agent's memory stays
    bounded; once the flood's tunnels close, new ones work again.
    (ASan's free-block quarantine is cut to 1 MiB, as in the tunnel
    fairness test, so RSS shows what the agent holds.)"""
    opts = os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    monkeypatch.setenv("ASAN_OPTIONS", opts + ":quarantine_size_mb=1")
    e = tcp_server()
    sim = comsim()
    a = tunnel_agent(agent, sim, e)
    seq0 = sim.last_seq()
    old = [echo_tunnel(sim) for _ in range(2)]
    for t in old:
        t.roundtrip(b"before the flood\n")
    rss0 = tk.rss_kb(a.proc.pid)
    seq = sim.last_seq()
    n = 400
    fl = sim.admin("POST", "/stream_flood", {"customer": C, "system": S,
                                            "count": n, "port": 7071})
    ids = fl["streams"]
    assert len(ids) == n
    old[0].roundtrip(b"during the flood\n")

    def answers():
        out = {}
        for m in sim.messages(C, S, since=seq):
            if m["type"] in ("stream.accept", "stream.close") and m.get("stream") in ids:
                out.setdefault(m["stream"], []).append(m)
        return out
    wait_until(lambda: len(answers()) == n, 20,
               "an answer to each of the %d opens" % n)
    sim.barrier()
    got = answers()
    twice = {k: v for k, v in got.items() if len(v) != 1}
    assert not twice, "answered more than once: %r" % list(twice.items())[:3]
    accepted = [k for k, v in got.items() if v[0]["type"] == "stream.accept"]
    refused = [v[0] for v in got.values() if v[0]["type"] == "stream.close"]
    assert len(accepted) == 64 - 2, (len(accepted), len(refused))
    assert {(m["reason"], m["message"]) for m in refused} == \
        {("limit", "too many streams (max 64)")}, refused[:3]
    assert not [ev for ev in sim.events("tunnel_refused", seq, C, S)
                if ev.get("reason") == "timeout"]
    assert not link_closes(sim, seq0), "the link went down"
    assert sim.agent(C, S)["welcomes"] == 1
    st = a.status()
    assert st["code"] == "connected" and len(st["tunnels"]) == 64, len(st["tunnels"])
    assert "send queue full" not in a.log()
    for t in old:
        t.roundtrip(b"after the flood\n")
    rss1 = tk.rss_kb(a.proc.pid)
    print("agent RSS %d KiB before the flood, %d KiB with 64 tunnels" % (rss0, rss1))
    assert rss1 - rss0 < 16 * 1024, (rss0, rss1)
    # the flood's tunnels end; the limit frees up again
    for sid in accepted:
        sim.admin("POST", "/stream_close", {"customer": C, "system": S, "stream": sid})
    a.wait_status(lambda s: len(s.get("tunnels", [])) == 2, 15,
                  "the flood's tunnels closed")
    t = echo_tunnel(sim)
    t.roundtrip(b"a new one\n")
    t.close()
    for t in old:
        t.roundtrip(b"still\n")
        t.close()
    assert not link_closes(sim, seq0)



# ------------------------------------------------------------------ auth flips

FLIPS = [("disabled", "user_disabled", "Service user disabled"),
         ("locked", "user_locked", "Service user temporarily locked"),
         ("expired", "password_expired", "Service user password expired")]


def test_auth_state_flips_while_connected(comsim, agent, tcp_server):
    """Fault: the service user's state changes at COM while the link is up
    and tunnels are open: disabled, then locked, then expired, then ok
    again (comsim's customers upsert; COM ends the session, as /drop
    does). Outcome: the open tunnels end with the link (both their ends
    closed), each refusal shows the COM wording in `comagent status`, the
    agent retries only on its authentication back-off (here 1..2 s: a
    handful of hellos, not one per 100 ms), and once the user is ok again
    it links and tunnels work."""
    e = tcp_server()
    sim = comsim()
    a = tunnel_agent(agent, sim, e, overrides={"com": {"auth_retry_min": "1s",
                                                       "auth_retry_max": "2s"}})
    rec = dict(DEFAULT_CUSTOMER)
    for state, reason, words in FLIPS:
        tunnels = [echo_tunnel(sim) for _ in range(2)]
        for t in tunnels:
            t.roundtrip(b"open before %s\n" % state.encode())
        conns = e.connections()[-2:]
        seq = sim.last_seq()
        sim.admin("POST", "/customers", dict(rec, state=state))
        sim.admin("POST", "/drop", {"customer": C, "system": S})
        for t in tunnels:
            assert t.wait_closed(10), "a tunnel outlived its link"
            t.close()
        wait_until(lambda: all(c.closed for c in conns), 10,
                   "the services' connections closed")
        ref = wait_until(lambda: sim.events("refused", seq, C, S), 10,
                         "COM refusing the %s user" % state)[0]
        assert ref["reason"] == reason
        st = a.wait_status(lambda s: s.get("state") == words, 10,
                           "status showing %r" % words)
        assert st["code"] == reason and st["tunnels"] == [], st
        assert words in a.cli("status").stdout
        # refused again on the back-off, not hammered
        wait_until(lambda: len(sim.events("refused", seq, C, S)) >= 2, 10,
                   "a retry on the authentication back-off")
        refs = sim.events("refused", seq, C, S)
        gap = refs[1]["t"] - refs[0]["t"]
        assert gap >= 0.9, "retried %.2fs after a refusal (auth_retry_min 1s)" % gap
        # the user is fine again: the agent links by itself
        seq = sim.last_seq()
        sim.admin("POST", "/customers", dict(rec, state="ok"))
        wait_until(lambda: sim.events("welcome", seq, C, S), 10, "a welcome")
        st = a.wait_status(lambda s: s.get("code") == "connected", 10, "linked")
        assert st["state"] == "Connection successful", st
    t = echo_tunnel(sim)
    t.roundtrip(b"after the flips\n")
    t.close()
    assert a.running


# ------------------------------------------------------------------ clock jumps

TZ = "Europe/Berlin"


def local_time(y, m, d, hh, mm=0):
    import datetime
    import zoneinfo
    return datetime.datetime(y, m, d, hh, mm,
                             tzinfo=zoneinfo.ZoneInfo(TZ)).timestamp()


def test_clock_jumps_while_connected_and_during_a_job(comsim, agent, hooks):
    """Fault: the wall clock jumps forward and back by hours — the test
    build's injected clock (test_autobackup.py's set_clock; the host's own
    clock cannot be moved without moving every process on it) — while the
    link is up and a manual backup runs (held in its upload), across the
    00:30 log upload and the 02:00-04:00 automatic backup: forward into a
    window, back 3 hours, forward past the window, back into it, back a
    whole day. Outcome: the link never drops (keepalive runs on the
    monotonic clock); the manual backup runs once and succeeds; the log
    upload runs once for its date and the automatic backup once for its
    date (not again when the clock comes back over the same hours, nor
    when it goes back a day), and again on the next date; the state files
    parse."""
    from test_autobackup import set_clock
    sim = comsim()
    port = free_port()
    t0 = local_time(2026, 12, 15, 0, 5)
    a = make_agent(agent, sim, hooks, size=1 << 20,
                   settings_kw={"logtransfer": True},
                   overrides={"jobs": {"auto_backup": "on"},
                              "logs": {"syslog": "127.0.0.1:%d" % port}},
                   env={"TZ": TZ, "COMAGENT_TEST_CLOCK": str(round(t0 - time.time()))})
    seq0 = sim.last_seq()
    st = a.status()
    t_auto, t_log = st["next_auto_backup"], st["logs"]["next_upload"]
    assert t0 < t_log < t_auto < t0 + 4 * 3600, (t0, t_log, t_auto)

    def log_uploads():
        return [e for e in sim.events("upload_done", 0, C, S) if e.get("content") == "log"]

    def auto_uploads():
        return [e for e in sim.events("upload_done", 0, C, S)
                if e.get("content") != "log" and e.get("job") == ""]
    syslog_send(port, [b"<14>first message"])
    wait_until(lambda: logs_status(a)["stored"] == 1, 10, "stored")
    # a manual backup, held in its upload for the whole dance
    sim.admin("POST", "/upload_fault", {"customer": C, "system": S, "hold_credit": True})
    jid = job(sim, "backup")
    wait_until(lambda: a.status()["operation"] == "backup", 20, "the backup running")
    # the log upload's time: it runs once
    set_clock(a, t_log + 1)
    wait_until(lambda: len(log_uploads()) == 1, 20, "the nightly log upload")
    syslog_send(port, [b"<14>second message"])
    wait_until(lambda: logs_status(a)["stored"] == 2, 10, "stored")
    set_clock(a, t_log - 3 * 3600)          # back 3 hours: the day before
    set_clock(a, t_log + 120)               # and over the same minutes again
    # the automatic backup's time, while the manual one runs: it waits
    set_clock(a, t_auto + 1)
    set_clock(a, t_auto + 1 - 3 * 3600)     # back 3 hours
    set_clock(a, t_auto + 6 * 3600)         # past the window
    set_clock(a, t_auto + 60)               # back into it
    assert not auto_uploads() and len(log_uploads()) == 1
    assert [r for r in hooks.runs("backup") if r[1] == ""] == []
    # the manual backup ends; the automatic one follows, once
    sim.admin("POST", "/upload_fault", {"customer": C, "system": S, "hold_credit": False})
    settled_once(sim, jid)
    set_clock(a, t_auto + 60 + 301)         # the busy retry's time
    wait_until(lambda: len(auto_uploads()) == 1, 30, "the automatic backup")
    wait_until(lambda: a.status()["operation"] == "idle", 10, "idle")
    for at in (t_auto - 2 * 3600, t_auto + 5, t_auto - 86400 + 5,
               t_log - 86400 + 5, t_log + 600):
        set_clock(a, at)
        assert a.status()["operation"] == "idle"
    sim.barrier()
    assert len(auto_uploads()) == 1 and len(log_uploads()) == 1
    assert hooks.runs("backup") == [("backup", jid), ("backup", "")]
    # the next date: both run again
    nxt = a.status()["next_auto_backup"]
    assert t_auto + 20 * 3600 < nxt < t_auto + 28 * 3600, (t_auto, nxt)
    set_clock(a, a.status()["logs"]["next_upload"] + 1)
    wait_until(lambda: len(log_uploads()) == 2, 20, "the next night's log upload")
    set_clock(a, nxt + 1)
    wait_until(lambda: len(auto_uploads()) == 2, 30, "the next day's automatic backup")
    # never a drop: keepalive and the link do not read the wall clock
    assert not link_closes(sim, seq0)
    st = a.status()
    assert st["code"] == "connected" and st["reconnects"] == 0, st
    assert sim.agent(C, S)["welcomes"] == 1
    state = parse_state(a.root)
    assert state["autobackup"] == "2026-12-16" and state["logupload"] == "2026-12-16", state


# ------------------------------------------------------------------ disk full

class Tmpfs:
    """A small tmpfs mounted over `path` for one test (root only; the host
    is not touched beyond it): a disk that fills up on demand."""

    def __init__(self, path, size, mode=0o700):
        self.path = path
        os.makedirs(path, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=%o" % (size, mode),
                            "tmpfs", path], capture_output=True, text=True)
        if r.returncode:
            pytest.skip("cannot mount a tmpfs here (%s)" % r.stderr.strip())
        self.filler = os.path.join(path, ".filler")

    def fill(self):
        """Takes every free block; returns the bytes taken."""
        n = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 20, 4096, 512, 1):
                buf = b"\0" * chunk
                while True:
                    try:
                        w = os.write(fd, buf)
                    except OSError:
                        break
                    n += w
                    if w < chunk:
                        break
        finally:
            os.close(fd)
        return n

    def free(self):
        os.unlink(self.filler)

    def umount(self):
        subprocess.run(["umount", "-l", self.path], capture_output=True)


def reconfigure(a, **sections):
    """Rewrites the agent's ini (before it starts) with sections merged in;
    values may name paths under the agent's root, known only now."""
    for sec, kv in sections.items():
        a.config.setdefault(sec, {}).update(kv)
    write_ini(a.ini, a.config, 0o600)


def stop_then_umount(a, fs):
    try:
        if a.proc is not None and a.proc.poll() is None:
            a.stop()
    finally:
        fs.umount()


def off_state_dir(a):
    """Work, staging and log store beside, not inside, the state directory:
    only the small state files compete for its room."""
    reconfigure(a, jobs={"work_dir": os.path.join(a.root, "var/work"),
                         "staging_dir": os.path.join(a.root, "var/staging")},
                logs={"store_dir": os.path.join(a.root, "var/logstore")})


def test_state_dir_full(comsim, agent, hooks):
    """Fault: the state directory's file system is full (a 4 MiB tmpfs,
    filled): (1) when a job arrives, (2) when a running job ends, (3) when
    the agent is stopped with such a job, and when a technician changes a
    setting. Outcome: (1) the job is rejected with the agent's words
    ("cannot record the job"), nothing runs; (2) the job's final state is
    not reported before it is journaled — COM sees one outcome, once, when
    room returns (the agent used to report "succeeded" unjournaled, then
    "running" again on the next link and "failed / interrupted" after a
    restart: fixed in ops.c); (3) a restart reports that job interrupted,
    once, and nothing else about it; `comagent settings set` fails with a
    message and the settings file keeps its contents; every state file
    parses throughout and the restarted agent reads them without a
    complaint; the hook ran once per job that ran."""
    sim = comsim()
    a = make_agent(agent, sim, hooks, start=False, size=200000)
    off_state_dir(a)
    fs = Tmpfs(os.path.join(a.root, STATE), "4m")
    try:
        settings(a, remoteupgrade=True)
        a.start()
        a.wait_connected()
        wait_until(lambda: a.status()["custom"]["refresh"] == "succeeded", 15,
                   "the first connect's refresh")
        before = parse_state(a.root)

        # (1) full when a job arrives
        fs.fill()
        j1 = job(sim, "backup")
        m = wait_final(sim, j1, 15)
        assert (m["state"], m["reason"]) == ("rejected", "invalid"), m
        assert "cannot record the job" in m["message"], m
        assert "No space left on device" in a.log()
        r = a.cli("settings", "set", "centralmgmt=1")
        assert r.returncode != 0 and r.stderr.strip(), (r.returncode, r.stdout, r.stderr)
        assert parse_state(a.root)["settings"] == before["settings"]
        assert a.status()["code"] == "connected"
        assert hooks.runs("backup") == []

        # (2) full when a running job ends
        fs.free()
        sim.admin("POST", "/upload_fault", {"customer": C, "system": S,
                                            "hold_credit": True})
        j2 = job(sim, "backup")
        wait_until(lambda: [u for u in sim.uploads(C, S) if u["held"] > 0], 20,
                   "the upload under way")
        fs.fill()
        sim.admin("POST", "/upload_fault", {"customer": C, "system": S,
                                            "hold_credit": False})
        wait_until(lambda: sim.events("upload_done", 0, C, S), 20, "COM storing it")
        a.wait_status(lambda s: s.get("operation") == "idle", 10, "the job over")
        sim.barrier()
        assert finals(sim, j2) == [], "reported before it was journaled"
        assert "its final state (succeeded) is not journaled" in a.log()
        sim.admin("POST", "/drop", {"customer": C, "system": S})   # a new link meanwhile
        seq = sim.last_seq()
        wait_until(lambda: sim.events("welcome", seq, C, S), 10, "a new link")
        sim.barrier()
        assert [m["state"] for m in states(sim, j2, seq)] in ([], ["running"])
        parse_state(a.root)
        fs.free()
        settled_once(sim, j2, timeout=20)
        jobs = {j["job"]: j for j in parse_state(a.root)["jobs"]}
        assert jobs[j2]["state"] == "succeeded" and j1 not in jobs, jobs

        # a new job runs normally now
        j3 = job(sim, "backup")
        settled_once(sim, j3)
        assert hooks.runs("backup") == [("backup", j2), ("backup", j3)]

        # (3) stopped while such a state is held: interrupted, once
        sim.admin("POST", "/upload_fault", {"customer": C, "system": S,
                                            "hold_credit": True})
        j4 = job(sim, "backup")
        wait_until(lambda: [u for u in sim.uploads(C, S) if u["held"] > 0], 20,
                   "the upload under way")
        fs.fill()
        sim.admin("POST", "/upload_fault", {"customer": C, "system": S,
                                            "hold_credit": False})
        wait_until(lambda: a.log().count("is not journaled") >= 2, 20,
                   "the agent holding the second final state")
        a.stop()
        a.proc = None
        fs.free()
        parse_state(a.root)
        seq = sim.last_seq()
        mark = restart(a)
        m = settled_once(sim, j4, want="failed")
        assert m["reason"] == "interrupted", m
        assert [x["state"] for x in finals(sim, j4)] == ["failed"]
        read_back_cleanly(a, mark)
        assert hooks.runs("backup") == [("backup", j2), ("backup", j3), ("backup", j4)]
        r = a.cli("settings", "set", "centralmgmt=1")
        assert r.returncode == 0, r.stderr
        assert parse_state(a.root)["settings"]["centralmgmt"] is True
    finally:
        stop_then_umount(a, fs)



def test_log_store_full(comsim, agent):
    """Fault: the log store's file system is full (a 512 KiB tmpfs, filled
    by another file) while syslog messages arrive; then room returns
    (test_logs.py's test_full_filesystem_survived fills it with the
    store's own files and checks that the agent goes on). Outcome: the
    store says so (write errors or room made by pruning files COM already
    has, "No space left" in the log), the agent keeps running and linked;
    once room returns, new messages are stored and uploaded; COM holds
    every line of before (uploaded earlier) and of after, each once and
    whole — of the messages sent into the full disk, only whole lines, in
    order, none twice, and every one the store counted as stored; the
    manifest parses and names only files that exist; a restarted agent reads the store without a complaint and has
    nothing left to upload."""
    g = rng("logfull")
    sim = comsim()
    port = free_port()
    a = make_agent(agent, sim, allow=False, start=False,
                   settings_kw={"logtransfer": True},
                   overrides={"logs": {"syslog": "127.0.0.1:%d" % port,
                                       "file_max": "64K", "max_total": "16M"}})
    store = os.path.join(a.root, "var/logstore")
    reconfigure(a, logs={"store_dir": store})
    fs = Tmpfs(store, "512k")
    try:
        a.start()
        a.wait_connected()

        def batch(tag, n):
            return [b"<14>%s %04d " % (tag, i) + g.randbytes(150).hex().encode()
                    for i in range(n)]

        def counted():
            st = logs_status(a)
            return st["stored"] + st["dropped_total"] + st["write_errors"] + \
                st["dropped_day"]
        before = batch(b"before", 200)
        syslog_send(port, before)
        wait_until(lambda: logs_status(a)["stored"] == 200, 15, "stored")
        settled_once(sim, job(sim, "fetch_logs"))
        assert stored_lines(sim) == [m.decode() for m in before]

        fs.fill()
        full = batch(b"full", 300)
        syslog_send(port, full)
        wait_until(lambda: counted() == 500, 20, "the messages into the full disk counted")
        st = logs_status(a)
        print("into a full store: %r" % st)
        assert st["write_errors"] > 0 or st["pruned_sent"] > 0, st
        assert st["pruned_unsent"] == 0, st
        assert "No space left on device" in a.log()
        assert a.status()["code"] == "connected"
        parse_log_manifest(store)

        fs.free()
        after = batch(b"after", 200)
        # the store retries a failed file after LOGSTORE_RETRY_S (10 s):
        # the new messages are stored whatever state the last write left
        syslog_send(port, after)
        wait_until(lambda: counted() == 700, 20, "the messages after counted")
        st = logs_status(a)
        assert st["stored"] >= 400, st
        settled_once(sim, job(sim, "fetch_logs"), timeout=30)
        lines = stored_lines(sim)
        assert len(lines) == len(set(lines)), "a line twice at COM"
        sent = {m.decode() for m in before + full + after}
        assert set(lines) <= sent, "a line COM got was never sent: %r" % (
            sorted(set(lines) - sent)[:2])
        assert [x for x in lines if x.startswith("<14>before")] == \
            [m.decode() for m in before]
        got_full = [x for x in lines if x.startswith("<14>full")]
        assert got_full == sorted(got_full)
        assert [x for x in lines if x.startswith("<14>after")] == \
            [m.decode() for m in after]
        assert not sim.events("log_replaced", 0, C, S)
        # every message the store took (counted stored; none pruned unsent)
        # reached COM: nothing it accepted was lost
        st = logs_status(a)
        assert st["pruned_unsent"] == 0 and len(lines) == st["stored"], (len(lines), st)
        man = parse_log_manifest(store)
        assert man and all(up for _, _, up in man.values()), man
        a.stop()
        a.proc = None
        mark = restart(a)
        read_back_cleanly(a, mark, dirs=("var/logstore", STATE))
        seq = sim.last_seq()
        settled_once(sim, job(sim, "fetch_logs"))
        assert not sim.events("upload_open", seq, C, S)
    finally:
        stop_then_umount(a, fs)


# ------------------------------------------------------------------ SIGKILL during state writes

def _stamp(p):
    try:
        st = os.stat(p)
        return (st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError:
        return None


def kill_during_write(a, tmps, g, longest, nth=1):
    """SIGKILL the agent the moment one of `tmps` (a state file's temporary
    copy: state_write() creates or truncates it, writes, syncs and renames
    it away) is seen to change for the `nth` time, or at a random moment
    within `longest` seconds if that does not happen: fault timing, not
    synchronisation. True if a write was caught in flight."""
    last = {p: _stamp(p) for p in tmps}
    deadline = time.monotonic() + g.uniform(0.05, longest)
    seen = 0
    while time.monotonic() < deadline and seen < nth:
        for p in tmps:
            st = _stamp(p)
            if st not in (None, last[p]):
                seen += 1
            last[p] = st
    kill(a)
    return seen >= nth


def test_sigkill_during_journal_writes(comsim, agent, hooks):
    """Fault: SIGKILL while the agent writes its job journal — six times,
    each during a burst of jobs (backups that run, and ops it rejects),
    the moment the journal's temporary file changes (or at a random
    moment); test_jobs.py's test_agent_killed_mid_job_reports_once kills
    once at a quiet moment, test_custom.py the custom-files install.
    Outcome: after every kill all state files parse and the restarted
    agent reads them without a complaint; at the end, when COM sends every
    job id again, each is answered from the journal or runs now if it
    never got into it: no backup hook ran twice for a job, no job has two
    different final states at COM, no job stored two backups."""
    g = rng("killjobs")
    sim = comsim()
    a = make_agent(agent, sim, hooks)
    tmp = os.path.join(a.root, STATE, "jobs.tmp")
    sent = []
    caught = 0
    for rnd in range(6):
        burst = [("K%d-%d" % (rnd, i), "backup" if i % 2 else "frobnicate")
                 for i in range(8)]

        def send():
            for jid, op in burst:
                st, _ = sim.admin_status("POST", "/job", {"customer": C, "system": S,
                                                          "op": op, "job": jid})
                if st == 200:
                    sent.append((jid, op))
        th = threading.Thread(target=send)
        th.start()
        caught += kill_during_write(a, [tmp], g, 1.0, nth=g.randrange(1, 6))
        th.join(30)
        parse_state(a.root)
        mark = restart(a)
        read_back_cleanly(a, mark)
    print("%d kills caught a journal write in flight; %d jobs sent" % (caught, len(sent)))
    assert caught >= 3, "the kills missed the journal writes: %d of 6" % caught
    a.wait_status(lambda s: s.get("operation") == "idle", 30, "idle")
    # COM sends every job again: answered, or run if it never got in
    for jid, op in sent:
        sim.admin("POST", "/job", {"customer": C, "system": S, "op": op, "job": jid})
    for jid, _ in sent:
        wait_final(sim, jid, 60)
    sim.barrier()
    runs = [j for _, j in hooks.runs("backup")]
    assert len(runs) == len(set(runs)), "a backup ran twice: %r" % runs
    for jid, op in sent:
        fs = {(m["state"], m.get("reason")) for m in finals(sim, jid)}
        assert len(fs) == 1, (jid, fs)
        if op == "frobnicate":
            assert fs == {("rejected", "unsupported")}, (jid, fs)
    per_job = [b["job"] for b in sim.backups(C, S)]
    assert len(per_job) == len(set(per_job)), per_job
    jobs = parse_state(a.root)["jobs"]
    assert {j["job"] for j in jobs} >= {jid for jid, _ in sent}


def store_lines_on_disk(store):
    """Every whole line the log store holds on disk right now: its closed
    .log.gz files and the complete lines of raw .log files (the next start
    compresses those); not temporary files."""
    out = set()
    for n in os.listdir(store):
        p = os.path.join(store, n)
        with open(p, "rb") as f:
            b = f.read()
        if n.endswith(".log.gz"):
            b = gzip.decompress(b)
        elif n.endswith(".log"):
            b = b[:b.rfind(b"\n") + 1]
        else:
            continue
        out |= {x for x in b.decode().split("\n") if x}
    return out


def test_sigkill_during_log_store_writes(comsim, agent):
    """Fault: SIGKILL while the log store closes files and writes its
    manifest (64 KiB files under a syslog flood, with fetch_logs uploads
    going on) — five times, the moment the manifest's temporary file
    changes (or at a random moment). Outcome: after every kill the
    manifest parses and names only files that exist, and the restarted
    agent opens the store without a complaint; in the end COM holds every
    line the store had on disk at any kill (nothing it kept is lost), and
    only whole lines that were sent, none twice, each connection's in
    order, no log file replaced by other bytes. (Messages in the write
    buffer at a kill, and those sent while the agent was down, are lost:
    syslog has no acknowledgement.)"""
    g = rng("killlogs")
    sim = comsim()
    port = free_port()
    a = make_agent(agent, sim, allow=False, settings_kw={"logtransfer": True},
                   overrides={"logs": {"syslog": "127.0.0.1:%d" % port,
                                       "file_max": "64K"}})
    store = os.path.join(a.root, STATE, "logs")
    tmps = [os.path.join(store, "manifest.tmp")]
    sent = []
    durable = set()
    caught = 0
    for rnd in range(5):
        msgs = [b"<14>r%d %05d " % (rnd, i) + g.randbytes(100).hex().encode()
                for i in range(3000)]
        sent.append(msgs)

        def flood():
            try:
                syslog_send(port, msgs)
            except OSError:
                pass
        th = threading.Thread(target=flood)
        th.start()
        if rnd % 2:
            sim.admin_status("POST", "/job", {"customer": C, "system": S,
                                              "op": "fetch_logs"})
        caught += kill_during_write(a, tmps, g, 1.5, nth=g.randrange(1, 5))
        th.join(30)
        parse_log_manifest(store)
        durable |= store_lines_on_disk(store)
        mark = restart(a)
        read_back_cleanly(a, mark)
        parse_log_manifest(store)
    print("%d kills caught a manifest write in flight" % caught)
    assert caught >= 2, "the kills missed the manifest writes: %d of 5" % caught
    settled_once(sim, job(sim, "fetch_logs"), timeout=60)
    lines = stored_lines(sim)
    assert lines, "nothing reached COM"
    assert len(lines) == len(set(lines)), "a line twice at COM"
    every = {m.decode() for b in sent for m in b}
    torn = [x for x in lines if x not in every]
    assert not torn, "lines COM got that were never sent: %r" % torn[:2]
    lost = durable - set(lines)
    assert not lost, "%d lines the store had on disk never reached COM: %r" % (
        len(lost), sorted(lost)[:2])
    for rnd in range(5):
        mine = [x for x in lines if x.startswith("<14>r%d " % rnd)]
        assert mine == sorted(mine), "round %d out of order" % rnd
    assert not sim.events("log_replaced", 0, C, S)
    print("%d of %d lines reached COM (%d were on disk at a kill)" % (
        len(lines), len(every), len(durable)))

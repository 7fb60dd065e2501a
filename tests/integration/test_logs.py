"""The PBX's syslog (issue: Logs): UDP and TCP intake into the capped local
store, COM's fetch_logs job and the nightly 00:30 upload, with comsim as
COM."""
import gzip
import hashlib
import json
import os
import socket
import time

from conftest import wait_until
from test_jobs import C, S, job, put, settings, wait_final
# A syslog receiver takes TCP and UDP on one port.
from tunnelkit import free_tcp_udp_port as free_port

TZ = "Europe/Berlin"


def start_logs(agent, sim, transfer=True, logs=None, env=None):
    port = free_port()
    over = {"logs": dict({"syslog": "127.0.0.1:%d" % port, "file_max": "64K"},
                         **(logs or {}))}
    a = agent(sim, over, start=False, env=env)
    settings(a, logtransfer=transfer, remoteupgrade=False)
    put(a.root, "etc/ipoffice-version", "11.1.3.0\n")
    a.start()
    a.wait_connected()
    a.port = port
    return a


def logs_status(a):
    return a.status()["logs"]


def udp_send(port, msgs):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for m in msgs:
        s.sendto(m, ("127.0.0.1", port))
    s.close()


def tcp_send(port, data):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(data)
    s.close()


def stored_lines(sim):
    out = []
    for meta in sim.logs(C, S):
        body = sim.log_file(C, S, meta["name"])
        assert hashlib.sha256(body).hexdigest() == meta["sha256"]
        out += gzip.decompress(body).decode().splitlines()
    return out


RFC5424 = b'<34>1 2026-12-01T10:00:00.123Z pbx-hq ipoffice 1234 ID47 - started'
RFC3164 = b'<13>Dec  1 10:00:01 pbx-hq ipoffice: call 42 connected'


def test_udp_and_tcp_intake_then_fetch(comsim, agent):
    sim = comsim()
    a = start_logs(agent, sim)
    udp_send(a.port, [RFC5424 + b"\n", RFC3164, b"no pri at all",
                      b"<13>bin\x00ary", b"<13>" + b"x" * 9000])
    # UDP and TCP have no order between them: the datagrams first
    wait_until(lambda: logs_status(a)["stored"] == 3, 10, "the datagrams")
    tcp_send(a.port, b"%d %s" % (len(RFC5424), RFC5424) +
             b"<14>tcp line one\n<14>tcp line two\r\n")
    wait_until(lambda: logs_status(a)["stored"] >= 5, 10, "messages stored")
    st = logs_status(a)
    assert (st["malformed"], st["binary"]) == (1, 1), st
    assert st["truncated"] == 1, st
    jid = job(sim, "fetch_logs")
    m = wait_final(sim, jid, timeout=30)
    assert m["state"] == "succeeded", m
    lines = stored_lines(sim)
    assert lines[:2] == [RFC5424.decode(), RFC3164.decode()]
    # UDP keeps what fits lws's 4 KiB buffer (TCP takes message_max)
    assert lines[2].startswith("<13>xxx") and 4000 < len(lines[2]) < 4096
    assert set(lines[2][4:]) == {"x"}
    assert lines[3:] == [RFC5424.decode(), "<14>tcp line one", "<14>tcp line two"]
    names = [x["name"] for x in sim.logs(C, S)]
    assert all(n.startswith("log-pbx-hq-") and n.endswith(".log.gz") for n in names)
    # fetched once: a second fetch has nothing new, and uploads nothing twice
    since = sim.last_seq()
    jid = job(sim, "fetch_logs")
    assert wait_final(sim, jid, since=since)["state"] == "succeeded"
    assert sim.events("upload_open", since, C, S) == []
    r = a.cli("status")
    assert "Log store:" in r.stdout and "Syslog:" in r.stdout


def test_fetch_needs_logtransfer(comsim, agent):
    sim = comsim()
    a = start_logs(agent, sim, transfer=False)
    udp_send(a.port, [RFC3164])
    jid = job(sim, "fetch_logs")
    m = wait_final(sim, jid)
    assert (m["state"], m["reason"]) == ("rejected", "not_allowed"), m
    assert "logtransfer" in m["message"]


def test_nightly_upload_once_and_resumed(comsim, agent):
    """At about 00:30 (this system's minute) every closed file goes, and the
    current one; once a night; a dropped link resumes the upload; an agent
    restart uploads nothing twice."""
    import datetime
    import zoneinfo
    from test_autobackup import set_clock
    zone = zoneinfo.ZoneInfo(TZ)
    sim = comsim()
    t0 = datetime.datetime(2026, 12, 15, 0, 5, tzinfo=zone).timestamp()
    a = start_logs(agent, sim, logs={"file_max": "1M"},
                   env={"TZ": TZ, "COMAGENT_TEST_CLOCK": str(round(t0 - time.time()))})
    nxt = logs_status(a)["next_upload"]
    lt = datetime.datetime.fromtimestamp(nxt, zone)
    assert lt.date() == datetime.date(2026, 12, 15), lt
    assert datetime.time(0, 30) <= lt.time() < datetime.time(0, 50), lt
    # random text: gzip keeps most of it, so the file is big enough to cut
    msgs = [b"<14>" + os.urandom(300).hex().encode() for _ in range(1500)]
    # one connection: messages of different connections have no order
    tcp_send(a.port, b"".join(m + b"\n" for m in msgs))
    wait_until(lambda: logs_status(a)["stored"] == len(msgs), 20, "all stored")
    sim.admin("POST", "/upload_fault", {"customer": C, "system": S,
                                        "drop_after": 200000})
    set_clock(a, nxt + 1)
    wait_until(lambda: [e for e in sim.events("upload_done", 0, C, S)
                        if e.get("content") == "log"], 60, "the nightly upload")
    opens = [e for e in sim.events("upload_open", 0, C, S) if e.get("content") == "log"]
    assert len(opens) == 2 and opens[1]["offset"] > 0, opens
    assert [l for l in stored_lines(sim)] == [m.decode() for m in msgs]
    assert [x["job"] for x in sim.logs(C, S)] == [""]
    # later that night and after a restart: nothing again
    set_clock(a, nxt + 600)
    a.stop()
    a.proc, a.rc = None, None
    a.env["COMAGENT_TEST_CLOCK"] = str(round(nxt + 700 - time.time()))
    since = sim.last_seq()
    a.start()
    a.wait_connected()
    jid = job(sim, "fetch_logs")
    assert wait_final(sim, jid, since=since)["state"] == "succeeded"
    assert [e for e in sim.events("upload_open", since, C, S)] == []
    assert logs_status(a)["next_upload"] > nxt + 20 * 3600


def test_comagent_logs_filters(comsim, agent, tmp_path):
    """`comagent logs` on a generated log: since, level, grep; the rotated
    file first; bad options are usage errors. `--system` lists the store."""
    from conftest import run_cli
    sim = comsim()
    a = agent(sim, start=False)
    log = os.path.join(a.root, "var/log/comagent/comagent.log")
    put(a.root, "var/log/comagent/comagent.log.1",
        "2026-11-20T08:00:00.000Z info  main: old start\n"
        "2026-11-20T08:00:01.000Z error link: old failure\n")
    put(a.root, "var/log/comagent/comagent.log",
        "2026-11-23T10:00:00.000Z info  main: started\n"
        "2026-11-23T10:00:01.000Z debug link: rx ping\n"
        "2026-11-23T10:00:02.000Z error ops: job J-1 failed\n"
        "  a continuation line\n"
        "2026-11-23T10:00:03.000Z info  ops: job J-2 succeeded\n")

    def logs(*args):
        r = run_cli("logs", "-c", a.ini, *args)
        return r.returncode, r.stdout.splitlines()
    rc, out = logs()
    assert rc == 0 and len(out) == 7 and out[0].endswith("old start"), out
    rc, out = logs("--level", "error")
    # the continuation line belongs to the entry above it
    assert out == ["2026-11-20T08:00:01.000Z error link: old failure",
                   "2026-11-23T10:00:02.000Z error ops: job J-1 failed",
                   "  a continuation line"], out
    rc, out = logs("--since", "2026-11-23T10:00:02Z")
    assert [l.split(" ", 1)[0] for l in out] == [
        "2026-11-23T10:00:02.000Z", "", "2026-11-23T10:00:03.000Z"], out
    rc, out = logs("--grep", "J-2")
    assert out == ["2026-11-23T10:00:03.000Z info  ops: job J-2 succeeded"]
    rc, out = logs("--since", "yesterday-ish")
    assert rc == 2
    rc, out = logs("--level", "loud")
    assert rc == 2
    assert os.path.exists(log)
    # the store's files, from the running agent
    b = start_logs(agent, sim)
    udp_send(b.port, [RFC3164])
    wait_until(lambda: logs_status(b)["stored"] == 1, 10, "stored")
    jid = job(sim, "fetch_logs")
    assert wait_final(sim, jid)["state"] == "succeeded"
    r = b.cli("logs", "--system")
    assert r.returncode == 0 and " uploaded" in r.stdout and "log-" in r.stdout, r.stdout


def test_caps_day_and_total(comsim, agent):
    """linux: the per-day cap drops and counts; a small total cap keeps the
    store within it, the oldest files going first."""
    sim = comsim()
    a = start_logs(agent, sim, logs={"max_day": "256K", "max_total": "16M"})
    msg = b"<14>" + b"d" * 996
    s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
    s.sendall(b"".join(msg + b"\n" for _ in range(400)))     # ~400 KB
    s.close()
    wait_until(lambda: logs_status(a)["stored"] + logs_status(a)["dropped_day"] == 400,
               20, "all messages counted")
    st = logs_status(a)
    assert st["dropped_day"] > 0 and st["stored"] * 1001 <= 256 * 1024, st
    assert st["today_bytes"] <= 256 * 1024, st
    a.stop()
    b = start_logs(agent, sim, logs={"max_total": "1M", "file_max": "64K"})
    rnd = [b"<14>" + os.urandom(400).hex().encode() for _ in range(4000)]  # ~3.2 MB
    s = socket.create_connection(("127.0.0.1", b.port), timeout=5)
    s.sendall(b"".join(m + b"\n" for m in rnd))
    s.close()
    wait_until(lambda: logs_status(b)["stored"] + logs_status(b)["dropped_total"] == 4000,
               30, "all messages counted")
    st = logs_status(b)
    assert st["bytes"] <= 1 << 20 and st["pruned_unsent"] > 0, st
    du = sum(os.path.getsize(os.path.join(dp, f))
             for dp, _, fs in os.walk(os.path.join(b.root, "var/lib/comagent/logs"))
             for f in fs if f != "manifest")
    assert du <= 1 << 20, du


def test_no_nightly_upload_without_logtransfer(comsim, agent):
    import datetime
    import zoneinfo
    from test_autobackup import set_clock
    zone = zoneinfo.ZoneInfo(TZ)
    sim = comsim()
    t0 = datetime.datetime(2026, 12, 15, 0, 5, tzinfo=zone).timestamp()
    a = start_logs(agent, sim, transfer=False,
                   env={"TZ": TZ, "COMAGENT_TEST_CLOCK": str(round(t0 - time.time()))})
    udp_send(a.port, [RFC3164])
    wait_until(lambda: logs_status(a)["stored"] == 1, 10, "stored")
    nxt = logs_status(a)["next_upload"]
    set_clock(a, nxt + 1)
    # off: asked again later in the window, nothing sent
    assert logs_status(a)["next_upload"] > nxt
    assert sim.events("upload_open", 0, C, S) == []
    set_clock(a, nxt + 3 * 3600)            # past the window: tomorrow's
    assert logs_status(a)["next_upload"] > nxt + 20 * 3600
    assert sim.events("upload_open", 0, C, S) == []


def test_full_filesystem_survived(comsim, agent):
    """The store on a 256 KiB tmpfs: writes fail with ENOSPC, the store
    makes room or drops and counts, and the agent goes on."""
    import subprocess
    import pytest
    sim = comsim()
    a = agent(sim, {"logs": {"syslog": "127.0.0.1:%d" % free_port(),
                             "file_max": "64K", "max_total": "16M"}}, start=False)
    store = os.path.join(a.root, "var/lib/comagent/logs")
    os.makedirs(store)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", store],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip("cannot mount a tmpfs here (%s)" % r.stderr.strip())
    try:
        settings(a, logtransfer=True)
        a.start()
        a.wait_connected()
        port = int(a.config["logs"]["syslog"].rsplit(":", 1)[1])
        rnd = [b"<14>" + os.urandom(400).hex().encode() for _ in range(3000)]
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"".join(m + b"\n" for m in rnd))
        s.close()

        def counted():
            st = a.status()["logs"]
            return st["stored"] + st["dropped_total"] + st["write_errors"] >= 3000 \
                and st
        st = wait_until(counted, 30, "all messages counted")
        assert st["write_errors"] > 0 or st["pruned_unsent"] > 0, st
        # still working: a fetch uploads what the store holds
        jid = job(sim, "fetch_logs")
        m = wait_final(sim, jid, timeout=30)
        assert m["state"] in ("succeeded", "failed"), m
        assert a.running
        a.stop()
    finally:
        subprocess.run(["umount", "-l", store])


def test_empty_datagram_and_taken_port(comsim, agent):
    """An empty datagram (lws closes the socket on it) does not end UDP
    intake; an address already taken is an error in status, not a silent
    listener elsewhere."""
    sim = comsim()
    a = start_logs(agent, sim)
    udp_send(a.port, [b"", RFC3164])
    udp_send(a.port, [b"<13>after"])

    def both():
        udp_send(a.port, [b"<13>again"])
        return logs_status(a)["stored"] >= 2
    wait_until(both, 10, "UDP intake after an empty datagram")
    # the same address for a second agent: TCP and UDP are taken
    b = agent(sim, {"logs": {"syslog": "127.0.0.1:%d" % a.port}}, start=False,
              system="pbx-b")
    b.start()
    st = b.wait_status(lambda s: s.get("logs", {}).get("error"), 10,
                       "the listen error in status")
    assert "cannot listen" in st["logs"]["error"], st["logs"]
    assert "cannot listen" in b.cli("status").stdout


def test_collected_log_files(comsim, agent):
    """[logs] collect_dirs: the *.log files of a directory reach the store
    line by line ("FILE: line"), across a rotation, and COM after a fetch."""
    sim = comsim()
    a = agent(sim, {"logs": {"syslog": "", "collect_dirs": "var/log/ipoffice"}},
              start=False)
    settings(a, logtransfer=True)
    put(a.root, "var/log/ipoffice/app.log", "first\nsecond\n")
    put(a.root, "var/log/ipoffice/other.txt", "not collected\n")
    a.start()
    a.wait_connected()
    wait_until(lambda: a.status()["logs"].get("collected_lines") == 2, 15,
               "the first lines collected")
    app = os.path.join(a.root, "var/log/ipoffice/app.log")
    with open(app, "a") as f:
        f.write("third\n")
    os.rename(app, app + ".1")
    with open(app + ".1", "a") as f:
        f.write("fourth, written before the reopen\n")
    put(a.root, "var/log/ipoffice/app.log", "fifth, in the new file\n")
    wait_until(lambda: a.status()["logs"].get("collected_lines") == 5, 15,
               "the rotated lines collected")
    jid = job(sim, "fetch_logs")
    assert wait_final(sim, jid)["state"] == "succeeded"
    assert stored_lines(sim) == ["var/log/ipoffice/app.log: " + x for x in
                                 ("first", "second", "third",
                                  "fourth, written before the reopen",
                                  "fifth, in the new file")]

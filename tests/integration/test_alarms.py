"""Alarms (PROTOCOL.md 2.7, REQUIREMENTS 9) and the status COM's customer
list shows (2.4): the PBX raises and clears alarms through `comagent
alarm`; COM hears each, the whole set after a reconnect, and cannot clear
one still active; the set survives a restart; bad input is refused with
nothing changed. The status carries the servers' states, the last
operation, alarm counts and the local reasons, and changes with them."""
import json
import os
import socket

from conftest import DEFAULT_CUSTOMER, ctl, wait_until

C, S = "C1001", "pbx-hq"


def restart(a):
    a.stop()
    a.proc = None
    a.start()


def raise_alarm(a, aid, text="trunk 3 down", typ="Trunk", sev="major"):
    return a.cli("alarm", "raise", "--type", typ, "--severity", sev,
                 "--id", aid, text)


def sim_alarm(sim, aid):
    return next((e for e in sim.alarms(C, S) if e["id"] == aid), None)


def test_raise_dedup_clear_reach_com(comsim, agent):
    sim = comsim()
    a = agent(sim)
    a.wait_connected(20)
    r = raise_alarm(a, "trunk-3")
    assert r.returncode == 0 and "count 1" in r.stdout, r
    wait_until(lambda: sim_alarm(sim, "trunk-3"), 10, "the alarm at COM")
    e = sim_alarm(sim, "trunk-3")
    assert (e["type"], e["severity"], e["text"], e["count"], e["active"]) == \
        ("Trunk", "major", "trunk 3 down", 1, True), e

    # The same id again: one entry, counted, its last time and text updated.
    r = raise_alarm(a, "trunk-3", "trunk 3 down again", sev="critical")
    assert r.returncode == 0 and "count 2" in r.stdout, r
    wait_until(lambda: sim_alarm(sim, "trunk-3")["count"] == 2, 10,
               "the repeated alarm counted at COM")
    e = sim_alarm(sim, "trunk-3")
    assert e["severity"] == "critical" and e["text"] == "trunk 3 down again"
    assert e["last"] >= e["first"]
    assert len(sim.alarms(C, S)) == 1

    raise_alarm(a, "qos-1", "jitter high", "QoS", "warning")
    raise_alarm(a, "cfg-1", "config changed", "Configuration", "minor")
    lst = json.loads(a.cli("alarm", "list", "--json").stdout)["alarms"]
    assert [x["id"] for x in lst] == ["trunk-3", "qos-1", "cfg-1"]
    wait_until(lambda: len(sim.alarms(C, S)) == 3, 10, "three alarms at COM")
    # COM lists them by type, then severity.
    assert [e["type"] for e in sim.alarms(C, S)] == \
        ["Configuration", "Trunk", "QoS"]
    st = a.status()
    assert st["alarms"] == {"critical": 1, "major": 0, "minor": 1,
                            "warning": 1}, st
    wait_until(lambda: (sim.agent(C, S)["status"] or {}).get("alarms", {})
               .get("warning") == 1, 10, "the counts in COM's status")

    # COM cannot clear an active alarm; the agent says why.
    code, ans = sim.alarm_clear(C, S, "qos-1")
    assert code == 409 and ans["reason"] == "active", (code, ans)
    assert sim_alarm(sim, "qos-1")["active"]

    r = a.cli("alarm", "clear", "--id", "qos-1")
    assert r.returncode == 0, r
    wait_until(lambda: not sim_alarm(sim, "qos-1")["active"], 10,
               "the clear at COM")
    # Cleared on the system: now COM may remove it from its list.
    code, ans = sim.alarm_clear(C, S, "qos-1")
    assert code == 200, (code, ans)
    assert sim_alarm(sim, "qos-1") is None
    r = a.cli("alarm", "clear", "--id", "qos-1")
    assert r.returncode == 1 and "no active alarm qos-1" in r.stderr, r


def test_resync_after_reconnect_and_restart(comsim, agent):
    sim = comsim()
    a = agent(sim)
    a.wait_connected(20)
    for i in range(3):
        assert raise_alarm(a, "link-%d" % i, "link %d lost" % i,
                           "Link").returncode == 0
    wait_until(lambda: len(sim.alarms(C, S)) == 3, 10, "three alarms at COM")

    # Changes while the link is down reach COM by the next link's sync:
    # link-0 cleared, link-3 raised, link-1 repeated.
    # COM takes the WebSocket but never answers hello: no link until the
    # record is restored, whatever the agent's retry timing.
    sim.admin("POST", "/customers", dict(DEFAULT_CUSTOMER, on_hello="ignore"))
    sim.admin("POST", "/drop", {"customer": C, "system": S})
    wait_until(lambda: not sim.connected(), 10, "the link dropped")
    assert a.cli("alarm", "clear", "--id", "link-0").returncode == 0
    assert raise_alarm(a, "link-3", "link 3 lost", "Link").returncode == 0
    assert raise_alarm(a, "link-1", "link 1 lost", "Link").returncode == 0
    seq = sim.last_seq()
    sim.admin("POST", "/customers", dict(DEFAULT_CUSTOMER))
    sync = wait_until(lambda: sim.events("alarm_sync", seq), 20,
                      "the alarm sync on the new link")
    assert sync[-1]["active"] == ["link-1", "link-2", "link-3"]
    act = {e["id"]: e for e in sim.alarms(C, S) if e["active"]}
    assert sorted(act) == ["link-1", "link-2", "link-3"]
    assert act["link-1"]["count"] == 2
    assert not sim_alarm(sim, "link-0")["active"]

    # A restart keeps the set, first times and counts included.
    before = json.loads(a.cli("alarm", "list", "--json").stdout)["alarms"]
    restart(a)
    seq = sim.last_seq()
    a.wait_connected(20)
    after = json.loads(a.cli("alarm", "list", "--json").stdout)["alarms"]
    assert after == before
    sync = wait_until(lambda: sim.events("alarm_sync", seq), 20,
                      "the sync after the restart")
    assert sync[-1]["active"] == ["link-1", "link-2", "link-3"]


def test_bad_alarm_input_refused(comsim, agent):
    sim = comsim()
    a = agent(sim)
    a.wait_connected(20)
    assert raise_alarm(a, "good-1").returncode == 0
    state = os.path.join(a.root, "var/lib/comagent/alarms")
    with open(state, "rb") as f:
        before = f.read()

    usage = [
        ("raise", "--type", "Nonsense", "--severity", "major", "--id", "x",
         "t"),
        ("raise", "--type", "Trunk", "--severity", "loud", "--id", "x", "t"),
        ("raise", "--type", "Trunk", "--severity", "major", "--id", "x"),
        ("raise", "--type", "Trunk", "--id", "x", "t"),
        ("raise", "--type", "Trunk", "--severity", "major", "--id", "a b",
         "t"),
        ("raise", "--type", "Trunk", "--severity", "major", "--id", "x",
         "two\nlines"),
        ("raise", "--type", "Trunk", "--severity", "major", "--id", "x",
         "y" * 256),
        ("clear",),
        ("frobnicate",),
    ]
    for args in usage:
        r = a.cli("alarm", *args)
        assert r.returncode == 2, (args, r)
    # What only the agent can judge: it says why, exit 1.
    refused = [
        ("raise", "--type", "Trunk", "--severity", "major", "--id", "bad/id",
         "t"),
        ("raise", "--type", "Trunk", "--severity", "major", "--id", "x" * 65,
         "t"),
        ("raise", "--type", "Trunk", "--severity", "major", "--id", "x",
         "tab\there"),
        ("clear", "--id", "never-raised"),
    ]
    for args in refused:
        r = a.cli("alarm", *args)
        assert r.returncode == 1 and r.stderr.startswith("comagent: "), \
            (args, r)
    # Straight to the socket: invalid UTF-8 and control bytes.
    for req in (b"alarm raise Trunk major x \xff\xfe",
                b"alarm raise Trunk major x bell\x07",
                b"alarm raise Trunk major",
                b"alarm raise Trunk major  text"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(os.path.join(a.root, "run", "comagent", "comagent.sock"))
        s.sendall(req + b"\n")
        out = s.recv(4096).decode()
        s.close()
        assert out.startswith("error: "), (req, out)
    with open(state, "rb") as f:
        assert f.read() == before
    assert [e["id"] for e in sim.alarms(C, S)] == ["good-1"]

    # The cap: 64 active, the 65th refused, a repeat still counted.
    for i in range(63):
        assert ctl(a, "alarm raise Service minor svc-%d s" % i).startswith(
            "ok"), i
    out = ctl(a, "alarm raise Service minor svc-x s")
    assert out.startswith("error: 64 alarms are active"), out
    assert ctl(a, "alarm raise Trunk major good-1 again") == "ok 2\n"

    # A damaged file: bad lines reported and skipped, good ones kept.
    a.stop()
    a.proc = None
    with open(state, "ab") as f:
        f.write(b"garbage line\n")
        f.write(b"zz\tTrunk\tmajor\t5\t4\t1\tlast before first\n")
    a.start()
    a.wait_connected(20)
    assert len(json.loads(a.cli("alarm", "list", "--json").stdout)
               ["alarms"]) == 64
    log = a.log()
    assert "alarms:65: expected 7 tab-separated fields; line skipped" in log
    assert "alarms:66: bad first/last time; line skipped" in log


def test_alarm_needs_running_agent(comsim, agent):
    sim = comsim()
    a = agent(sim, start=False)
    r = raise_alarm(a, "x-1")
    assert r.returncode == 1, r
    assert not os.path.exists(os.path.join(a.root, "var/lib/comagent/alarms"))


def test_status_reports_health_and_changes(comsim, agent, tcp_server):
    sim = comsim()
    branch = tcp_server()
    a = agent(sim, {"system": {"probe_interval": "1s"},
                    "services": {"webmanager": str(branch.port)},
                    "network": {"pbx-branch1": "127.0.0.1",
                                "pbx-branch2": "127.0.0.2"}})
    a.wait_connected(20)

    def com_status():
        return sim.agent(C, S)["status"] or {}
    # Both probed on the same port; only 127.0.0.1 has the listener.
    wait_until(lambda: com_status().get("servers") ==
               {"pbx-branch1": "up", "pbx-branch2": "down"}, 15,
               "the servers' states at COM")
    st = com_status()
    assert st["service_user"] == "ok"
    # Nothing turned on yet: remote operations are not allowed.
    assert st["reasons"] == ["remote_ops_not_allowed"]
    row = sim.customer_list(C, S)
    assert row["state"] == "amber", row
    assert row["message"] == "Remote operations not allowed", row

    # The PBX records its service user's state: COM hears the reasons.
    r = a.cli("service-user", "set", "state=locked",
              "missing=upgrade,monitor_read")
    assert r.returncode == 0 and "saved and reported" in r.stdout, r
    assert a.cli("settings", "set", "remoteupgrade=1").returncode == 0
    wait_until(lambda: com_status().get("reasons") ==
               ["user_locked", "upgrade_rights", "monitor_read_disabled"],
               10, "the reasons at COM")
    assert com_status()["service_user"] == "locked"
    assert sim.customer_list(C, S)["message"] == \
        "Service user temporarily locked"
    text = a.cli("status").stdout
    assert "Service user: locked" in text, text
    assert "To COM:      Upgrade rights not enabled" in text, text
    r = a.cli("service-user", "set", "state=sleepy")
    assert r.returncode == 2 and "state: 'sleepy'" in r.stderr, r
    r = a.cli("service-user", "set", "missing=upgrade,")
    assert r.returncode == 2, r
    assert a.cli("service-user", "show").stdout == \
        "state=locked\nmissing=upgrade,monitor_read\n"
    assert a.cli("service-user", "set", "state=ok", "missing=").returncode == 0
    wait_until(lambda: com_status().get("reasons") == [], 10,
               "no reasons left")

    # A server going down, a backup completing: the status follows.
    assert a.cli("settings", "set", "remoteupgrade=1").returncode == 0
    branch.stop()
    wait_until(lambda: com_status().get("servers", {}).get("pbx-branch1")
               == "down", 15, "branch1 down at COM")
    assert sim.customer_list(C, S)["state"] == "amber"
    sim.admin("POST", "/job", {"customer": C, "system": S, "op": "backup"})
    # (It fails: this test tree has nothing to back up.)
    wait_until(lambda: (com_status().get("last_operation") or {})
               .get("op") == "backup", 60, "the backup in the status")
    lo = com_status()["last_operation"]
    assert (lo["state"], lo["reason"]) == ("failed", "hook"), lo
    assert "Last op:     backup failed, hook" in a.cli("status").stdout

    # Offline: red, with COM's wording.
    a.stop()
    wait_until(lambda: sim.customer_list(C, S)["state"] == "red", 10,
               "red once the agent is gone")
    assert sim.customer_list(C, S)["message"].startswith(
        "Not reachable or offline for the last ")


def test_customer_list_green_and_refused(comsim, agent):
    sim = comsim()
    a = agent(sim, start=False)
    path = os.path.join(a.root, "var/lib/comagent/settings")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("remoteupgrade=1\n")
    assert sim.customer_list(C, S)["message"] == \
        "Waiting for initial connection"
    a.start()
    a.wait_connected(20)
    wait_until(lambda: sim.customer_list(C, S)["state"] == "green", 10,
               "green")
    assert sim.customer_list(C, S)["message"] == "Connection successful"
    b = agent(sim, system="pbx-x", password="wrong")
    wait_until(lambda: (sim.customer_list("C1001", "pbx-x") or {})
               .get("state") == "red", 15, "the refused system red")
    row = sim.customer_list("C1001", "pbx-x")
    assert row["message"] in ("Authorization failed", "Not reachable / "
                              "not a valid primary IP Office"), row
    b.stop()


def test_com_alarm_clear_answers(comsim, agent):
    """COM's alarm.clear: an id the system does not have is ok; one
    without an id is malformed; the agent's set never changes."""
    sim = comsim()
    a = agent(sim)
    a.wait_connected(20)
    assert raise_alarm(a, "svc-1", "service down", "Service").returncode == 0
    seq = sim.last_seq()
    sim.send({"type": "alarm.clear", "id": 900001, "alarm": "never-raised"})
    m = sim.wait_message(lambda m: m["type"] == "alarm.clear.result" and
                         m.get("re") == 900001, seq, 10, "the answer")
    assert (m["ok"], m["alarm"]) == (True, "never-raised"), m
    sim.send({"type": "alarm.clear", "id": 900002})
    m = sim.wait_message(lambda m: m["type"] == "alarm.clear.result" and
                         m.get("re") == 900002, seq, 10, "the answer")
    assert (m["ok"], m["reason"]) == (False, "malformed"), m
    sim.send({"type": "alarm.clear", "id": 900003, "alarm": "svc-1"})
    m = sim.wait_message(lambda m: m["type"] == "alarm.clear.result" and
                         m.get("re") == 900003, seq, 10, "the answer")
    assert (m["ok"], m["reason"]) == (False, "active"), m
    lst = json.loads(a.cli("alarm", "list", "--json").stdout)["alarms"]
    assert [x["id"] for x in lst] == ["svc-1"]


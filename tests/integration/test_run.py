"""The daemon's process life: --daemon, one instance per control socket,
its own log file, the version it reports."""
import json
import os
import signal
import subprocess

from conftest import COMAGENT_BIN, agent_env, sanitizer_report, wait_until


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of ours would still answer kill(0); it is gone for us then.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_daemon_mode(comsim, agent, tmp_path):
    """`run --daemon` returns 0 once the agent is serving, the detached agent
    connects and answers status, and SIGTERM stops it cleanly."""
    sim = comsim()
    a = agent(sim, start=False)
    asan_dir = tmp_path / "asan"
    asan_dir.mkdir()
    env = agent_env()
    # The daemon's stderr is /dev/null: sanitizer reports go to files.
    env["ASAN_OPTIONS"] = "detect_leaks=1:log_path=%s/report" % asan_dir
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:log_path=%s/ubsan" % asan_dir
    r = subprocess.run([COMAGENT_BIN, "run", "--daemon", "-c", a.ini],
                       capture_output=True, text=True, timeout=20, env=env)
    assert r.returncode == 0, r.stderr

    def connected():
        s = a.cli("status", "--json")
        return json.loads(s.stdout) if s.returncode == 0 and \
            '"code":"connected"' in s.stdout else None
    st = wait_until(connected, 15, "the daemon connected")
    pid = st["pid"]
    assert pid != os.getpid() and _alive(pid)
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not _alive(pid), 10, "the daemon to exit")
    log = open(os.path.join(a.root, "var/log/comagent/comagent.log")).read()
    assert "Connection successful" in log and "main: stopped" in log
    reports = os.listdir(asan_dir)
    assert not reports, "sanitizer reports: %s" % [
        open(asan_dir / f).read()[:2000] for f in reports]
    # the daemon closed its link with 1000 on the way out
    wait_until(lambda: [e for e in sim.events("close") if e.get("code") == 1000],
               5, "a 1000 close from the agent")


def test_daemon_that_cannot_start_fails_visibly(comsim, agent):
    """A second agent on the same control socket must not detach and then
    die silently: the parent exits non-zero and says why."""
    sim = comsim()
    first = agent(sim)
    first.wait_connected(15)
    r = subprocess.run([COMAGENT_BIN, "run", "--daemon", "-c", first.ini],
                       capture_output=True, text=True, timeout=20,
                       env=agent_env())
    assert r.returncode == 1
    assert "in use" in r.stderr and "did not start" in r.stderr, r.stderr
    assert not sanitizer_report(r.stderr), r.stderr
    # the first agent is untouched and still answers on its socket
    assert first.status()["code"] == "connected"


def test_second_foreground_instance_refused(comsim, agent):
    sim = comsim()
    first = agent(sim)
    first.wait_connected(15)
    hellos = len(sim.hellos())
    r = subprocess.run([COMAGENT_BIN, "run", "-c", first.ini],
                       capture_output=True, text=True, timeout=20,
                       env=agent_env())
    assert r.returncode == 1
    assert "comagent.sock is in use" in r.stderr, r.stderr
    assert first.status()["code"] == "connected"
    # it gave up before dialling COM
    assert len(sim.hellos()) == hellos


def test_stale_control_socket_is_replaced(comsim, agent):
    """A socket file left by a killed agent (nobody listening) is stale."""
    sim = comsim()
    a = agent(sim)
    a.wait_connected(15)
    a.kill()
    a._logf.close()
    sock = os.path.join(a.root, "run/comagent/comagent.sock")
    assert os.path.exists(sock)
    a.proc = None
    a.start()
    st = a.wait_connected(15)
    assert st["attempts"] == 1


def test_log_file_and_level(comsim, agent):
    """The diagnostic log lands under root with time, level and module;
    level=error keeps info lines out."""
    sim = comsim()
    a = agent(sim, {"log": {"level": "info"}})
    a.wait_connected(15)
    path = os.path.join(a.root, "var/log/comagent/comagent.log")
    lines = open(path).read().splitlines()
    ok = [l for l in lines if "link: Connection successful" in l]
    assert ok and " info  link: " in ok[0]
    assert ok[0][:4].isdigit() and ok[0][10] == "T" and "Z " in ok[0]
    assert not [l for l in lines if " debug " in l]

    b = agent(sim, {"log": {"level": "error"}}, system="pbx-2",
              password="wrong")
    wait_until(lambda: sim.events("refused", system="pbx-2"), 10, "refusal")
    wait_until(lambda: "refused" in open(os.path.join(
        b.root, "var/log/comagent/comagent.log")).read(), 5, "error line")
    blines = open(os.path.join(b.root, "var/log/comagent/comagent.log")).read().splitlines()
    assert blines and all(" error " in l for l in blines), blines


def test_version_reported_from_platform_file(comsim, agent):
    """Without [system] version the linux profile reads ROOT/etc/ipoffice-version."""
    sim = comsim()
    a = agent(sim, start=False)
    os.makedirs(os.path.join(a.root, "etc"))
    with open(os.path.join(a.root, "etc/ipoffice-version"), "w") as f:
        f.write("12.1.0.0 build 42\n")
    a.start()
    st = a.wait_connected(15)
    assert st["version"] == "12.1.0.0 build 42"
    hello = sim.hellos()[-1]
    status = sim.wait_message(lambda m: m["type"] == "status")
    assert status["version"] == "12.1.0.0 build 42", (hello, status)


def test_job_journal_survives_restart(comsim, agent):
    """A final job state COM has not acknowledged is re-sent by the next
    agent process too, a repeated job id is answered from the journal
    (never run again), and `comagent jobs` lists it."""
    from conftest import DEFAULT_CUSTOMER
    rec = dict(DEFAULT_CUSTOMER, ack_jobs=False)
    sim = comsim([rec])
    a = agent(sim)
    a.wait_connected(15)
    j = sim.admin("POST", "/job", {"customer": "C1001", "system": "pbx-hq",
                                   "op": "frobnicate"})["job"]
    first = sim.wait_message(lambda m: m["type"] == "job.state" and m.get("job") == j,
                             what="job.state")
    assert first["state"] == "rejected" and first["reason"] == "unsupported"
    r = a.cli("jobs", "--json")
    assert r.returncode == 0, r.stderr
    # COM's jobs; the first connect's custom-files refresh is the agent's own
    listed = [x for x in json.loads(r.stdout)["jobs"] if not x["local"]]
    assert [(x["job"], x["op"], x["state"], x["acked"]) for x in listed] == \
        [(j, "frobnicate", "rejected", False)]

    a.stop()
    a.proc, a.rc = None, None       # teardown checks the second process too
    a.start()
    seq = sim.last_seq()
    a.wait_connected(15)
    again = sim.wait_message(lambda m: m["type"] == "job.state" and m.get("job") == j,
                             seq, what="the journaled state re-sent by the new process")
    assert (again["state"], again["reason"]) == ("rejected", "unsupported")

    # acknowledged now; the same job id again is answered, not re-run
    sim.admin("POST", "/customers", dict(rec, ack_jobs=True))
    seq = sim.last_seq()
    sim.admin("POST", "/job", {"customer": "C1001", "system": "pbx-hq",
                               "op": "restore", "job": j})
    dup = sim.wait_message(lambda m: m["type"] == "job.state" and m.get("job") == j,
                           seq, what="the answer to a repeated job id")
    assert dup["message"] == first["message"]      # the first job's record, not a restore
    wait_until(lambda: [x for x in json.loads(a.cli("jobs", "--json").stdout)["jobs"]
                        if x["job"] == j][0]["acked"],
               5, "the journal to record COM's ack")
    assert "not yet acknowledged" not in a.cli("jobs").stdout

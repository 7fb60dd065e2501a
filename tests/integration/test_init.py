"""config/comagent.init: the busybox-style init script of the appliance,
driven with the host's start-stop-daemon (same options as busybox's)."""
import os
import subprocess

from conftest import COMAGENT_BIN, agent_env, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
INIT = os.path.join(HERE, "..", "..", "config", "comagent.init")


def init(a, *args):
    env = agent_env()
    env.update(COMAGENT_BIN=COMAGENT_BIN, COMAGENT_CONF=a.ini,
               COMAGENT_PIDFILE=os.path.join(a.root, "comagent.pid"))
    return subprocess.run(["sh", INIT, *args], capture_output=True, text=True,
                          env=env, timeout=30, stdin=subprocess.DEVNULL)


def test_init_script_start_status_stop(comsim, agent):
    sim = comsim()
    a = agent(sim, start=False)
    r = init(a, "status")
    assert r.returncode == 3 and "not running" in r.stdout
    r = init(a, "start")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "configuration OK" in r.stdout
    pid = int(open(os.path.join(a.root, "comagent.pid")).read())
    try:
        wait_until(lambda: (sim.agent("C1001", "pbx-hq") or {}).get("connected"),
                   15, "the agent started by the init script to connect")
        r = init(a, "start")
        assert r.returncode == 0 and "already running" in r.stdout
        r = init(a, "status")
        assert r.returncode == 0 and "Connection successful" in r.stdout, r.stdout
    finally:
        r = init(a, "stop")
    assert r.returncode == 0 and "stopped" in r.stdout, r.stdout + r.stderr
    assert not os.path.exists("/proc/%d" % pid) or \
        open("/proc/%d/stat" % pid).read().split()[2] == "Z"
    assert not os.path.exists(os.path.join(a.root, "comagent.pid"))
    # The agent closed its link itself (SIGTERM), it was not killed.
    closes = [e for e in sim.events("close") if e.get("by") == "agent"]
    assert closes and closes[-1]["code"] == 1000, closes


def test_init_script_refuses_a_broken_configuration(comsim, agent):
    sim = comsim()
    a = agent(sim, start=False)
    with open(a.ini, "a") as f:
        f.write("[com]\nping_interval = forever\n")
    r = init(a, "start")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "ping_interval" in r.stderr
    assert not os.path.exists(os.path.join(a.root, "comagent.pid"))

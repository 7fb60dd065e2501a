"""The automatic daily backup (REQUIREMENTS 4): once a day between 02:00 and
04:00 system time, at this system's own minute, retried while another
operation runs, never twice a day — driven through the test build's
injected wall clock (COMAGENT_TEST_CLOCK, the control socket's
"test-clock" request) in the Europe/Berlin time zone."""
import datetime
import json
import os
import socket
import time
import zoneinfo

from conftest import ctl, wait_until
from test_jobs import (C, S, big_system, hold_credit, job, linux_system, start,
                       wait_final)

TZ = "Europe/Berlin"
ZONE = zoneinfo.ZoneInfo(TZ)


def local(y, m, d, hh, mm=0):
    return datetime.datetime(y, m, d, hh, mm, tzinfo=ZONE).timestamp()


def set_clock(a, at):
    """The agent's wall clock reads `at` now (it re-plans at once)."""
    assert ctl(a, "test-clock %d" % round(at - time.time())) == "ok\n"


def auto_jobs(a):
    r = a.cli("jobs", "--json")
    assert r.returncode == 0, r.stderr
    return [j for j in json.loads(r.stdout)["jobs"] if j["job"].startswith("auto-")]


def start_auto(agent, sim, at, setup=linux_system):
    return start(agent, sim, setup=setup, overrides={"jobs": {"auto_backup": "on"}},
                 env={"TZ": TZ, "COMAGENT_TEST_CLOCK": str(round(at - time.time()))})


def next_auto(a):
    return a.status()["next_auto_backup"]


def in_window(t):
    lt = datetime.datetime.fromtimestamp(t, ZONE)
    return datetime.time(2, 0) <= lt.time() < datetime.time(4, 0)


def automatic_uploads(sim):
    return [e for e in sim.events("upload_done", 0, C, S) if e.get("job") == ""]


def test_runs_once_a_day_and_not_again_after_restart(comsim, agent):
    sim = comsim()
    a = start_auto(agent, sim, local(2026, 12, 15, 1, 0))
    t1 = next_auto(a)
    assert in_window(t1), datetime.datetime.fromtimestamp(t1, ZONE)
    assert datetime.datetime.fromtimestamp(t1, ZONE).date() == datetime.date(2026, 12, 15)
    assert auto_jobs(a) == []
    set_clock(a, t1 + 1)
    wait_until(lambda: len(automatic_uploads(sim)) == 1, 30, "the automatic backup")
    stored = sim.backups(C, S)
    assert [b["kind"] for b in stored] == ["automatic"] and stored[0]["job"] == ""
    wait_until(lambda: auto_jobs(a) and auto_jobs(a)[0]["state"] == "succeeded",
               10, "the automatic job succeeded")
    # the next one is tomorrow's
    t2 = next_auto(a)
    assert datetime.datetime.fromtimestamp(t2, ZONE).date() == datetime.date(2026, 12, 16)
    assert in_window(t2)
    # later in the same window: nothing more
    set_clock(a, t1 + 1200)
    assert len(auto_jobs(a)) == 1
    # an agent restart the same day: nothing more either
    a.stop()
    a.proc = None
    a.rc = None
    a.env["COMAGENT_TEST_CLOCK"] = str(round(t1 + 1300 - time.time()))
    a.start()
    a.wait_connected()
    assert len(auto_jobs(a)) == 1
    assert next_auto(a) == t2
    # COM never hears of the agent's own job
    assert not [e for e in sim.events("message", 0, C, S)
                if e["msg"].get("type") == "job.state"
                and e["msg"].get("job", "").startswith("auto-")]
    # the next day it runs again
    set_clock(a, t2 + 1)
    wait_until(lambda: len(automatic_uploads(sim)) == 2, 30, "the second day's backup")
    assert len(auto_jobs(a)) == 2


def test_skipped_while_another_operation_runs_then_retried(comsim, agent):
    sim = comsim()
    a = start_auto(agent, sim, local(2026, 12, 15, 1, 0), setup=big_system)
    t1 = next_auto(a)
    hold_credit(sim, True)
    manual = job(sim, "backup")
    wait_until(lambda: a.status()["operation"] == "backup", 20, "the manual backup runs")
    set_clock(a, t1 + 1)
    assert auto_jobs(a) == []
    retry = next_auto(a)
    assert abs(retry - (t1 + 1 + 300)) <= 2, (retry, t1)
    hold_credit(sim, False)
    assert wait_final(sim, manual, timeout=60)["state"] == "succeeded"
    set_clock(a, retry + 1)
    wait_until(lambda: len(automatic_uploads(sim)) == 1, 60, "the retried automatic backup")
    assert len(auto_jobs(a)) == 1


def test_dst_days(comsim, agent):
    sim = comsim()
    # spring forward: 02:00-03:00 does not exist on 2027-03-28 in Berlin
    a = start_auto(agent, sim, local(2027, 3, 28, 1, 0))
    t = next_auto(a)
    lt = datetime.datetime.fromtimestamp(t, ZONE)
    assert lt.date() == datetime.date(2027, 3, 28) and in_window(t), lt
    set_clock(a, t + 1)
    wait_until(lambda: len(automatic_uploads(sim)) == 1, 30, "the spring-forward backup")
    # fall back: 02:00-03:00 twice on 2027-10-31; one run only
    t = None
    set_clock(a, local(2027, 10, 31, 1, 0))
    t = next_auto(a)
    lt = datetime.datetime.fromtimestamp(t, ZONE)
    assert lt.date() == datetime.date(2027, 10, 31) and in_window(t), lt
    set_clock(a, t + 1)
    wait_until(lambda: len(automatic_uploads(sim)) == 2, 30, "the fall-back backup")
    # the repeated hour: the same local times again, one hour later
    set_clock(a, t + 3600 + 1)
    assert len(auto_jobs(a)) == 2


def test_waits_for_an_upgrade_then_runs(comsim, agent):
    """An upgrade that is restarting the system holds the window; the
    automatic backup waits, and runs once the upgrade is settled."""
    from test_upgrade import RELEASE, library, simulate_reboot, trusted
    sim = comsim()
    library(sim, sizes=(4096,))
    a = start(agent, sim, overrides={"jobs": {"auto_backup": "on",
                                              "trusted_keys": trusted(sim)}},
              env={"TZ": TZ, "COMAGENT_TEST_CLOCK":
                   str(round(local(2026, 12, 15, 1, 0) - time.time()))})
    t1 = next_auto(a)
    jid = job(sim, "transfer_upgrade", release=RELEASE)
    wait_until(lambda: os.path.exists(os.path.join(a.root, "run/reboot-requested")),
               60, "the upgrade's reboot")
    assert a.status()["operation"] == "transfer_upgrade"
    set_clock(a, t1 + 1)
    assert auto_jobs(a) == []
    assert abs(next_auto(a) - (t1 + 301)) <= 2
    a.env["COMAGENT_TEST_CLOCK"] = str(round(t1 + 60 - time.time()))
    since = simulate_reboot(a, sim, jid)
    assert wait_final(sim, jid, since=since)["state"] == "succeeded"
    # back within the window, idle: it runs now
    wait_until(lambda: len(automatic_uploads(sim)) == 1, 30, "the automatic backup")
    assert len(auto_jobs(a)) == 1

"""Restore and software upgrade jobs (PROTOCOL.md 2.6, 3.4) end to end:
downloads from comsim with resume and verification, the signed manifest
with a list of trusted keys, the hooks on a temp root, and the simulated
system restart (the reboot hook writes ROOT/run/reboot-requested; the test
then restarts the agent, as the real reboot would)."""
import os

import pytest

from conftest import wait_until
from test_jobs import (C, S, job, linux_system, put, settings, sha, start,
                       states, wait_final)

RELEASE = "12.0.1.0"


def version(a):
    with open(os.path.join(a.root, "etc/ipoffice-version")) as f:
        return f.read().strip()


def reboot_requested(a):
    return os.path.exists(os.path.join(a.root, "run/reboot-requested"))


def simulate_reboot(a, sim, jid):
    """Wait for the job to ask for the restart, then restart the agent."""
    wait_until(lambda: reboot_requested(a), 60, "the reboot hook")
    wait_until(lambda: any(m.get("phase") == "restart" for m in states(sim, jid)),
               10, "the restart phase reported")
    a.stop()
    a.proc = None
    a.rc = None
    os.unlink(os.path.join(a.root, "run/reboot-requested"))
    since = sim.last_seq()
    a.start()
    a.wait_connected()
    return since


def keys(sim):
    return sim.admin("GET", "/signing_keys")


def library(sim, release=RELEASE, sizes=(1 << 20, 200000), profile="linux"):
    comps = [{"name": "ipoffice-%s-%d.bin" % (release, i), "size": n}
             for i, n in enumerate(sizes)]
    return sim.admin("POST", "/library", {"release": release, "profile": profile,
                                          "components": comps})


def trusted(sim):
    return " ".join(k["public_pem_path"] for k in keys(sim))


def upgrade_agent(agent, sim, trust=None, profile="linux"):
    return start(agent, sim, profile=profile,
                 overrides={"jobs": {"trusted_keys": trust or trusted(sim)}})


def staging(a):
    return os.path.join(a.root, "var/lib/comagent/staging")


def test_transfer_then_upgrade(comsim, agent):
    sim = comsim()
    mf = library(sim)
    a = upgrade_agent(agent, sim)
    jid = job(sim, "transfer", release=RELEASE)
    m = wait_final(sim, jid, timeout=60)
    assert m["state"] == "succeeded", m
    assert RELEASE in m["message"]
    for c in mf["components"]:
        with open(os.path.join(staging(a), c["name"]), "rb") as f:
            assert sha(f.read()) == c["sha256"]
    assert version(a) == "11.1.3.0"          # staged, not applied
    up = job(sim, "upgrade")
    since = simulate_reboot(a, sim, up)
    m = wait_final(sim, up, since=since, timeout=30)
    assert m["state"] == "succeeded", m
    assert version(a) == RELEASE
    assert RELEASE in m["message"]
    assert not [f for f in os.listdir(staging(a)) if not f.startswith(".")]
    assert a.status()["version"] == RELEASE


def test_transfer_upgrade_restarts_phones(comsim, agent):
    sim = comsim()
    library(sim)
    a = upgrade_agent(agent, sim)
    jid = job(sim, "transfer_upgrade", release=RELEASE, restart_phones=True)
    since = simulate_reboot(a, sim, jid)
    m = wait_final(sim, jid, since=since, timeout=30)
    assert m["state"] == "succeeded", m
    assert "phones restarted" in m["message"]
    assert os.path.exists(os.path.join(a.root, "run/ipoffice/restart-phones"))


def test_upgrade_rolled_back_is_a_failure(comsim, agent):
    sim = comsim()
    library(sim)
    a = upgrade_agent(agent, sim)
    jid = job(sim, "transfer_upgrade", release=RELEASE)
    wait_until(lambda: reboot_requested(a), 60, "the reboot hook")
    put(a.root, "etc/ipoffice-version", "11.1.3.0\n")   # the boot check rolled back
    since = simulate_reboot(a, sim, jid)
    m = wait_final(sim, jid, since=since)
    assert (m["state"], m["reason"]) == ("failed", "version"), m
    assert "11.1.3.0" in m["message"] and "rolled back" in m["message"]


@pytest.mark.parametrize("knobs,reason,words", [
    ({"tamper": True}, "signature", "signature does not verify"),
    ({"sign_with": "unknown"}, "signature", "signature does not verify"),
    ({"release": "10.0.0.1"}, "downgrade", "older than the running 11.1.3.0"),
])
def test_upgrade_refusals(comsim, agent, knobs, reason, words):
    sim = comsim()
    library(sim)
    library(sim, release="10.0.0.1", sizes=(1000,))
    a = upgrade_agent(agent, sim)
    body = {"release": RELEASE}
    body.update(knobs)
    jid = job(sim, "transfer_upgrade", **body)
    m = wait_final(sim, jid)
    assert (m["state"], m["reason"]) == ("rejected", reason), m
    assert words in m["message"], m
    assert version(a) == "11.1.3.0"
    assert sim.events("download_open", 0, C, S) == []


def test_downgrade_when_allowed(comsim, agent):
    sim = comsim()
    library(sim, release="10.0.0.1", sizes=(1000,))
    a = upgrade_agent(agent, sim)
    jid = job(sim, "transfer_upgrade", release="10.0.0.1", allow_downgrade=True)
    since = simulate_reboot(a, sim, jid)
    assert wait_final(sim, jid, since=since)["state"] == "succeeded"
    assert version(a) == "10.0.0.1"


def test_key_rotation(comsim, agent):
    sim = comsim()
    library(sim)
    old = trusted(sim)
    sim.admin("POST", "/signing_keys", {})
    both = trusted(sim)
    assert len(both.split()) == 2
    # trusting only the old key: the new signature is refused
    a = upgrade_agent(agent, sim, trust=old)
    jid = job(sim, "transfer", release=RELEASE)
    m = wait_final(sim, jid)
    assert (m["state"], m["reason"]) == ("rejected", "signature"), m
    a.stop()
    # old and new both trusted: accepted
    a2 = upgrade_agent(agent, sim, trust=both)
    jid = job(sim, "transfer", release=RELEASE)
    assert wait_final(sim, jid, timeout=60)["state"] == "succeeded"
    assert version(a2) == "11.1.3.0"


def test_tampered_component_and_truncated_image(comsim, agent):
    sim = comsim()
    library(sim)
    a = upgrade_agent(agent, sim)
    sim.admin("POST", "/download_fault", {"customer": C, "system": S, "corrupt": True})
    jid = job(sim, "transfer_upgrade", release=RELEASE)
    m = wait_final(sim, jid, timeout=60)
    assert (m["state"], m["reason"]) == ("failed", "corrupt"), m
    assert "SHA-256" in m["message"]
    assert version(a) == "11.1.3.0" and not reboot_requested(a)
    # the bad bytes are not kept for a resume
    assert not [f for f in os.listdir(staging(a)) if f.endswith(".part")]
    # an image shorter than its manifest says
    jid = job(sim, "transfer", release=RELEASE, component_patch={"size": (1 << 20) + 1})
    m = wait_final(sim, jid, timeout=60)
    assert m["state"] in ("failed", "rejected"), m
    assert m["reason"] in ("corrupt",), m
    assert version(a) == "11.1.3.0"


def test_not_enough_staging_space(comsim, agent):
    sim = comsim()
    library(sim)
    a = upgrade_agent(agent, sim)
    jid = job(sim, "transfer", release=RELEASE, component_patch={"size": 1 << 40})
    m = wait_final(sim, jid)
    assert (m["state"], m["reason"]) == ("failed", "space"), m
    assert "not enough space" in m["message"]
    assert sim.events("download_open", 0, C, S) == []
    assert version(a) == "11.1.3.0"


def test_download_resumes_after_link_drop(comsim, agent):
    sim = comsim()
    mf = library(sim, sizes=(3 << 20,))
    a = upgrade_agent(agent, sim)
    sim.admin("POST", "/download_fault", {"customer": C, "system": S,
                                          "drop_after": 1 << 20})
    jid = job(sim, "transfer", release=RELEASE)
    m = wait_final(sim, jid, timeout=60)
    assert m["state"] == "succeeded", m
    opens = sim.events("download_open", 0, C, S)
    assert len(opens) == 2 and opens[1]["offset"] >= 1 << 20, opens
    c = mf["components"][0]
    with open(os.path.join(staging(a), c["name"]), "rb") as f:
        assert sha(f.read()) == c["sha256"]


def test_upgrade_without_transfer(comsim, agent):
    sim = comsim()
    upgrade_agent(agent, sim)
    jid = job(sim, "upgrade")
    m = wait_final(sim, jid)
    assert (m["state"], m["reason"]) == ("rejected", "nothing_staged"), m


# ---- restore

def backed_up(agent, sim):
    """An agent whose configuration COM has a backup of: (agent, name)."""
    a = start(agent, sim)
    b = job(sim, "backup")
    assert wait_final(sim, b)["state"] == "succeeded"
    return a, sim.backups(C, S)[0]["name"]


def test_restore_after_simulated_restart(comsim, agent):
    sim = comsim()
    a, name = backed_up(agent, sim)
    cfg = os.path.join(a.root, "etc/ipoffice/config.xml")
    with open(cfg) as f:
        before = f.read()
    put(a.root, "etc/ipoffice/config.xml", "<config>broken</config>\n")
    sim.admin("POST", "/download_fault", {"customer": C, "system": S,
                                          "drop_after": 1000})
    jid = job(sim, "restore", backup=name)
    since = simulate_reboot(a, sim, jid)
    m = wait_final(sim, jid, since=since)
    assert m["state"] == "succeeded", m
    with open(cfg) as f:
        assert f.read() == before
    assert len(sim.events("download_open", 0, C, S)) == 2


def test_restore_hash_mismatch_refused(comsim, agent):
    sim = comsim()
    a, name = backed_up(agent, sim)
    put(a.root, "etc/ipoffice/config.xml", "<config>changed</config>\n")
    # COM's record says another hash than the job
    jid = job(sim, "restore", backup=name, args={"sha256": "0" * 64})
    m = wait_final(sim, jid)
    assert (m["state"], m["reason"]) == ("failed", "corrupt"), m
    # the bytes on the wire are wrong
    sim.admin("POST", "/download_fault", {"customer": C, "system": S, "corrupt": True})
    jid = job(sim, "restore", backup=name)
    m = wait_final(sim, jid)
    assert (m["state"], m["reason"]) == ("failed", "corrupt"), m
    assert "SHA-256" in m["message"]
    with open(os.path.join(a.root, "etc/ipoffice/config.xml")) as f:
        assert f.read() == "<config>changed</config>\n"
    assert not reboot_requested(a)


def test_restore_over_a_stale_longer_partial_file(comsim, agent):
    """A partial download longer than the file (left by another attempt):
    COM restarts at 0 and the agent overwrites from there, no gap."""
    sim = comsim()
    a, name = backed_up(agent, sim)
    sha256 = sim.backups(C, S)[0]["sha256"]
    part = os.path.join(a.root, "var/lib/comagent/work",
                        "restore-%s.%s.part" % (name, sha256[:16]))
    put(a.root, part, os.urandom(sim.backups(C, S)[0]["size"] + 5000))
    jid = job(sim, "restore", backup=name)
    since = simulate_reboot(a, sim, jid)
    assert wait_final(sim, jid, since=since)["state"] == "succeeded"
    opens = sim.events("download_open", 0, C, S)
    assert opens[0]["offset"] == 0


def test_reserved_component_name(comsim, agent):
    sim = comsim()
    sim.admin("POST", "/library", {"release": RELEASE, "profile": "linux",
                                   "components": [{"name": "manifest.json",
                                                   "size": 10}]})
    upgrade_agent(agent, sim)
    jid = job(sim, "transfer", release=RELEASE)
    m = wait_final(sim, jid)
    assert (m["state"], m["reason"]) == ("rejected", "invalid"), m
    assert "reserved" in m["message"]


def test_staged_files_checked_again(comsim, agent):
    """A second transfer of a staged release downloads nothing; a staged
    file changed since is found by the upgrade, removed, and nothing is
    applied."""
    sim = comsim()
    mf = library(sim)
    a = upgrade_agent(agent, sim)
    assert wait_final(sim, job(sim, "transfer", release=RELEASE),
                      timeout=60)["state"] == "succeeded"
    opened = len(sim.events("download_open", 0, C, S))
    assert opened == 2
    assert wait_final(sim, job(sim, "transfer", release=RELEASE),
                      timeout=60)["state"] == "succeeded"
    assert len(sim.events("download_open", 0, C, S)) == opened
    name = mf["components"][1]["name"]
    with open(os.path.join(staging(a), name), "r+b") as f:
        f.write(b"X")
    up = job(sim, "upgrade")
    m = wait_final(sim, up)
    assert (m["state"], m["reason"]) == ("failed", "corrupt"), m
    assert name in m["message"]
    assert not os.path.exists(os.path.join(staging(a), name))
    assert version(a) == "11.1.3.0" and not reboot_requested(a)
    # a transfer fetches just that one again
    assert wait_final(sim, job(sim, "transfer", release=RELEASE),
                      timeout=60)["state"] == "succeeded"
    assert [e["name"] for e in sim.events("download_open", 0, C, S)][opened:] == [name]


def test_transfer_resumes_after_agent_restart(comsim, agent):
    """The agent dies mid-download: the job is reported interrupted, and
    the same release transferred again resumes from the partial file (which
    the new process hashes first)."""
    sim = comsim()
    mf = library(sim, sizes=(3 << 20,))
    a = upgrade_agent(agent, sim)
    jid = job(sim, "transfer", release=RELEASE)
    wait_until(lambda: sim.events("download_open", 0, C, S), 30, "the download")
    # COM stops reading: no credit arrives, the download stalls at a window
    sim.admin("POST", "/stall", {"customer": C, "system": S})
    part = [None]

    def partial():
        for f in os.listdir(staging(a)):
            if f.endswith(".part") and os.path.getsize(os.path.join(staging(a), f)) > 0:
                part[0] = os.path.join(staging(a), f)
                return True
        return False
    wait_until(partial, 30, "a partial download")
    a.kill()
    a.proc = None
    a._logf.close()
    held = os.path.getsize(part[0])     # the stall goes with that link
    since = sim.last_seq()
    a.start()
    a.wait_connected()
    m = wait_final(sim, jid, since=since)
    assert (m["state"], m["reason"]) == ("failed", "interrupted"), m
    again = job(sim, "transfer", release=RELEASE)
    assert wait_final(sim, again, timeout=60)["state"] == "succeeded"
    opens = sim.events("download_open", since, C, S)
    assert opens[0]["offset"] == held > 0, (opens, held)
    c = mf["components"][0]
    with open(os.path.join(staging(a), c["name"]), "rb") as f:
        assert sha(f.read()) == c["sha256"]

"""Remote jobs (PROTOCOL.md 2.6): backup, restore, transfer and upgrade run
by the agent against comsim, with the repository's hooks on a temp root."""
import hashlib
import os

import pytest

from conftest import wait_until

C, S = "C1001", "pbx-hq"


def put(root, rel, data, mode=0o644):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    os.chmod(p, mode)
    return p


def settings(agent_, **kw):
    """Write the remote-operation settings before the agent starts."""
    text = "".join("%s=%d\n" % (k, 1 if v else 0) for k, v in kw.items())
    put(agent_.root, "var/lib/comagent/settings", text, 0o600)


def linux_system(a, files=None):
    files = files or {"etc/ipoffice/config.xml": "<config>hq</config>\n",
                      "etc/ipoffice/voicemail/vm.conf": "vm=1\n",
                      "var/lib/ipoffice/users.db": os.urandom(2048)}
    for rel, data in files.items():
        put(a.root, rel, data)
    put(a.root, "etc/ipoffice-version", "11.1.3.0\n")


def job(sim, op, **body):
    body.update({"customer": C, "system": S, "op": op})
    return sim.admin("POST", "/job", body)["job"]


def states(sim, jid, since=0):
    return [e["msg"] for e in sim.events("message", since, C, S)
            if e.get("msg", {}).get("type") == "job.state"
            and e["msg"].get("job") == jid]


def wait_final(sim, jid, timeout=30, since=0):
    def final():
        for m in states(sim, jid, since):
            if m["state"] in ("succeeded", "failed", "rejected"):
                return m
        return None
    return wait_until(final, timeout, "a final state of job %s" % jid)


def start(agent, sim, profile="linux", setup=linux_system, allow=True,
          overrides=None, **kw):
    o = {"system": {"profile": profile}}
    for sec, kv in (overrides or {}).items():
        o.setdefault(sec, {}).update(kv)
    a = agent(sim, o, start=False, **kw)
    settings(a, remoteupgrade=allow)
    setup(a)
    a.start()
    a.wait_connected()
    return a


def sha(data):
    return hashlib.sha256(data).hexdigest()


def test_backup_linux_end_to_end(comsim, agent):
    comsim = comsim()
    a = start(agent, comsim)
    jid = job(comsim, "backup")
    m = wait_final(comsim, jid)
    assert m["state"] == "succeeded", m
    seen = [x["state"] for x in states(comsim, jid)]
    assert seen[0] == "accepted" and "running" in seen, seen
    phases = [x.get("phase") for x in states(comsim, jid) if x["state"] == "running"]
    assert "backup" in phases and "upload" in phases, phases
    stored = comsim.backups(C, S)
    assert len(stored) == 1 and stored[0]["job"] == jid
    name = stored[0]["name"]
    assert name.startswith("backup-pbx-hq-") and name.endswith(".tar.gz")
    body = comsim.backup_file(C, S, name)
    assert sha(body) == stored[0]["sha256"]
    assert name in m["message"] and stored[0]["sha256"] in m["message"]
    # What the hook made, byte for byte: the hook is deterministic, so
    # running it again on the same files gives the same archive.
    out = os.path.join(a.root, "again.tar.gz")
    import subprocess
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C",
           "COMAGENT_ROOT": a.root, "COMAGENT_PROFILE": "linux",
           "COMAGENT_STATE_DIR": os.path.join(a.root, "var/lib/comagent"),
           "COMAGENT_JOB": "", "COMAGENT_BACKUP_DIRS": "etc/ipoffice var/lib/ipoffice"}
    subprocess.run([os.path.join(os.path.dirname(__file__), "..", "..", "scripts",
                                 "linux", "backup"), out], env=env, check=True,
                   capture_output=True)
    with open(out, "rb") as f:
        assert sha(f.read()) == stored[0]["sha256"]
    # the work file is gone, the journal has it
    assert not os.listdir(os.path.join(a.root, "var/lib/comagent/work"))
    r = a.cli("jobs", "--json")
    assert jid in r.stdout and "succeeded" in r.stdout


def test_backup_not_allowed_and_unknown_op(comsim, agent):
    comsim = comsim()
    start(agent, comsim, allow=False)
    jid = job(comsim, "backup")
    m = wait_final(comsim, jid)
    assert (m["state"], m["reason"]) == ("rejected", "not_allowed"), m
    assert "remoteupgrade" in m["message"]
    jid = job(comsim, "frobnicate")
    m = wait_final(comsim, jid)
    assert (m["state"], m["reason"]) == ("rejected", "unsupported"), m
    assert comsim.backups(C, S) == []


def big_system(a, size=3 << 20):
    # random bytes: gzip cannot shrink them, so the archive is about size
    linux_system(a, {"etc/ipoffice/config.xml": "<config/>\n",
                     "var/lib/ipoffice/media.bin": os.urandom(size)})


def test_backup_upload_resumes_after_link_drop(comsim, agent):
    sim = comsim()
    comsim_fault = {"drop_after": 1 << 20}
    sim.admin("POST", "/upload_fault", dict(comsim_fault, customer=C, system=S))
    start(agent, sim, setup=big_system)
    jid = job(sim, "backup")
    m = wait_final(sim, jid, timeout=60)
    assert m["state"] == "succeeded", m
    opens = sim.events("upload_open", 0, C, S)
    assert len(opens) == 2, opens
    assert opens[0]["offset"] == 0 and opens[1]["offset"] >= 1 << 20, opens
    stored = sim.backups(C, S)
    assert len(stored) == 1
    assert sha(sim.backup_file(C, S, stored[0]["name"])) == stored[0]["sha256"]
    assert stored[0]["size"] > 3 << 20


def hold_credit(sim, on):
    sim.admin("POST", "/upload_fault", {"customer": C, "system": S,
                                        "hold_credit": on})


def backup_held_in_upload(agent, sim):
    """An agent whose backup job is stuck in its upload (COM holds the
    credit): an operation in progress for as long as the test wants."""
    hold_credit(sim, True)
    a = start(agent, sim, setup=big_system)
    jid = job(sim, "backup")
    wait_until(lambda: any(x.get("phase") == "upload" for x in states(sim, jid)),
               30, "the backup's upload phase")
    return a, jid


def test_one_operation_at_a_time(comsim, agent):
    sim = comsim()
    a, first = backup_held_in_upload(agent, sim)
    assert a.status().get("operation", "backup") == "backup"
    for op, args in (("backup", {}), ("restore", {"backup": "x.tar.gz",
                                                 "sha256": "0" * 64})):
        second = job(sim, op, args=args)
        m = wait_final(sim, second)
        assert (m["state"], m["reason"]) == ("rejected", "busy"), m
        assert first in m["message"]
    hold_credit(sim, False)
    m = wait_final(sim, first, timeout=60)
    assert m["state"] == "succeeded", m
    # idle again: the next one runs
    third = job(sim, "backup")
    assert wait_final(sim, third, timeout=60)["state"] == "succeeded"


def test_agent_killed_mid_job_reports_once(comsim, agent):
    sim = comsim()
    a, jid = backup_held_in_upload(agent, sim)
    a.kill()
    a.proc = None
    a._logf.close()
    since = sim.last_seq()
    a.start()
    m = wait_final(sim, jid, since=since)
    assert (m["state"], m["reason"]) == ("failed", "interrupted"), m
    sim.barrier(since)
    finals = [x for x in states(sim, jid, since) if x["state"] == "failed"]
    assert len(finals) == 1, finals
    # the same job id again is answered from the journal, not run
    since = sim.last_seq()
    sim.admin("POST", "/job", {"customer": C, "system": S, "op": "backup",
                               "job": jid})
    m = wait_final(sim, jid, since=since)
    assert (m["state"], m["reason"]) == ("failed", "interrupted")
    assert sim.events("upload_open", since, C, S) == []


def ip500_system(a):
    put(a.root, "config/config.cfg", os.urandom(4096))
    put(a.root, "etc/ipoffice-version", "11.1.3.0\n")


def test_backup_ip500v2(comsim, agent):
    sim = comsim()
    start(agent, sim, profile="ip500v2", setup=ip500_system)
    jid = job(sim, "backup", args={"elements": ["config"]})
    m = wait_final(sim, jid)
    assert m["state"] == "succeeded", m
    stored = sim.backups(C, S)
    assert len(stored) == 1
    import io
    import tarfile
    body = sim.backup_file(C, S, stored[0]["name"])
    with tarfile.open(fileobj=io.BytesIO(body)) as t:
        assert t.getnames() == ["config/config.cfg"]
    # an element the IP500 V2 does not have: the hook says so
    jid = job(sim, "backup", args={"elements": ["voicemail"]})
    m = wait_final(sim, jid)
    assert (m["state"], m["reason"]) == ("failed", "hook"), m
    assert "unknown element" in m["message"]


def test_backup_bad_arguments(comsim, agent):
    sim = comsim()
    start(agent, sim)
    for args, words in (({"elements": ["../etc"]}, "args.elements[0]"),
                        ({"elements": ["a"] * 17}, "more than 16"),
                        ({"vmpro": "all"}, "args.vmpro")):
        jid = job(sim, "backup", args=args)
        m = wait_final(sim, jid)
        assert (m["state"], m["reason"]) == ("rejected", "invalid"), m
        assert words in m["message"], m
    assert sim.backups(C, S) == []


def test_scheduled_job_and_history(comsim, agent):
    """COM's scheduled job goes out when due; a paused one does not; the
    history shows what the agent reported, in COM's words."""
    import time
    sim = comsim()
    start(agent, sim)
    later = sim.admin("POST", "/job", {"customer": C, "system": S, "op": "backup",
                                       "at": time.time() + 3600})
    assert later["status"] == "scheduled"
    sim.admin("POST", "/job/pause", {"job": later["job"]})
    soon = sim.admin("POST", "/job", {"customer": C, "system": S, "op": "backup",
                                      "at": time.time() + 0.5})["job"]
    assert wait_final(sim, soon)["state"] == "succeeded"

    def history():
        return {j["job"]: j for j in sim.jobs(C, S)}
    wait_until(lambda: history()[soon]["status"] == "completed", 10, "completed")
    h = history()
    assert h[later["job"]]["status"] == "paused"
    assert [x["state"] for x in h[soon]["states"]][-1] == "succeeded"
    assert "upload" in [x.get("phase") for x in h[soon]["states"]]
    st, body = sim.admin_status("POST", "/job/pause", {"job": soon})
    assert st == 409
    sim.admin("POST", "/job/stop", {"job": later["job"]})
    assert history()[later["job"]]["status"] == "stopped"
    assert len(sim.backups(C, S)) == 1


def test_job_ids_the_journal_cannot_take(comsim, agent):
    """A job id with a control character, or one that is the agent's own:
    one answer, "invalid", nothing run."""
    sim = comsim()
    start(agent, sim)
    since = sim.last_seq()
    sim.send({"type": "job", "id": 77, "job": "J\u0001x", "op": "backup"})
    m = sim.wait_message(lambda m: m["type"] == "job.state" and m.get("re") == 77,
                         since)
    assert (m["state"], m["reason"]) == ("rejected", "invalid"), m
    assert "control" in m["message"] and "job" not in m
    sim.barrier(since)
    assert len([e for e in sim.events("message", since, C, S)
                if e["msg"].get("re") == 77]) == 1
    assert sim.events("upload_open", 0, C, S) == []


def test_interrupted_automatic_backup_stays_local(comsim, agent):
    """The agent's own job cut short by a restart is failed in its journal,
    and COM, which never sent it, never hears of it."""
    import json as json_
    sim = comsim()
    hold_credit(sim, True)
    a = start(agent, sim, setup=big_system)
    # an automatic job as the journal holds it mid-run
    a.stop()
    a.proc, a.rc = None, None
    put(a.root, "var/lib/comagent/jobs",
        '{"type":"job","id":1,"job":"auto-backup-2026-12-01","op":"backup",'
        '"state":"running","progress":60,"reason":"","message":"uploading",'
        '"created":1795000000,"updated":1795000001,"acked":false,'
        '"phase":"upload","target":"","phones":false,"local":true}\n', 0o600)
    since = sim.last_seq()
    a.start()
    a.wait_connected()
    sim.barrier(since)
    assert not [e for e in sim.events("message", since, C, S)
                if e["msg"].get("type") == "job.state"]
    jobs = json_.loads(a.cli("jobs", "--json").stdout)["jobs"]
    assert [(j["job"], j["state"], j["reason"], j["acked"]) for j in jobs] == \
        [("auto-backup-2026-12-01", "failed", "interrupted", True)]
    # COM cannot take over its id
    since = sim.last_seq()
    sim.admin("POST", "/job", {"customer": C, "system": S, "op": "backup",
                               "job": "auto-backup-2026-12-01"})
    m = wait_final(sim, "auto-backup-2026-12-01", since=since)
    assert (m["state"], m["reason"]) == ("rejected", "invalid"), m


def test_backup_with_voicemail(comsim, agent):
    """args.vmpro reaches the hook: "config" holds Voicemail Pro's files
    but not its messages."""
    import io
    import tarfile
    sim = comsim()

    def setup(a):
        linux_system(a)
        put(a.root, "opt/vmpro/callflow.db", "flows\n")
        put(a.root, "opt/vmpro/messages/m1.wav", b"RIFF")
    start(agent, sim, setup=setup)
    jid = job(sim, "backup", args={"vmpro": "config"})
    assert wait_final(sim, jid)["state"] == "succeeded"
    body = sim.backup_file(C, S, sim.backups(C, S)[0]["name"])
    with tarfile.open(fileobj=io.BytesIO(body)) as t:
        names = t.getnames()
    assert "opt/vmpro/callflow.db" in names
    assert not [n for n in names if "messages" in n]

"""Custom files (PROTOCOL.md 3.5, issue 6): CustomData.xml applied once at
the first connect, refreshes of the phone files and SIP templates from the
provider, reseller and system folders, hostile tars, power cuts, prune."""
import io
import json
import os
import random
import tarfile

import pytest

from conftest import DEFAULT_CUSTOMER, wait_until

C, S, R = "C1001", "pbx-hq", "R7"
PHONES, TEMPLATES = "CustomPhoneFiles.tar", "CustomTemplates.tar"
PHONE_DIR = "opt/ipoffice/system/primary"
TEMPLATE_DIR = "opt/ipoffice/system/primary/templates"

GOOD_XML = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<customdata version="1">\n'
            ' <security><centralmgmt>1</centralmgmt><remoteaccess>1</remoteaccess>'
            '<logtransfer>0</logtransfer></security>\n'
            ' <vmpro><backupconfig>1</backupconfig></vmpro>\n'
            '</customdata>\n')


def sim_with_reseller(comsim):
    return comsim(customers=[dict(DEFAULT_CUSTOMER, reseller=R)])


def ids(level):
    return {"provider": {}, "reseller": {"reseller": R},
            "system": {"customer": C, "system": S}}[level]


def put(sim, level, name, data=None, files=None):
    return sim.custom_file(level, name, data=data, files=files, **ids(level))


def put_raw(sim, level, name, data):
    """Past comsim's admin checks (its 10 MiB cap): straight into its tree."""
    sub = {"provider": "provider", "reseller": "resellers/" + R,
           "system": "customers/%s/%s" % (C, S)}[level]
    d = os.path.join(sim.dir, "custom", sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def settings_file(a, **kw):
    p = os.path.join(a.root, "var/lib/comagent/settings")
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write("".join("%s=%d\n" % (k, v) for k, v in kw.items()))


def custom_status(a):
    return a.status()["custom"]


def wait_custom(a, pred, what, timeout=20):
    return wait_until(lambda: (lambda c: c if pred(c) else None)(custom_status(a)),
                      timeout, what)


def first_done(a, timeout=20):
    """CustomData.xml settled and the first refresh over."""
    a.wait_connected()
    return wait_custom(a, lambda c: c["customdata"] != "pending" and
                       c["refresh"] in ("succeeded", "failed"),
                       "the first connect's custom files", timeout)


def tree(root, rel):
    """{name: bytes} of the regular files directly in root/rel."""
    d = os.path.join(root, rel)
    out = {}
    if not os.path.isdir(d):
        return out
    for n in sorted(os.listdir(d)):
        p = os.path.join(d, n)
        if os.path.isfile(p) and not os.path.islink(p):
            with open(p, "rb") as f:
                out[n] = f.read()
    return out


def job(sim, **args):
    return sim.admin("POST", "/job", {"customer": C, "system": S,
                                      "op": "refresh_custom", "args": args})["job"]


def wait_final(sim, jid, timeout=30):
    def final():
        for e in sim.events("message", 0, C, S):
            m = e.get("msg", {})
            if m.get("type") == "job.state" and m.get("job") == jid and \
                    m.get("state") in ("succeeded", "failed", "rejected"):
                return m
        return None
    return wait_until(final, timeout, "a final state of job %s" % jid)


def downloads(sim, since=0):
    return [(e["level"], e["name"]) for e in sim.events("custom_download", since)]


def manifest(a):
    r = a.cli("custom-files", "--json")
    assert r.returncode == 0, r.stderr
    return {(f["part"], f["name"]): f for f in json.loads(r.stdout)["files"]}


def tar_bytes(members):
    """members: (TarInfo kwargs incl. name, data bytes or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for kw, data in members:
            ti = tarfile.TarInfo(kw.pop("name"))
            for k, v in kw.items():
                setattr(ti, k, v)
            if data is not None:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            else:
                t.addfile(ti)
    return buf.getvalue()


# ---- first connect ---------------------------------------------------------

def test_customdata_applied_once_across_reconnects_and_restarts(comsim, agent):
    sim = sim_with_reseller(comsim)
    # The most specific folder's CustomData.xml applies: the reseller's.
    put(sim, "provider", "CustomData.xml", GOOD_XML.replace(">1<", ">0<").encode())
    put(sim, "reseller", "CustomData.xml", GOOD_XML.encode())
    put(sim, "provider", PHONES, files={"46xxspecials.txt": "SET A 1\n"})
    a = agent(sim, start=False)
    settings_file(a, remoteupgrade=1, logtransfer=1)
    a.start()
    a.wait_connected()
    c = first_done(a)
    assert c["customdata"] == "applied", c
    assert "reseller" in c["customdata_message"], c
    assert c["vmpro"] == "config"
    st = a.status()["settings"]
    assert st["centralmgmt"] and st["remoteaccess"] and not st["logtransfer"], st
    assert st["remoteupgrade"], st          # not named in the file: kept
    assert c["refresh"] == "succeeded", c   # then the first refresh ran
    assert tree(a.root, PHONE_DIR) == {"46xxspecials.txt": b"SET A 1\n"}
    # COM saw the outcome in the status message.
    sim_status = wait_until(lambda: (lambda s: s if s.get("customdata") == "applied"
                                     else None)(agent_status(sim)),
                            10, "customdata in COM's view of the status")
    assert sim_status["custom_refresh"] == "succeeded"
    cd_fetches = [d for d in downloads(sim) if d[1] == "CustomData.xml"]
    assert cd_fetches == [("reseller", "CustomData.xml")]

    # A technician changes a setting; COM's file changes too. Neither a
    # reconnect nor a restart nor a refresh loads CustomData.xml again.
    assert a.cli("settings", "set", "centralmgmt=0").returncode == 0
    put(sim, "reseller", "CustomData.xml", GOOD_XML.replace(">0<", ">1<").encode())
    sim.admin("POST", "/drop", {"customer": C, "system": S})
    restart(a)
    a.wait_connected()
    jid = job(sim)
    assert wait_final(sim, jid)["state"] == "succeeded"
    assert not a.status()["settings"]["centralmgmt"]
    assert not a.status()["settings"]["logtransfer"]
    assert [d for d in downloads(sim) if d[1] == "CustomData.xml"] == cd_fetches
    assert custom_status(a)["customdata"] == "applied"


def restart(a):
    a.stop()
    a.proc = None
    a.start()


def agent_status(sim):
    for ag in sim.admin("GET", "/agents"):
        if ag.get("customer") == C and ag.get("system") == S:
            return ag.get("status") or {}
    return {}


def test_no_customdata_is_none_and_a_list_failure_is_retried(comsim, agent):
    sim = comsim()
    sim.custom_list_fault(C, S, "error", count=1)
    a = agent(sim)
    a.wait_connected()
    c = wait_custom(a, lambda c: "unavailable" in c["customdata_message"] or
                    c["customdata"] != "pending", "the failed list")
    assert c["customdata"] == "pending", c
    # The next link asks again and settles it.
    sim.admin("POST", "/drop", {"customer": C, "system": S})
    c = first_done(a)
    assert c["customdata"] == "none", c
    assert c["refresh"] == "succeeded", c


BAD_XML = {
    "malformed": (b'<customdata version="1"><security></customdata>',
                  "XML syntax"),
    "version": (b'<customdata version="2"/>', "unsupported version"),
    "unknown_tag": (b'<customdata version="1"><security><frob>1</frob>'
                    b'</security></customdata>', "unknown element <frob>"),
    "value": (b'<customdata version="1"><security><remoteaccess>2'
              b'</remoteaccess></security></customdata>', "must be 0 or 1"),
    "entity_bomb": (b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
                    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>\n'
                    b'<customdata version="1"><security><remoteaccess>&lol3;'
                    b'</remoteaccess></security></customdata>', "DOCTYPE"),
    "huge": (b'<customdata version="1">' + b' ' * 70000 + b'</customdata>',
             "more than 65536"),
}


@pytest.mark.parametrize("case", sorted(BAD_XML))
def test_bad_customdata_applies_nothing(comsim, agent, case):
    data, why = BAD_XML[case]
    sim = comsim()
    put(sim, "system", "CustomData.xml", data)
    a = agent(sim, start=False)
    settings_file(a, remoteupgrade=1)
    a.start()
    a.wait_connected()
    c = first_done(a)
    assert c["customdata"] == "rejected", c
    assert why in c["customdata_message"], c
    st = a.status()["settings"]
    assert st == dict({k: False for k in st}, remoteupgrade=True), st
    assert c["vmpro"] == "none"
    wait_until(lambda: agent_status(sim).get("customdata") == "rejected" and
               why in agent_status(sim).get("customdata_message", ""),
               10, "the rejection in COM's view of the status")
    # Final: a restart does not fetch it again.
    n = len(downloads(sim))
    restart(a)
    a.wait_connected()
    sim.barrier(customer=C, system=S)
    assert custom_status(a)["customdata"] == "rejected"
    assert [d for d in downloads(sim)[n:] if d[1] == "CustomData.xml"] == []


# ---- refresh ---------------------------------------------------------------

def test_refresh_order_and_overwrite_over_three_levels(comsim, agent):
    sim = sim_with_reseller(comsim)
    put(sim, "provider", PHONES, files={"46xxspecials.txt": "provider\n",
                                        "a.png": "provider", "c.png": "provider"})
    put(sim, "reseller", PHONES, files={"a.png": "reseller", "b.png": "reseller"})
    put(sim, "system", PHONES, files={"b.png": "system"})
    put(sim, "provider", TEMPLATES, files={"t1.xml": "<p/>"})
    put(sim, "system", TEMPLATES, files={"t1.xml": "<s/>", "t2.xml": "<s2/>"})
    a = agent(sim)
    first_done(a)
    since = len(sim.events())
    jid = job(sim)
    m = wait_final(sim, jid)
    assert m["state"] == "succeeded", m
    assert tree(a.root, PHONE_DIR) == {"46xxspecials.txt": b"provider\n",
                                       "a.png": b"reseller", "b.png": b"system",
                                       "c.png": b"provider"}
    assert tree(a.root, TEMPLATE_DIR) == {"t1.xml": b"<s/>", "t2.xml": b"<s2/>"}
    assert downloads(sim, since) == [("provider", PHONES), ("provider", TEMPLATES),
                                     ("reseller", PHONES), ("system", PHONES),
                                     ("system", TEMPLATES)]
    mf = manifest(a)
    assert {k: v["level"] for k, v in mf.items()} == {
        ("phones", "46xxspecials.txt"): "provider", ("phones", "a.png"): "reseller",
        ("phones", "b.png"): "system", ("phones", "c.png"): "provider",
        ("templates", "t1.xml"): "system", ("templates", "t2.xml"): "system"}
    assert all(v["shipped"] for v in mf.values())
    phases = [e["msg"].get("phase") for e in sim.events("message", since, C, S)
              if e["msg"].get("type") == "job.state" and e["msg"].get("job") == jid]
    assert "download" in phases and "apply" in phases
    text = a.cli("custom-files").stdout
    assert "reseller" in text and "a.png" in text


def test_missing_levels_are_fine_and_local_refresh_shows_progress(comsim, agent):
    sim = sim_with_reseller(comsim)
    a = agent(sim)
    first_done(a)
    assert tree(a.root, PHONE_DIR) == {}
    put(sim, "system", PHONES, files={"46xxspecials.txt": "x\n", "logo.png": "L"})
    r = a.cli("refresh-custom-files", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "started" in r.stdout
    assert "CustomPhoneFiles.tar (system)" in r.stdout
    assert "succeeded: installed 2 phone files and 0 templates" in r.stdout
    assert tree(a.root, PHONE_DIR) == {"46xxspecials.txt": b"x\n", "logo.png": b"L"}
    assert custom_status(a)["refresh"] == "succeeded"


def test_template_limit_and_46xxsettings(comsim, agent):
    sim = sim_with_reseller(comsim)
    a = agent(sim)
    first_done(a)
    put(sim, "provider", TEMPLATES, files={"t%d.xml" % i: "<t/>" for i in range(3)})
    put(sim, "system", TEMPLATES, files={"s%d.xml" % i: "<t/>" for i in range(2)})
    put(sim, "provider", PHONES, files={"46xxspecials.txt": "ok\n"})
    m = wait_final(sim, job(sim))
    assert m["state"] == "failed" and m["reason"] == "refused", m
    assert "5 SIP templates" in m["message"], m
    assert tree(a.root, TEMPLATE_DIR) == {}
    assert tree(a.root, PHONE_DIR) == {"46xxspecials.txt": b"ok\n"}  # phones went in

    sim.delete_custom_file("system", TEMPLATES, **ids("system"))
    put(sim, "reseller", PHONES, files={"46xxsettings.txt": "generated!\n"})
    m = wait_final(sim, job(sim))
    assert m["state"] == "failed" and m["reason"] == "refused", m
    assert "46xxsettings.txt" in m["message"] and "reseller" in m["message"], m
    assert tree(a.root, PHONE_DIR) == {"46xxspecials.txt": b"ok\n"}
    assert sorted(tree(a.root, TEMPLATE_DIR)) == ["t0.xml", "t1.xml", "t2.xml"]


def hostile_cases():
    big = b"x" * (10 * 1024 * 1024 + 1)
    many = tar_bytes([({"name": "f%06d.png" % i}, b"") for i in range(100000)])
    over = tar_bytes([({"name": "g%04d.png" % i}, b"") for i in range(1100)])
    gz = io.BytesIO()
    import gzip
    with gzip.GzipFile(fileobj=gz, mode="wb") as g:
        g.write(tar_bytes([({"name": "zero.png"}, b"\0" * (50 * 1024 * 1024))]))
    return {
        "dotdot": ([("reseller", tar_bytes([({"name": "../escape.txt"}, b"x")]))],
                   "not a plain file name"),
        "absolute": ([("reseller", tar_bytes([({"name": "/tmp/abs.txt"}, b"x")]))],
                     "not a plain file name"),
        "symlink_then_write": ([("reseller", tar_bytes([
            ({"name": "link.png", "type": tarfile.SYMTYPE, "linkname": "/tmp"}, None),
            ({"name": "link.png"}, b"through")]))], "not a regular file"),
        "symlink_across_levels": ([
            ("provider", tar_bytes([({"name": "x.png", "type": tarfile.SYMTYPE,
                                      "linkname": "../../../../etc/passwd"}, None)])),
            ("reseller", tar_bytes([({"name": "x.png"}, b"owned")]))],
            "not a regular file"),
        "hardlink": ([("reseller", tar_bytes([
            ({"name": "h.png", "type": tarfile.LNKTYPE, "linkname": "/etc/passwd"},
             None)]))], "not a regular file"),
        "device": ([("reseller", tar_bytes([
            ({"name": "dev.png", "type": tarfile.CHRTYPE, "devmajor": 1,
              "devminor": 3}, None)]))], "not a regular file"),
        "too_big": ([("reseller", big)], "more than 10485760"),
        "members_100000": ([("reseller", many)], "more than 10485760"),
        "members_over_cap": ([("reseller", over)], "more than 1000 members"),
        "gzip_bomb": ([("reseller", gz.getvalue())], "not a plain tar"),
    }


HOSTILE = hostile_cases()


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tar_refused_and_previous_files_untouched(comsim, agent, case,
                                                          tmp_path):
    tars, why = HOSTILE[case]
    sim = sim_with_reseller(comsim)
    put(sim, "provider", PHONES, files={"46xxspecials.txt": "old\n", "a.png": "old"})
    put(sim, "system", TEMPLATES, files={"t.xml": "<t/>"})
    a = agent(sim)
    first_done(a)
    before = tree(a.root, PHONE_DIR)
    assert before == {"46xxspecials.txt": b"old\n", "a.png": b"old"}
    before_manifest = manifest(a)
    # The new set would change the provider's file too: nothing of it may land.
    put(sim, "provider", PHONES, files={"46xxspecials.txt": "new\n", "a.png": "new"})
    put(sim, "system", TEMPLATES, files={"t.xml": "<new/>"})
    for level, data in tars:
        put_raw(sim, level, PHONES, data)
    m = wait_final(sim, job(sim), timeout=60)
    assert m["state"] == "failed" and m["reason"] == "refused", m
    assert why in m["message"], m
    assert "CustomPhoneFiles.tar (" in m["message"], m
    assert tree(a.root, PHONE_DIR) == before
    assert not os.path.lexists(os.path.join(a.root, "opt/ipoffice/system/escape.txt"))
    assert not os.path.exists("/tmp/abs.txt") or case != "absolute"
    assert not [n for n in os.listdir(os.path.join(a.root, PHONE_DIR))
                if n.startswith(".comagent")]
    # The templates part was fine and went in.
    assert tree(a.root, TEMPLATE_DIR) == {"t.xml": b"<new/>"}
    mf = manifest(a)
    assert {k: v for k, v in mf.items() if k[0] == "phones"} == \
        {k: v for k, v in before_manifest.items() if k[0] == "phones"}
    c = custom_status(a)
    assert c["refresh"] == "failed" and why in c["refresh_message"], c


# ---- power cuts --------------------------------------------------------------

def two_sets(sim, big):
    old = {"46xxspecials.txt": "old\n", "a.png": "old-a", "b.png": "old-b"}
    new = {"46xxspecials.txt": "new\n", "a.png": "new-a" + big, "c.png": "new-c"}
    return old, new


@pytest.mark.parametrize("point", ["staged", "journaled", "moved"])
def test_power_cut_at_each_install_step_gives_old_or_new(comsim, agent, point):
    sim = sim_with_reseller(comsim)
    old, new = two_sets(sim, "")
    put(sim, "provider", PHONES, files=old)
    a = agent(sim)
    first_done(a)
    assert tree(a.root, PHONE_DIR) == {k: v.encode() for k, v in old.items()}
    put(sim, "provider", PHONES, files={"46xxspecials.txt": new["46xxspecials.txt"]})
    put(sim, "system", PHONES, files={k: v for k, v in new.items()
                                      if k != "46xxspecials.txt"})
    a.env = {"COMAGENT_TEST_CRASH": point}
    restart(a)
    a.wait_connected()
    job(sim)
    wait_until(lambda: not a.running, 30, "the agent to crash at %s" % point)
    a.proc = None
    a.env = {}
    a.start()           # finishes the journal, if there is one
    a.wait_connected()
    got = tree(a.root, PHONE_DIR)
    want_new = {k: v.encode() for k, v in new.items()}
    want_new["b.png"] = b"old-b"       # not shipped any more: kept (stale)
    want_old = {k: v.encode() for k, v in old.items()}
    assert got == (want_old if point == "staged" else want_new), got
    assert not [n for n in os.listdir(os.path.join(a.root, PHONE_DIR))
                if n.startswith(".")]


def test_power_cut_at_random_moments_gives_old_or_new(comsim, agent):
    sim = sim_with_reseller(comsim)
    rnd = random.Random(int(os.environ.get("COMAGENT_TEST_SEED", "6")))
    big = "x" * (3 * 1024 * 1024)
    old = {"46xxspecials.txt": "old\n", "a.png": "old-a", "b.png": "old-b" + big}
    new = {"46xxspecials.txt": "new\n", "a.png": "new-a" + big, "c.png": "new-c" + big}
    put(sim, "provider", PHONES, files=old)
    a = agent(sim)
    first_done(a)
    want_old = tree(a.root, PHONE_DIR)
    put(sim, "provider", PHONES, files={"46xxspecials.txt": new["46xxspecials.txt"]})
    put(sim, "reseller", PHONES, files={"a.png": new["a.png"]})
    put(sim, "system", PHONES, files={"c.png": new["c.png"]})
    want_new = {k: v.encode() for k, v in new.items()}
    want_new["b.png"] = want_old["b.png"]
    seen = set()
    for i in range(6):
        jid = job(sim)
        # Deliberate fault timing, not synchronisation: SIGKILL somewhere
        # between the job's arrival and its end.
        import time
        time.sleep(rnd.uniform(0.0, 1.5))
        a.kill()
        a.proc = None
        a.start()
        a.wait_connected()
        got = tree(a.root, PHONE_DIR)
        assert got in (want_old, want_new), (i, sorted(got))
        seen.add("new" if got == want_new else "old")
        if got == want_new:
            break
    # Whatever the cuts did, a refresh now installs the new set.
    m = wait_final(sim, job(sim), timeout=60)
    assert m["state"] == "succeeded", m
    assert tree(a.root, PHONE_DIR) == want_new


# ---- prune -----------------------------------------------------------------

def test_prune_removes_only_what_the_agent_installed(comsim, agent):
    sim = sim_with_reseller(comsim)
    put(sim, "provider", PHONES, files={"a.png": "A", "b.png": "B", "c.png": "C"})
    a = agent(sim)
    first_done(a)
    mine = os.path.join(a.root, PHONE_DIR, "mine.png")
    with open(mine, "w") as f:
        f.write("technician's")
    put(sim, "provider", PHONES, files={"a.png": "A2"})
    m = wait_final(sim, job(sim))
    assert m["state"] == "succeeded", m
    assert "2 no longer shipped, kept" in m["message"], m
    assert sorted(tree(a.root, PHONE_DIR)) == ["a.png", "b.png", "c.png", "mine.png"]
    mf = manifest(a)
    assert not mf[("phones", "b.png")]["shipped"]
    assert "no longer shipped" in a.cli("custom-files").stdout
    # c.png was changed on the box since: no longer the agent's file.
    with open(os.path.join(a.root, PHONE_DIR, "c.png"), "w") as f:
        f.write("edited")
    r = a.cli("custom-files", "--prune")
    assert r.returncode == 0, r.stderr
    assert "2 stale files: 1 removed, 1 kept" in r.stdout, r.stdout
    assert tree(a.root, PHONE_DIR) == {"a.png": b"A2", "c.png": b"edited",
                                       "mine.png": b"technician's"}
    assert set(manifest(a)) == {("phones", "a.png")}
    # The job option does the same during a refresh.
    put(sim, "provider", PHONES, files={"d.png": "D"})
    m = wait_final(sim, job(sim, prune=True))
    assert m["state"] == "succeeded" and "1 removed" in m["message"], m
    assert tree(a.root, PHONE_DIR) == {"c.png": b"edited", "d.png": b"D",
                                       "mine.png": b"technician's"}


def test_refresh_job_arguments_and_busy(comsim, agent):
    sim = comsim()
    a = agent(sim)
    first_done(a)
    m = wait_final(sim, job(sim, prune="yes"))
    assert m["state"] == "rejected" and m["reason"] == "invalid", m
    assert "args.prune" in m["message"]


def test_refresh_resumes_after_a_dropped_link(comsim, agent):
    sim = sim_with_reseller(comsim)
    a = agent(sim)
    first_done(a)
    big = os.urandom(300000).hex()
    put(sim, "reseller", PHONES, files={"big.png": big})
    sim.download_fault(C, S, drop_after=100000)
    since = len(sim.events())
    m = wait_final(sim, job(sim), timeout=60)
    assert m["state"] == "succeeded", m
    assert tree(a.root, PHONE_DIR) == {"big.png": big.encode()}
    offs = [e["offset"] for e in sim.events("custom_download", since)]
    assert len(offs) == 2 and offs[0] == 0 and offs[1] >= 100000, offs


def test_a_name_the_target_holds_as_a_directory_is_refused(comsim, agent):
    sim = sim_with_reseller(comsim)
    put(sim, "provider", TEMPLATES, files={"t.xml": "<t/>"})
    a = agent(sim)
    first_done(a)
    assert os.path.isdir(os.path.join(a.root, TEMPLATE_DIR))
    # The templates folder sits inside the phone-file folder.
    put(sim, "system", PHONES, files={"templates": "not a folder", "a.png": "A"})
    m = wait_final(sim, job(sim))
    assert m["state"] == "failed" and m["reason"] == "refused", m
    assert "member 'templates'" in m["message"], m
    assert tree(a.root, PHONE_DIR) == {}
    assert tree(a.root, TEMPLATE_DIR) == {"t.xml": b"<t/>"}


def test_unexpected_names_are_installed_with_a_warning(comsim, agent):
    sim = sim_with_reseller(comsim)
    a = agent(sim)
    first_done(a)
    put(sim, "provider", PHONES, files={"46xxspecials.txt": "x\n", "notes.doc": "?"})
    m = wait_final(sim, job(sim))
    assert m["state"] == "succeeded", m
    assert "1 warning" in m["message"] and "notes.doc" in m["message"], m
    assert sorted(tree(a.root, PHONE_DIR)) == ["46xxspecials.txt", "notes.doc"]


def test_corrupt_customdata_is_final(comsim, agent):
    """COM's bytes not matching its own list is the file's fault: rejected,
    nothing applied, not fetched again on the next link."""
    sim = comsim()
    put(sim, "system", "CustomData.xml", GOOD_XML.encode())
    sim.download_fault(C, S, corrupt=True)
    a = agent(sim)
    c = first_done(a)
    assert c["customdata"] == "rejected", c
    assert "SHA-256" in c["customdata_message"], c
    assert not a.status()["settings"]["centralmgmt"]
    n = len(downloads(sim))
    sim.admin("POST", "/drop", {"customer": C, "system": S})
    a.wait_connected()
    sim.barrier(customer=C, system=S)
    assert [d for d in downloads(sim)[n:] if d[1] == "CustomData.xml"] == []


def test_journal_replay_installs_only_the_files_it_names(comsim, agent):
    """A crash after the journal; before the restart, a staged file is
    replaced (as another refresh's extraction would): the replay leaves
    it out rather than install bytes the journal does not name."""
    sim = sim_with_reseller(comsim)
    put(sim, "provider", PHONES, files={"a.png": "old-a", "b.png": "old-b"})
    a = agent(sim)
    first_done(a)
    put(sim, "provider", PHONES, files={"a.png": "new-a", "b.png": "new-b"})
    a.env = {"COMAGENT_TEST_CRASH": "journaled"}
    restart(a)
    a.wait_connected()
    job(sim)
    wait_until(lambda: not a.running, 30, "the agent to crash after the journal")
    staged = os.path.join(a.root, PHONE_DIR, ".comagent-phones", "a.png")
    with open(staged, "w") as f:
        f.write("not what the journal names")
    a.proc = None
    a.env = {}
    a.start()
    a.wait_connected()
    assert tree(a.root, PHONE_DIR) == {"a.png": b"old-a", "b.png": b"new-b"}
    assert set(manifest(a)) == {("phones", "b.png")}
    assert not os.path.exists(os.path.dirname(staged))


def test_prune_keeps_a_refused_parts_files(comsim, agent):
    """A refused part installs nothing, and prunes nothing either: its
    stale files stay until a refresh whose tars pass (found by the soak)."""
    sim = sim_with_reseller(comsim)
    put(sim, "provider", PHONES, files={"a.png": "A", "b.png": "B"})
    a = agent(sim)
    first_done(a)
    put(sim, "provider", PHONES, files={"a.png": "A"})
    m = wait_final(sim, job(sim))
    assert m["state"] == "succeeded" and "1 no longer shipped, kept" in m["message"], m
    put_raw(sim, "reseller", PHONES, tar_bytes([({"name": "../escape.txt"}, b"x")]))
    m = wait_final(sim, job(sim, prune=True))
    assert m["state"] == "failed" and m["reason"] == "refused", m
    assert tree(a.root, PHONE_DIR) == {"a.png": b"A", "b.png": b"B"}
    assert ("phones", "b.png") in manifest(a)

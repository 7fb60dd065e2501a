#!/usr/bin/python3
"""Measures the agent's bulk transfers against comsim on loopback: a backup
of SIZE MiB (random, so gzip cannot shrink it) uploaded, and a SIZE MiB
firmware component downloaded by a transfer job. Prints throughput and the
agent's peak RSS (VmHWM) after each. The optimised build by default.

  /usr/bin/python3 tests/bench/transfers.py [--size MIB] [--bin PATH]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "comsim"))
import comsim as comsim_mod  # noqa: E402

C, S = "C1001", "pbx-hq"


def wait(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    sys.exit("bench: timed out waiting for %s" % what)


def hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def final_state(sim, jid):
    for e in sim.events("message", 0, C, S):
        m = e.get("msg") or {}
        if m.get("type") == "job.state" and m.get("job") == jid and \
                m["state"] in ("succeeded", "failed", "rejected"):
            return m
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=100, help="MiB (default 100)")
    ap.add_argument("--bin", default=os.path.join(REPO, "build/host/comagent"))
    args = ap.parse_args()
    size = args.size << 20
    tmp = tempfile.mkdtemp(prefix="cab-", dir="/tmp")
    sim = agent = None
    try:
        sim = comsim_mod.SimProcess(os.path.join(tmp, "com"), customers=[{
            "customer": C, "system": S, "user": "COMAdmin", "password": "pw",
            "state": "ok"}])
        sim.start()
        root = os.path.join(tmp, "root")
        for d in ("etc/ipoffice", "var/lib/ipoffice", "var/lib/comagent"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        with open(os.path.join(root, "etc/ipoffice-version"), "w") as f:
            f.write("11.1.3.0\n")
        with open(os.path.join(root, "var/lib/ipoffice/media.bin"), "wb") as f:
            for _ in range(size >> 20):
                f.write(os.urandom(1 << 20))
        with open(os.path.join(root, "var/lib/comagent/settings"), "w") as f:
            f.write("remoteupgrade=1\n")
        keys = " ".join(k["public_pem_path"] for k in sim.admin("GET", "/signing_keys"))
        ini = os.path.join(tmp, "comagent.ini")
        with open(ini, "w") as f:
            f.write("[com]\nurl = wss://localhost:%d/agent/v1\nca_file = %s\n"
                    "[system]\nprofile = linux\ncustomer_id = %s\nsystem_name = %s\n"
                    "root = %s\n[service_user]\npassword = pw\n[log]\nlevel = info\n"
                    "[jobs]\nhooks_dir = %s\nauto_backup = off\ntrusted_keys = %s\n"
                    % (sim.port, sim.ca, C, S, root, os.path.join(REPO, "scripts"),
                       keys))
        os.chmod(ini, 0o600)
        agent = subprocess.Popen([args.bin, "run", "-c", ini],
                                 stdout=subprocess.DEVNULL,
                                 stderr=open(os.path.join(tmp, "agent.log"), "wb"))
        wait(lambda: (sim.agent(C, S) or {}).get("connected"), 20, "the agent")
        base = hwm_kib(agent.pid)

        jid = sim.admin("POST", "/job", {"customer": C, "system": S,
                                         "op": "backup"})["job"]
        m = wait(lambda: final_state(sim, jid), 600, "the backup")
        assert m["state"] == "succeeded", m
        up = sim.events("upload_done", 0, C, S)[-1]
        up_hwm = hwm_kib(agent.pid)
        print("backup upload: %.1f MiB in %.2f s = %.1f MiB/s; agent peak RSS "
              "%.1f MiB (connected idle %.1f MiB)" % (
                  up["size"] / 1048576, up["duration"],
                  up["size"] / 1048576 / up["duration"], up_hwm / 1024, base / 1024))

        sim.admin("POST", "/library", {"release": "12.0.1.0", "profile": "linux",
                                       "components": [{"name": "fw.bin",
                                                       "size": size}]})
        jid = sim.admin("POST", "/job", {"customer": C, "system": S,
                                         "op": "transfer",
                                         "release": "12.0.1.0"})["job"]
        t0 = time.monotonic()
        m = wait(lambda: final_state(sim, jid), 600, "the transfer")
        took = time.monotonic() - t0
        assert m["state"] == "succeeded", m
        dn = sim.events("download_done", 0, C, S)[-1]
        print("firmware download: %.1f MiB, transfer job %.2f s (download %.2f s "
              "= %.1f MiB/s); agent peak RSS %.1f MiB" % (
                  size / 1048576, took, dn.get("duration", took),
                  size / 1048576 / (dn.get("duration") or took),
                  hwm_kib(agent.pid) / 1024))
    finally:
        if agent:
            agent.terminate()
            agent.wait(20)
        if sim:
            sim.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

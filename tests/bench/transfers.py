#!/usr/bin/python3
"""Measures the agent's bulk transfers against comsim on loopback: a backup
of SIZE MiB (random, so gzip cannot shrink it) uploaded, and a SIZE MiB
firmware component downloaded by a transfer job. Prints throughput and the
agent's peak RSS (VmHWM) after each. The optimised build by default.

  /usr/bin/python3 tests/bench/transfers.py [--size MIB] [--bin PATH]
"""
import argparse
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


class Bench:
    """comsim and the agent on loopback in a temp directory: start() with
    the remote-operation settings and extra INI text, stop() at the end."""

    def __init__(self, binary):
        self.binary = binary
        self.tmp = tempfile.mkdtemp(prefix="cab-", dir="/tmp")
        self.root = os.path.join(self.tmp, "root")
        self.ini = os.path.join(self.tmp, "comagent.ini")
        self.sim = self.agent = None
        os.makedirs(os.path.join(self.root, "var/lib/comagent"))

    def start_sim(self, extra_args=()):
        self.sim = comsim_mod.SimProcess(os.path.join(self.tmp, "com"), customers=[{
            "customer": C, "system": S, "user": "COMAdmin", "password": "pw",
            "state": "ok"}], extra_args=extra_args)
        self.sim.start()
        return self.sim

    def start_agent(self, settings, extra):
        with open(os.path.join(self.root, "var/lib/comagent/settings"), "w") as f:
            f.write(settings)
        with open(self.ini, "w") as f:
            f.write("[com]\nurl = wss://localhost:%d/agent/v1\nca_file = %s\n"
                    "[system]\nprofile = linux\ncustomer_id = %s\nsystem_name = %s\n"
                    "root = %s\n[service_user]\npassword = pw\n[log]\nlevel = info\n"
                    % (self.sim.port, self.sim.ca, C, S, self.root) + extra)
        os.chmod(self.ini, 0o600)
        self.agent = subprocess.Popen(
            [self.binary, "run", "-c", self.ini], stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.tmp, "agent.log"), "wb"))
        wait(lambda: (self.sim.agent(C, S) or {}).get("connected"), 20, "the agent")
        return self.agent

    def stop(self):
        if self.agent:
            self.agent.terminate()
            self.agent.wait(20)
        if self.sim:
            self.sim.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=100, help="MiB (default 100)")
    ap.add_argument("--bin", default=os.path.join(REPO, "build/host/comagent"))
    args = ap.parse_args()
    size = args.size << 20
    b = Bench(args.bin)
    try:
        sim = b.start_sim()
        root = b.root
        for d in ("etc/ipoffice", "var/lib/ipoffice"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        with open(os.path.join(root, "etc/ipoffice-version"), "w") as f:
            f.write("11.1.3.0\n")
        with open(os.path.join(root, "var/lib/ipoffice/media.bin"), "wb") as f:
            for _ in range(size >> 20):
                f.write(os.urandom(1 << 20))
        keys = " ".join(k["public_pem_path"] for k in sim.admin("GET", "/signing_keys"))
        agent = b.start_agent("remoteupgrade=1\n",
                              "[jobs]\nhooks_dir = %s\nauto_backup = off\n"
                              "trusted_keys = %s\n[logs]\nsyslog =\n"
                              % (os.path.join(REPO, "scripts"), keys))
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
        b.stop()


if __name__ == "__main__":
    main()

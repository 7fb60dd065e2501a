#!/usr/bin/python3
"""Measures a custom-files refresh against comsim on loopback: a
CustomPhoneFiles.tar of just under 10 MiB (random images, so nothing is
cheap) in each of the provider, reseller and system folders, and a small
CustomTemplates.tar. Prints the refresh job's time and the agent's peak RSS
(VmHWM) before and after. The optimised build by default.

  /usr/bin/python3 tests/bench/custom.py [--bin PATH] [--runs N]
"""
import argparse
import io
import os
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from transfers import Bench, C, S, REPO, final_state, hwm_kib, wait  # noqa: E402

RESELLER = "R1"
FOLDERS = {"provider": "provider", "reseller": "resellers/" + RESELLER,
           "system": "customers/%s/%s" % (C, S)}


def tar(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(REPO, "build/host/comagent"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    b = Bench(args.bin)
    try:
        sim = b.start_sim()
        sim.admin("POST", "/customers", {"customer": C, "system": S,
                                         "user": "COMAdmin", "password": "pw",
                                         "state": "ok", "reseller": RESELLER})
        agent = b.start_agent("", "[jobs]\nauto_backup = off\n[logs]\nsyslog =\n")
        # The first connect's own refresh (nothing there yet) runs first; the
        # tars are put in place after it, so the baseline is the connected agent.
        wait(lambda: any(e["msg"].get("custom_refresh") == "succeeded"
                         for e in sim.events("message", 0, C, S)
                         if e["msg"].get("type") == "status"), 120,
             "the first refresh")
        total = 0
        for level, sub in FOLDERS.items():
            d = os.path.join(sim.dir, "custom", sub)
            os.makedirs(d, exist_ok=True)
            phones = tar({"%s-%d.png" % (level, i): os.urandom(1150000)
                          for i in range(9)})
            assert len(phones) <= 10 * 1024 * 1024
            with open(os.path.join(d, "CustomPhoneFiles.tar"), "wb") as f:
                f.write(phones)
            with open(os.path.join(d, "CustomTemplates.tar"), "wb") as f:
                f.write(tar({"%s.xml" % level: b"<template/>"}))
            total += len(phones)
        base = hwm_kib(agent.pid)
        for run in range(args.runs):
            jid = sim.admin("POST", "/job", {"customer": C, "system": S,
                                             "op": "refresh_custom"})["job"]
            t0 = time.monotonic()
            m = wait(lambda: final_state(sim, jid), 300, "the refresh")
            took = time.monotonic() - t0
            assert m["state"] == "succeeded", m
            print("refresh of 3 levels (%.1f MiB of tars, 30 files): %.2f s; "
                  "agent peak RSS %.1f MiB (connected, before %.1f MiB) - %s"
                  % (total / 1048576, took, hwm_kib(agent.pid) / 1024,
                     base / 1024, m["message"]))
    finally:
        b.stop()


if __name__ == "__main__":
    main()

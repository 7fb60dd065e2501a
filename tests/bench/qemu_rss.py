#!/usr/bin/python3
"""The armhf agent's idle memory, measured under qemu-user on this host.

qemu-arm runs the 32-bit guest inside one host process, so that process's
RSS is qemu's own memory (its binary and libraries, the translated-code
buffer, its heap) plus the guest's. A 32-bit guest lives in the low 4 GiB
of the host process (qemu maps guest address A at guest_base + A, and
guest_base is 0 here; the script checks that the guest binary is mapped
there), while qemu's own mappings are far above. The guest's share is the
Rss of the mappings that end at or below 4 GiB, from /proc/PID/smaps: what
the agent would have resident on the appliance, less the kernel's own
per-process overhead.

  /usr/bin/python3 tests/bench/qemu_rss.py [--bin build/armhf/comagent.stripped]
"""
import argparse
import os
import stat
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from transfers import Bench, C, S, REPO, wait  # noqa: E402

GUEST_TOP = 1 << 32


def shares(pid, binary):
    guest, total, bin_low = 0, 0, False
    start = end = 0
    name = ""
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            parts = line.split()
            if parts and "-" in parts[0] and not parts[0].endswith(":"):
                a, b = parts[0].split("-")
                start, end = int(a, 16), int(b, 16)
                name = parts[5] if len(parts) > 5 else ""
            elif parts and parts[0] == "Rss:":
                kib = int(parts[1])
                total += kib
                if end <= GUEST_TOP:
                    guest += kib
                    if os.path.basename(binary).startswith(
                            os.path.basename(name)[:15]) and name:
                        bin_low = True
    return guest, total, bin_low


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(
        REPO, "build/armhf/comagent.stripped"))
    ap.add_argument("--qemu", default="qemu-arm")
    args = ap.parse_args()
    wrap = tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False)
    wrap.write('#!/bin/sh\nexec %s %s "$@"\n' % (args.qemu,
                                                 os.path.abspath(args.bin)))
    wrap.close()
    os.chmod(wrap.name, stat.S_IRWXU)
    b = Bench(wrap.name)
    try:
        sim = b.start_sim()
        agent = b.start_agent("", "[jobs]\nauto_backup = off\n[logs]\nsyslog =\n")
        wait(lambda: (sim.agent(C, S) or {}).get("status", {}).get(
            "custom_refresh") in ("succeeded", "failed"), 120, "first connect")
        time.sleep(1)   # idle: nothing in flight
        guest, total, ok = shares(agent.pid, args.bin)
        if not ok:
            sys.exit("qemu_rss: the guest binary is not mapped below 4 GiB "
                     "(guest_base != 0?); the split below would be wrong")
        print("armhf agent under %s, connected and idle: guest share %d KiB "
              "(%.2f MiB) of the qemu process's %d KiB"
              % (args.qemu, guest, guest / 1024, total))
    finally:
        b.stop()
        os.unlink(wrap.name)


if __name__ == "__main__":
    main()

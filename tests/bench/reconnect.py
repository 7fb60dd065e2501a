#!/usr/bin/python3
"""Measures the agent's memory across link losses: comsim drops the link
CYCLES times (the agent reconnects with its back-off, retry_max 1 s), and
the agent's RSS, data segment and heap-ish figures (VmRSS, VmData from
/proc) are printed after a warm-up and at the end, with idle RSS of the
connected agent and the cost of open tunnels. The optimised build by
default; growth over the cycles means a leak that LeakSanitizer cannot see
(memory still referenced).

  /usr/bin/python3 tests/bench/reconnect.py [--cycles N] [--bin PATH]
      [--max-idle-kib K] [--max-tunnel-kib K] [--max-growth-kib K]

With the --max options it is a budget check (`make TARGET=x86_64 size`):
it exits 1 when idle RSS, RSS per open tunnel, or RSS/data growth over the
cycles after the warm-up exceed them.
"""
import argparse
import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from transfers import Bench, C, S, REPO, wait  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import tunnelkit  # noqa: E402  (the tests' client of COM's proxy)


def proc_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def welcomes(sim):
    return (sim.agent(C, S) or {}).get("welcomes", 0)


def connected(sim, n):
    a = sim.agent(C, S) or {}
    return a.get("connected") and a.get("welcomes", 0) >= n


def echo_server():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=lambda s=c: [s.sendall(d) for d in
                                                 iter(lambda: s.recv(65536), b"")],
                             daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return srv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--tunnels", type=int, default=32)
    ap.add_argument("--bin", default=os.path.join(REPO, "build/host/comagent"))
    ap.add_argument("--max-idle-kib", type=int)
    ap.add_argument("--max-tunnel-kib", type=float)
    ap.add_argument("--max-growth-kib", type=int)
    args = ap.parse_args()
    over = []
    b = Bench(args.bin)
    try:
        sim = b.start_sim()
        srv = echo_server()
        agent = b.start_agent(
            "remoteaccess=1\n",
            "[com]\nretry_min = 100ms\nretry_max = 1s\ngrace = 1h\n"
            "[services]\nssh = %d\n[jobs]\nauto_backup = off\n[logs]\nsyslog =\n"
            % srv.getsockname()[1])
        # Settled: the first connect's custom-files work is done.
        wait(lambda: (sim.agent(C, S) or {}).get("status", {}).get(
            "custom_refresh") in ("succeeded", "failed"), 60, "first connect")
        pid = agent.pid
        idle = proc_kib(pid, "VmRSS")
        print("connected idle: VmRSS %d KiB, VmData %d KiB, VmHWM %d KiB"
              % (idle, proc_kib(pid, "VmData"), proc_kib(pid, "VmHWM")))

        # Tunnels: each held open with a little data through it.
        socks = []
        for i in range(args.tunnels):
            r = tunnelkit.proxy_connect(sim.proxy_port, sim.ca,
                                        "%s.maint.com.example.test:22" % C)
            assert r.status == 200, r.status
            r.tunnel.send(b"x" * 1000)
            assert r.tunnel.recv_exact(1000) == b"x" * 1000
            socks.append(r.tunnel)
        with_t = proc_kib(pid, "VmRSS")
        per = (with_t - idle) / max(1, len(socks))
        print("%d tunnels open: VmRSS %d KiB (+%.1f KiB per tunnel)"
              % (len(socks), with_t, per))
        if args.max_idle_kib is not None and idle > args.max_idle_kib:
            over.append("idle RSS %d KiB > %d KiB" % (idle, args.max_idle_kib))
        if args.max_tunnel_kib is not None and per > args.max_tunnel_kib:
            over.append("%.1f KiB per tunnel > %.1f KiB" % (per, args.max_tunnel_kib))
        for t in socks:
            t.close()

        def cycles(n):
            t0 = time.monotonic()
            for _ in range(n):
                w = welcomes(sim)
                sim.admin("POST", "/drop", {"customer": C, "system": S})
                wait(lambda: connected(sim, w + 1), 30, "a reconnect")
            return time.monotonic() - t0

        warm = min(50, args.cycles)
        cycles(warm)
        r0, d0 = proc_kib(pid, "VmRSS"), proc_kib(pid, "VmData")
        print("after %d reconnects: VmRSS %d KiB, VmData %d KiB" % (warm, r0, d0))
        took = cycles(args.cycles - warm)
        r1, d1 = proc_kib(pid, "VmRSS"), proc_kib(pid, "VmData")
        print("after %d reconnects (%.0f s): VmRSS %d KiB (%+d), VmData %d KiB "
              "(%+d), VmHWM %d KiB" % (args.cycles, took, r1, r1 - r0, d1,
                                       d1 - d0, proc_kib(pid, "VmHWM")))
        srv.close()
        if args.max_growth_kib is not None and \
                max(r1 - r0, d1 - d0) > args.max_growth_kib:
            over.append("growth over %d reconnects: RSS %+d KiB, data %+d KiB "
                        "> %d KiB" % (args.cycles - warm, r1 - r0, d1 - d0,
                                      args.max_growth_kib))
    finally:
        b.stop()
    for o in over:
        print("FAIL: " + o)
    if over:
        sys.exit(1)
    if args.max_idle_kib is not None:
        print("memory budget: OK")


if __name__ == "__main__":
    main()

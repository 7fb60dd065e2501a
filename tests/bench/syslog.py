#!/usr/bin/python3
"""Measures the agent's syslog intake and log upload against comsim on
loopback (the optimised build by default): N messages over one TCP
connection (RFC 6587 newline framing) and over UDP, the agent's CPU for
them, then COM's "fetch new logs" and its upload throughput.

  /usr/bin/python3 tests/bench/syslog.py [--messages N] [--bin PATH]
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from transfers import C, S, Bench, final_state, wait  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status(binary, ini):
    r = subprocess.run([binary, "status", "--json", "-c", ini], capture_output=True,
                       text=True, timeout=10)
    return json.loads(r.stdout)["logs"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=1000000)
    ap.add_argument("--bin", default=os.path.join(REPO, "build/host/comagent"))
    args = ap.parse_args()
    n = args.messages
    b = Bench(args.bin)
    try:
        sim = b.start_sim()
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        agent = b.start_agent("logtransfer=1\n",
                              "[jobs]\nauto_backup = off\n[logs]\n"
                              "syslog = 127.0.0.1:%d\n" % port)
        ini = b.ini
        msg = b"<134>1 2026-12-01T10:00:00.000Z pbx-hq ipoffice 1234 CALL - " \
              b"call %07d from 201 to 0049301234567 connected on trunk 3\n"
        data = b"".join(msg % i for i in range(n))
        c0, t0 = cpu_s(agent.pid), time.monotonic()
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(data)
        s.close()
        wait(lambda: status(args.bin, ini)["stored"] >= n, 600, "the messages")
        took, cpu = time.monotonic() - t0, cpu_s(agent.pid) - c0
        print("TCP intake: %d messages (%.0f MB) in %.2f s = %.0f msg/s; agent CPU "
              "%.2f s (%.2f us/msg)" % (n, len(data) / 1e6, took, n / took, cpu,
                                       cpu * 1e6 / n))
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        m = n // 10
        c0, t0 = cpu_s(agent.pid), time.monotonic()
        for i in range(m):
            u.sendto(msg % i, ("127.0.0.1", port))
        sent_t = time.monotonic() - t0
        try:
            wait(lambda: status(args.bin, ini)["stored"] >= n + m, 30, "UDP")
        except SystemExit:
            pass
        got = status(args.bin, ini)["stored"] - n
        print("UDP intake: %d of %d datagrams stored, sent in %.2f s (%.0f/s); agent "
              "CPU %.2f s" % (got, m, sent_t, m / sent_t, cpu_s(agent.pid) - c0))
        jid = sim.admin("POST", "/job", {"customer": C, "system": S,
                                         "op": "fetch_logs"})["job"]
        t0 = time.monotonic()
        r = wait(lambda: final_state(sim, jid), 600, "the fetch")
        took = time.monotonic() - t0
        done = [e for e in sim.events("upload_done", 0, C, S) if e.get("content") == "log"]
        size = sum(e["size"] for e in done)
        up = sum(e["duration"] for e in done)
        print("fetch_logs: %s, %d files, %.1f MB compressed, job %.2f s, uploads "
              "%.2f s = %.1f MB/s" % (r["state"], len(done), size / 1e6, took, up,
                                      size / 1e6 / up if up else 0))
        with open("/proc/%d/status" % agent.pid) as f:
            hwm = [line for line in f if line.startswith("VmHWM")][0].split()[1]
        print("agent peak RSS %.1f MiB" % (int(hwm) / 1024))
    finally:
        b.stop()


if __name__ == "__main__":
    main()

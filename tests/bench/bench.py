#!/usr/bin/python3
"""`make bench`: comagent measured side by side with the tools people would
use instead, in one run on loopback. Prints a table and writes
build/bench/results.json: for each figure comagent's value, each peer's, and
the ratio (comagent / peer). Every figure is the median of --runs runs.

  1. tunnel throughput (MB/s) for --mb MB, and CPU seconds per GB of the
     tunnel's far end: comagent (client -> comsim's TLS proxy -> WSS -> agent
     -> server) vs. direct TCP, `ssh -L` through a local sshd, and socat
     with TLS; comsim's own CPU is reported beside the agent's, since it is
     Python and may be what limits the end-to-end figure.
  2. interactive latency: 1-byte round trips (p50, p99), idle and while a
     bulk stream runs on the same link, vs. `ssh -L`.
  3. memory: the connected agent's RSS idle and with 1, 32 and 256 open
     tunnels vs. sshd's (all its processes) with as many forwarded
     connections of one `ssh -L` session.
  4. files: a custom-file refresh (3 levels, ~10 MB tars) vs. `tar -xf` of
     the same archives (time, peak RSS); log upload (a fetch_logs job of
     --log-mb MB of stored logs) vs. `gzip | socat` of the same logs to a
     TCP receiver (MB/s of log text, CPU s per GB).
  5. reconnect storm (simulation, build/bench/storm): 3000 agents lose COM
     at once; attempts per second at COM with the agent's own back-off vs.
     plain exponential back-off without jitter.

  /usr/bin/python3 tests/bench/bench.py [--runs 3] [--mb 1024] [--log-mb 256]
      [--bin build/host/comagent] [--storm build/bench/storm]
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from transfers import Bench, C, S, REPO, final_state, wait  # noqa: E402
from custom import FOLDERS, RESELLER, tar as tar_bytes  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import tunnelkit  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
BLOCK = 1 << 20
DEST = "%s.maint.com.example.test:22" % C


# ------------------------------------------------------------------ /proc

def children(pid):
    """pid and all its descendants."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def cpu_s(pids):
    """User + system CPU seconds of the processes (those still alive) and
    of their children they have reaped (socat forks per connection)."""
    t = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                v = f.read().rsplit(")", 1)[1].split()
            t += int(v[11]) + int(v[12]) + int(v[13]) + int(v[14])
        except (OSError, ValueError, IndexError):
            pass
    return t / TICK


def rss_kib(pids, field="VmRSS"):
    t = 0
    for p in pids:
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith(field + ":"):
                        t += int(line.split()[1])
        except OSError:
            pass
    return t


# ------------------------------------------------------------------ servers

class Server:
    """A loopback TCP server, a thread per connection. "sink": reads an
    8-byte length N, then N bytes, answers b"k". "echo": echoes. "drain":
    reads until EOF."""

    def __init__(self, mode):
        self.mode = mode
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(512)
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=getattr(self, "_" + self.mode), args=(c,),
                             daemon=True).start()

    @staticmethod
    def _sink(c):
        buf = bytearray(BLOCK)
        try:
            head = b""
            while len(head) < 8:
                b = c.recv(8 - len(head))
                if not b:
                    return
                head += b
            left = struct.unpack(">Q", head)[0]
            while left:
                n = c.recv_into(buf, min(left, BLOCK))
                if not n:
                    return
                left -= n
            c.sendall(b"k")
        except OSError:
            pass
        finally:
            c.close()

    @staticmethod
    def _drain(c):
        buf = bytearray(BLOCK)
        try:
            while c.recv_into(buf):
                pass
        except OSError:
            pass
        finally:
            c.close()

    @staticmethod
    def _echo(c):
        try:
            for d in iter(lambda: c.recv(65536), b""):
                c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.srv.close()


def connect(dest, port, ca=None):
    """A socket to the far end: dest None: TCP to 127.0.0.1:port; else the
    CONNECT name of an agent service through comsim's TLS proxy on port."""
    if dest:
        r = tunnelkit.proxy_connect(port, ca, dest)
        if r.status != 200:
            raise RuntimeError("CONNECT %s answered %s" % (dest, r.status))
        assert not r.tunnel.buf
        s = r.tunnel.sock
    else:
        s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def send_bulk(s, nbytes, stop=None):
    """Sends nbytes to a sink and waits for its receipt; seconds taken.
    With stop (an Event) it runs until that is set instead."""
    block = memoryview(os.urandom(BLOCK))
    t0 = time.monotonic()
    s.sendall(struct.pack(">Q", nbytes))
    left = nbytes
    while left and not (stop and stop.is_set()):
        n = min(left, BLOCK)
        s.sendall(block[:n])
        left -= n
    if stop:
        return 0
    if s.recv(1) != b"k":
        raise RuntimeError("the sink did not confirm")
    return time.monotonic() - t0


def child(argv):
    """`bench.py _send DEST PORT CA NBYTES` (a process of its own, so the
    sender does not share the GIL with the servers): prints the seconds.
    `bench.py _bulk DEST PORT CA`: sends until killed."""
    dest, port, ca = argv[1] if argv[1] != "-" else None, int(argv[2]), argv[3]
    s = connect(dest, port, ca)
    if argv[0] == "_send":
        print(send_bulk(s, int(argv[4])), flush=True)
    else:
        send_bulk(s, 1 << 62, threading.Event())
    return 0


def run_child(*args):
    r = subprocess.run([sys.executable, __file__] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError("bench child %s failed: %s" % (args[0], r.stderr[-2000:]))
    return float(r.stdout)


def rtts(s, n):
    """p50 and p99 of n 1-byte round trips through an echo, in µs."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        s.sendall(b"x")
        if s.recv(1) != b"x":
            raise RuntimeError("echo lost")
        out.append((time.perf_counter() - t0) * 1e6)
    out.sort()
    return out[len(out) // 2], out[min(len(out) - 1, len(out) * 99 // 100)]


# ------------------------------------------------------------------ peers

class SSHForward:
    """sshd (OpenSSH) on loopback and one `ssh -N` session forwarding a
    local port to each target port (so they share one SSH connection)."""

    def __init__(self, tmp, targets):
        self.sshd = tunnelkit.SSHD(tempfile.mkdtemp(prefix="sshd-", dir=tmp)).start()
        self.ports = [tunnelkit.free_port() for _ in targets]
        fwd = []
        for lp, tp in zip(self.ports, targets):
            fwd += ["-L", "127.0.0.1:%d:127.0.0.1:%d" % (lp, tp)]
        self.ssh = subprocess.Popen(
            ["ssh", "-N"] + fwd + self.sshd.client_opts(port=self.sshd.port)
            + ["-o", "ExitOnForwardFailure=yes", "-l", self.sshd.user, "127.0.0.1"],
            stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for p in self.ports:
            tunnelkit.wait_port("127.0.0.1", p, 20, self.ssh)

    def server_pids(self):
        # The listener and the session's privsep and user processes.
        return children(self.sshd.proc.pid)

    def close(self):
        self.ssh.terminate()
        self.ssh.wait()
        self.sshd.stop()


class SocatTLS:
    """socat relaying over TLS: a local plain listener -> TLS (the
    certificate comsim uses, verified) -> a TLS listener -> the target."""

    def __init__(self, target_port, cert, key, ca):
        self.tls_port = tunnelkit.free_port()
        self.port = tunnelkit.free_port()
        self.server = subprocess.Popen(
            ["socat", "OPENSSL-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,cert=%s,"
             "key=%s,verify=0" % (self.tls_port, cert, key),
             "TCP:127.0.0.1:%d" % target_port], stderr=subprocess.DEVNULL)
        tunnelkit.wait_port("127.0.0.1", self.tls_port, 10, self.server)
        self.client = subprocess.Popen(
            ["socat", "TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork" % self.port,
             "OPENSSL:localhost:%d,cafile=%s" % (self.tls_port, ca)],
            stderr=subprocess.DEVNULL)
        tunnelkit.wait_port("127.0.0.1", self.port, 10, self.client)

    def server_pids(self):
        return children(self.server.pid)

    def close(self):
        for p in (self.client, self.server):
            p.terminate()
            p.wait()


# ------------------------------------------------------------------ figures

def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return "%.3g" % v if abs(v) < 1000 else "%.0f" % v
    return str(v)


class Results:
    def __init__(self):
        self.rows = []
        self.extra = {}

    def add(self, section, figure, unit, comagent, peers, better="higher",
            note=""):
        """peers: {name: value}; ratio = comagent / peer."""
        ratios = {k: (round(comagent / v, 3) if v else None)
                  for k, v in peers.items()}
        self.rows.append({"section": section, "figure": figure, "unit": unit,
                          "comagent": comagent, "peers": peers,
                          "ratio": ratios, "better": better, "note": note})
        print("%-8s %-40s %9s %-6s %s%s" % (
            section, figure, fmt(comagent), unit,
            "  ".join("%s %s (%sx)" % (k, fmt(v), fmt(ratios[k]))
                      for k, v in peers.items()),
            ("  [" + note + "]") if note else ""), flush=True)

    def behind(self):
        """The figure where comagent is furthest behind a peer."""
        worst = None
        for r in self.rows:
            for k, q in r["ratio"].items():
                if q is None or k == "direct":
                    continue
                gap = 1 / q if r["better"] == "higher" else q
                if worst is None or gap > worst[0]:
                    worst = (gap, r["section"], r["figure"], k)
        return worst


def median(xs):
    return statistics.median(xs)


# ------------------------------------------------------------------ 1

def throughput(res, args, sim, agent, ports, tmp):
    nbytes = args.mb * 1000 * 1000
    ssh = SSHForward(tmp, [ports["sink"]])
    socat = SocatTLS(ports["sink"], sim.cert, sim.key, sim.ca)
    paths = {
        "comagent": (DEST_SINK, sim.proxy_port, lambda: [agent.pid]),
        "direct": ("-", ports["sink"], lambda: []),
        "ssh -L": ("-", ssh.ports[0], ssh.server_pids),
        "socat TLS": ("-", socat.port, socat.server_pids),
    }
    mbps, cpu_gb, sim_gb = {}, {}, []
    try:
        for name, (dest, port, pids) in paths.items():
            rates, cpus = [], []
            for _ in range(args.runs):
                before = pids()
                c0, s0 = cpu_s(before), cpu_s([sim.proc.pid])
                took = run_child("_send", dest, port, sim.ca, nbytes)
                # sshd's session processes come and go with the connection:
                # count those seen before and after.
                rates.append(nbytes / took / 1e6)
                cpus.append((cpu_s(sorted(set(before) | set(pids()))) - c0)
                            / (nbytes / 1e9))
                if name == "comagent":
                    sim_gb.append((cpu_s([sim.proc.pid]) - s0) / (nbytes / 1e9))
            mbps[name] = median(rates)
            cpu_gb[name] = median(cpus)
    finally:
        ssh.close()
        socat.close()
    simg = median(sim_gb)
    res.add("tunnel", "throughput, %d MB" % args.mb, "MB/s", mbps["comagent"],
            {k: v for k, v in mbps.items() if k != "comagent"},
            note="comsim (Python) %.1f CPU s/GB%s" % (
                simg, ": the bottleneck" if simg > cpu_gb["comagent"] else ""))
    res.add("tunnel", "CPU s per GB at the far end", "s/GB", cpu_gb["comagent"],
            {"sshd": cpu_gb["ssh -L"], "socat TLS": cpu_gb["socat TLS"]},
            better="lower")
    res.extra["tunnel"] = {"mb": args.mb, "mbps": mbps, "cpu_s_per_gb": cpu_gb,
                           "comsim_cpu_s_per_gb": simg}


# ------------------------------------------------------------------ 2

def latency(res, args, sim, agent, ports, tmp):
    ssh = SSHForward(tmp, [ports["echo"], ports["sink"]])
    cases = {
        "comagent": (lambda: connect(DEST_ECHO, sim.proxy_port, sim.ca),
                     (DEST_SINK, sim.proxy_port)),
        "ssh -L": (lambda: connect(None, ssh.ports[0]), ("-", ssh.ports[1])),
    }
    out = {}
    try:
        for name, (mk, (bdest, bport)) in cases.items():
            s = mk()
            rtts(s, 200)                        # warm-up
            idle = [rtts(s, args.rtts) for _ in range(args.runs)]
            loaded = []
            for _ in range(args.runs):
                bulk = subprocess.Popen([sys.executable, __file__, "_bulk", bdest,
                                         str(bport), sim.ca],
                                        stderr=subprocess.DEVNULL)
                try:
                    rtts(s, 200)                # the bulk stream is flowing
                    loaded.append(rtts(s, args.rtts))
                finally:
                    bulk.kill()
                    bulk.wait()
            s.close()
            out[name] = {"idle_p50": median([x[0] for x in idle]),
                         "idle_p99": median([x[1] for x in idle]),
                         "bulk_p50": median([x[0] for x in loaded]),
                         "bulk_p99": median([x[1] for x in loaded])}
    finally:
        ssh.close()
    for k, label in (("idle_p50", "1-byte RTT p50, idle"),
                     ("idle_p99", "1-byte RTT p99, idle"),
                     ("bulk_p50", "1-byte RTT p50, bulk on the link"),
                     ("bulk_p99", "1-byte RTT p99, bulk on the link")):
        res.add("latency", label, "µs", out["comagent"][k],
                {"ssh -L": out["ssh -L"][k]}, better="lower")
    res.extra["latency_us"] = out


# ------------------------------------------------------------------ 3

def memory(res, args, sim, agent, ports, tmp):
    ssh = SSHForward(tmp, [ports["echo"]])
    counts = (1, 32, 256)
    got = {"comagent": {}, "sshd": {}}
    try:
        got["comagent"][0] = rss_kib([agent.pid])
        got["sshd"][0] = rss_kib(ssh.server_pids())
        for name, mk, pids in (
                ("comagent", lambda: connect(DEST_ECHO, sim.proxy_port, sim.ca),
                 lambda: [agent.pid]),
                ("sshd", lambda: connect(None, ssh.ports[0]), ssh.server_pids)):
            socks = []
            for n in counts:
                while len(socks) < n:
                    s = mk()
                    s.sendall(b"x" * 1000)
                    got_b = b""
                    while len(got_b) < 1000:
                        got_b += s.recv(1000 - len(got_b))
                    socks.append(s)
                got[name][n] = rss_kib(pids())
            for s in socks:
                s.close()
    finally:
        ssh.close()
    res.add("memory", "RSS connected, idle", "KiB", got["comagent"][0],
            {"sshd (listener + session)": got["sshd"][0]}, better="lower")
    for n in counts:
        res.add("memory", "RSS with %d open tunnels" % n, "KiB",
                got["comagent"][n], {"sshd": got["sshd"][n]}, better="lower")
    res.extra["memory_kib"] = got


# ------------------------------------------------------------------ 4



def peak_child(argv, **kw):
    """Runs argv; (seconds, its peak RSS in KiB, CPU seconds)."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, **kw)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise RuntimeError("%s exited with %d" % (argv[0], p.returncode))
    return time.monotonic() - t0, ru.ru_maxrss, ru.ru_utime + ru.ru_stime


def files(res, args, b, sim, agent, tmp):
    tars = []
    for level, sub in FOLDERS.items():
        d = os.path.join(sim.dir, "custom", sub)
        os.makedirs(d, exist_ok=True)
        for name, data in (
                ("CustomPhoneFiles.tar",
                 tar_bytes({"%s-%d.png" % (level, i): os.urandom(1150000)
                            for i in range(9)})),
                ("CustomTemplates.tar", tar_bytes({"%s.xml" % level: b"<template/>"}))):
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
            tars.append(os.path.join(d, name))
    mb = sum(os.path.getsize(t) for t in tars) / 1e6
    hwm0 = rss_kib([agent.pid], "VmHWM")
    times = []
    for _ in range(args.runs):
        jid = sim.admin("POST", "/job", {"customer": C, "system": S,
                                         "op": "refresh_custom"})["job"]
        t0 = time.monotonic()
        m = wait(lambda: final_state(sim, jid), 300, "the refresh")
        times.append(time.monotonic() - t0)
        if m["state"] != "succeeded":
            raise RuntimeError("refresh: %s" % m)
    peak = rss_kib([agent.pid], "VmHWM")
    tar_t, tar_rss = [], []
    for _ in range(args.runs):
        out = tempfile.mkdtemp(dir=tmp)
        t, r = 0.0, 0
        for t_path in tars:
            # GNU time reports tar's own peak: a child forked from this
            # Python process would count Python's pages until its exec.
            t0 = time.monotonic()
            p = subprocess.run(["/usr/bin/time", "-f", "%M", "tar", "-xf", t_path,
                                "-C", out], capture_output=True, text=True,
                               check=True)
            t += time.monotonic() - t0
            r = max(r, int(p.stderr.strip().splitlines()[-1]))
        tar_t.append(t)
        tar_rss.append(r)
        shutil.rmtree(out)
    res.add("files", "custom refresh, 3 levels, %.0f MB" % mb, "s", median(times),
            {"tar -xf": median(tar_t)}, better="lower",
            note="comagent lists, downloads over WSS, checks sha256, "
                 "installs journaled; tar only extracts local files")
    res.add("files", "peak RSS during the refresh", "KiB", peak,
            {"tar -xf": median(tar_rss)}, better="lower",
            note="agent connected before: %d KiB" % hwm0)
    res.extra["files"] = {"tars_mb": mb, "refresh_s": times, "tar_s": tar_t,
                          "agent_hwm_kib": peak, "agent_hwm_before_kib": hwm0,
                          "tar_rss_kib": tar_rss}


def logs(res, args, b, sim, agent, syslog_port, tmp):
    # Call records with a random call id each, so they compress about as
    # well as real ones do (~5x), not 40x.
    line = (b"<134>1 2026-12-01T10:00:00.000Z pbx-hq ipoffice 1234 CALL - "
            b"call %07d id %s from 201 to 0049301234567 connected on trunk 3\n")
    n = args.log_mb * 1000 * 1000 // len(line % (0, b"0" * 16))
    text = b"".join(line % (i % 10000000, os.urandom(8).hex().encode())
                    for i in range(n))
    path = os.path.join(tmp, "logs.txt")
    with open(path, "wb") as f:
        f.write(text)
    gb = len(text) / 1e9
    # comagent: intake over TCP syslog, the store (gzip), COM's fetch_logs.
    c0, t0 = cpu_s([agent.pid]), time.monotonic()
    s = socket.create_connection(("127.0.0.1", syslog_port))
    s.sendall(text)
    s.close()

    def stored():
        r = subprocess.run([b.binary, "status", "--json", "-c", b.ini],
                           capture_output=True, text=True, timeout=10)
        return json.loads(r.stdout)["logs"]["stored"] >= n
    wait(stored, 1200, "the log messages stored")
    jid = sim.admin("POST", "/job", {"customer": C, "system": S,
                                     "op": "fetch_logs"})["job"]
    m = wait(lambda: final_state(sim, jid), 1200, "the log upload")
    took, cpu = time.monotonic() - t0, cpu_s([agent.pid]) - c0
    if m["state"] != "succeeded":
        raise RuntimeError("fetch_logs: %s" % m)
    up = sum(e["size"] for e in sim.events("upload_done", 0, C, S)
             if e.get("content") == "log")
    # The peer: gzip the same text and send it with socat to a TCP sink.
    sink = Server("drain")
    with open(path, "rb") as src:
        g = subprocess.Popen(["gzip", "-c", "-6"], stdin=src, stdout=subprocess.PIPE)
        t1 = time.monotonic()
        _, _, sc_cpu = peak_child(["socat", "-u", "-", "TCP:127.0.0.1:%d" % sink.port],
                                  stdin=g.stdout)
        g.stdout.close()
        _, status, ru = os.wait4(g.pid, 0)
        g.returncode = os.waitstatus_to_exitcode(status)
        peer_t = time.monotonic() - t1
    sink.close()
    peer_cpu = sc_cpu + ru.ru_utime + ru.ru_stime
    res.add("logs", "log text to COM, %d MB" % args.log_mb, "MB/s",
            len(text) / 1e6 / took, {"gzip | socat": len(text) / 1e6 / peer_t},
            note="comagent: syslog intake, store, fetch_logs upload (%.0f MB "
                 "gzipped)" % (up / 1e6))
    res.add("logs", "CPU s per GB of log text", "s/GB", cpu / gb,
            {"gzip | socat": peer_cpu / gb}, better="lower")
    res.extra["logs"] = {"mb": len(text) / 1e6, "uploaded_mb": up / 1e6,
                         "seconds": took, "agent_cpu_s": cpu,
                         "peer_seconds": peer_t, "peer_cpu_s": peer_cpu}


# ------------------------------------------------------------------ 5

def storm(res, args):
    r = subprocess.run([args.storm], capture_output=True, text=True, check=True)
    out = json.loads(r.stdout)
    a, p = out["comagent"], out["plain_exponential"]
    for k, label in (("p99_per_s", "attempts/s at COM, p99 over 10 min"),
                     ("peak_per_s", "attempts/s at COM, peak"),
                     ("peak_after_com_up_per_s", "attempts/s at COM, peak once it is back")):
        res.add("storm", label, "/s", a[k], {"no jitter": p[k]}, better="lower")
    res.add("storm", "agents reconnected within 10 min", "", a["connected"],
            {"no jitter": p["connected"]},
            note="%d agents, COM down %d s, then %d links/s" % (
                out["agents"], out["com_down_s"], out["com_accepts_per_s"]))
    res.extra["storm"] = out


# ------------------------------------------------------------------ main

DEST_SINK = "%s.maint.com.example.test:22" % C      # [services] ssh
DEST_ECHO = "%s.maint.com.example.test:443" % C     # [services] https


def main():
    if len(sys.argv) > 1 and sys.argv[1] in ("_send", "_bulk"):
        return child(sys.argv[1:])
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mb", type=int, default=1000, help="tunnel bulk MB")
    ap.add_argument("--log-mb", type=int, default=100)
    ap.add_argument("--rtts", type=int, default=2000)
    ap.add_argument("--bin", default=os.path.join(REPO, "build/host/comagent"))
    ap.add_argument("--storm", default=os.path.join(REPO, "build/bench/storm"))
    ap.add_argument("--out", default=os.path.join(REPO, "build/bench/results.json"))
    args = ap.parse_args()
    res = Results()
    t_start = time.monotonic()
    print("%-8s %-40s %9s %-6s %s" % ("", "figure", "comagent", "", "peers (comagent/peer)"))
    storm(res, args)
    sink, echo = Server("sink"), Server("echo")
    syslog_port = tunnelkit.free_port()
    b = Bench(args.bin)
    tmp = b.tmp
    try:
        sim = b.start_sim(extra_args=["--max-streams", "256"])
        sim.cert = os.path.join(sim.dir, "server-localhost.pem")
        sim.key = os.path.join(sim.dir, "server-localhost.key")
        sim.admin("POST", "/customers", {"customer": C, "system": S,
                                         "user": "COMAdmin", "password": "pw",
                                         "state": "ok", "reseller": RESELLER})
        agent = b.start_agent(
            "remoteaccess=1\nlogtransfer=1\n",
            "[com]\nmax_streams = 256\n[services]\nssh = %d\nhttps = %d\n"
            "[jobs]\nauto_backup = off\n[logs]\nsyslog = 127.0.0.1:%d\n"
            % (sink.port, echo.port, syslog_port))
        wait(lambda: (sim.agent(C, S) or {}).get("status", {}).get(
            "custom_refresh") in ("succeeded", "failed"), 60, "the first connect")
        ports = {"sink": sink.port, "echo": echo.port}
        # Memory first, while the agent has done nothing but connect.
        memory(res, args, sim, agent, ports, tmp)
        files(res, args, b, sim, agent, tmp)
        latency(res, args, sim, agent, ports, tmp)
        throughput(res, args, sim, agent, ports, tmp)
        logs(res, args, b, sim, agent, syslog_port, tmp)
    finally:
        b.stop()
        sink.close()
        echo.close()
    worst = res.behind()
    summary = {"generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "seconds": round(time.monotonic() - t_start, 1),
               "runs": args.runs, "rows": res.rows, "details": res.extra,
               "furthest_behind": None if not worst else {
                   "factor": round(worst[0], 2), "section": worst[1],
                   "figure": worst[2], "peer": worst[3]}}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=1)
    if worst:
        print("furthest behind: %s / %s vs %s (%.2fx)" % (worst[1], worst[2],
                                                          worst[3], worst[0]))
    print("results: %s (%.0f s)" % (args.out, summary["seconds"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Soak: the agent under a seeded-random mix of work against a misbehaving
comsim for a long time, under ASan or valgrind memcheck (issue 8).

    /usr/bin/python3 tests/soak/soak.py --tool asan --bin build/asan/comagent \
        [--seconds 3600] [--seed N] [--warmup S] [--rss-max-kib K] [--keep]
    /usr/bin/python3 tests/soak/soak.py --tool valgrind --bin build/host/comagent \
        [--wrapper "valgrind ..."]

What runs, all on loopback (comsim on 127.0.0.1, echo / sink / source TCP
servers, the syslog intake on 127.0.0.1):

  lane "ops"     backup jobs (the repository's hooks on a temp root; media
                 file of random size), some with an upload fault: the link
                 dropped after N bytes (the upload resumes), COM's "corrupt"
                 verdict (the agent sends it again), COM holding the credit
                 (a second backup meanwhile is rejected "busy"); transfer jobs
                 of a new library release (signed manifest), some with a
                 download fault: link dropped (resumes) or a flipped byte
                 (fails "corrupt"); an unknown op (rejected); invalid args
                 (rejected); a finished job's id again (answered from the
                 journal, nothing run)
  lane "logs"    syslog over TCP (octet-counted or LF) and UDP, malformed and
                 binary messages, lines appended to a collected *.log file
                 (rotated now and then); a fetch_logs job; every message must
                 then be in COM's stored logs
  lane "custom"  COM's custom files changed at the three levels, then a
                 refresh_custom job (some with prune), some with a dropped
                 link, a corrupt download, an unavailable list, or a hostile
                 tar; what is installed is compared with what COM ships
  lane "tunnel"  up to N tunnels at once through COM's CONNECT proxy: echo
                 (bytes compared), sink (sha256 at the server), source
                 (sha256 at the client), long interactive ones, refused ports
                 and an unreachable service
  main lane      link drops, COM restarts (admin /restart and, rarely, the
                 comsim process), stalls (half-open: the agent's idle timeout
                 must notice), an oversized frame, and bad input (garbage
                 text frames, unknown types, limits, stream frames for
                 unknown streams, error/unsupported/ack that must not be
                 answered), each followed by a barrier message.

Every operation's outcome is checked. A tunnel or bad-input round that
overlapped a link loss the soak caused, or its follow-on (a loss within
Soak.follow_on_grace() after it: idle_timeout + connect_timeout +
retry_max + slack, e.g. COM closing the old link 4003 "replaced" as the
agent reconnects after a stall), may end early (counted "failed", as
expected) but must never deliver wrong bytes; a job must always reach its
documented final state (a flipped byte fails a transfer "corrupt" and a
refresh; an unavailable list fails a refresh, a hostile tar fails it
"refused" with that part left as it was; everything else succeeds: uploads
and downloads resume; a flipped byte or a list error that went with a
link the soak closed, fetched again clean on the next link, succeeds). A
job whose link goes with such a loss before the agent's first answer is
sent again (same id). An oversized frame runs with the job lanes held out
(their faults would race its 4002). Every link close must fall in a loss
the soak caused or its follow-on grace. Anything else is "unexpected" and
fails the soak (it stops scheduling at the first one).

Memory: VmRSS (and RssAnon) of the agent's process is sampled throughout.
At the end of the warm-up and at the end the soak quiesces (every lane
idle, no tunnel open, link up), takes the median of 5 samples ("start",
"end") and asks the tool how many bytes the agent's heap holds: ASan's
allocator count (__sanitizer_get_current_allocated_bytes, called with gdb)
or memcheck's (a leak check summary through vgdb). RSS growth above
--rss-max-kib or heap growth above --heap-max-kib (256 KiB; the idle
agent holds ~1.2 MiB) fails. The heap count is the measure of a leak of
memory still referenced (LeakSanitizer and memcheck find the rest at
exit): it is exact, and flat to the byte from run to run. RSS is bounded
too, for what is not malloc'ed, but under these tools it also holds the
tool's own memory. ASan's (shadow pages, allocator caches and metadata)
settles over the first ~5 minutes: +0.6 to +1.9 MiB after a 1-2 minute
warm-up while the heap count stayed flat to the byte and ASan's own
allocator figures (mapped, rss, stack depot) did not move, within +-0.5 MiB
after that; so its limit is 2 MiB (the shadow's share is reported).
valgrind's process (its shadow memory and translations included) grew
0.2-0.4 MiB: 1 MiB. Freed memory that the tool holds back from reuse would
count as RSS until its queue is full, so both queues are 1 MiB (below).

At the end the agent gets SIGTERM and must exit 0: under ASan its stderr
must hold no sanitizer report (LeakSanitizer runs at exit); under valgrind
the memcheck log must show 0 errors and 0 bytes definitely or indirectly
lost. (tests/soak/valgrind.supp, if there is one, is given to valgrind:
only for proven false positives of the libraries, each with its reason;
none is needed today.)

Writes build/soak/<tool>.json and prints a summary table; the agent's
stderr is build/soak/<tool>-agent.log, valgrind's log
build/soak/<tool>-valgrind.log, the tail of comsim's log
build/soak/<tool>-comsim.log. Exit status 0 = pass.
"""

import argparse
import base64
import faulthandler
import gzip
import hashlib
import io
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "comsim"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import comsim as comsim_mod  # noqa: E402
import tunnelkit as tk  # noqa: E402  (stdlib only: the tests' proxy client and TCP servers)

C, S, R = "C1001", "pbx-hq", "R7"
PHONES, TEMPLATES = "CustomPhoneFiles.tar", "CustomTemplates.tar"
PHONE_DIR = "opt/ipoffice/system/primary"
TEMPLATE_DIR = "opt/ipoffice/system/primary/templates"
LEVELS = ("provider", "reseller", "system")
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                   "UndefinedBehaviorSanitizer")
FINAL = ("succeeded", "failed", "rejected")

# Per tool: `slow` scales every timeout; the rest is the work rate (sizes
# in bytes, pauses in seconds: uniform(lo, hi)). valgrind runs the agent
# some 20-50x slower: smaller files, fewer tunnels, longer pauses between
# disruptions, a longer keepalive.
PROFILES = {
    "asan": dict(
        slow=1.0, ping="1s", idle="4s", connect="5s", retry_max="1s",
        tunnels=4, echo=(1 << 10, 512 << 10), sink=(16 << 10, 2 << 20),
        source=1 << 20, backup=(16 << 10, 3 << 20), comp=(16 << 10, 4 << 20),
        big_member=300000, syslog=(5, 200), main_pause=(2.0, 6.0),
        job_pause=(0.0, 2.0), logs_pause=(4.0, 8.0), tunnel_pause=(0.1, 1.5),
        long_tunnel=(10, 40), rss_interval=1.0, warmup_frac=0.10,
        warmup_min=60.0, rss_max_kib=2048),
    "valgrind": dict(
        slow=12.0, ping="2s", idle="10s", connect="30s", retry_max="2s",
        tunnels=2, echo=(1 << 10, 64 << 10), sink=(4 << 10, 256 << 10),
        source=128 << 10, backup=(8 << 10, 512 << 10), comp=(8 << 10, 512 << 10),
        big_member=60000, syslog=(5, 50), main_pause=(6.0, 15.0),
        job_pause=(1.0, 5.0), logs_pause=(8.0, 16.0), tunnel_pause=(1.0, 4.0),
        long_tunnel=(20, 60), rss_interval=2.0, warmup_frac=0.25,
        warmup_min=75.0, rss_max_kib=1024),
}

# ASan: a 1 MiB quarantine instead of 256 MiB. ASan keeps freed blocks
# poisoned in its quarantine before reusing them, so RSS climbs until the
# quarantine is full; the agent frees little (its live heap is ~1.2 MiB), so
# 256 MiB (or even 4 MiB: +3.4 MiB in 2 minutes after a 40 s warm-up) never
# fills within a soak and RSS would only measure the quarantine. At 1 MiB it
# is full within the warm-up. A use after free of a recently freed block is
# still caught; the integration tests run with the default quarantine.
ASAN_OPTIONS = ("detect_leaks=1:abort_on_error=0:halt_on_error=1:"
                "quarantine_size_mb=1:print_summary=1")
# valgrind: the same for its queue of freed blocks (default 20 MB): 1 MB.
# --trace-children=no: the hooks the agent forks are shell scripts, not ours;
# --child-silent-after-fork: a forked child between fork and exec says
# nothing in our log.
VALGRIND = ("valgrind --tool=memcheck --leak-check=full "
            "--show-leak-kinds=definite,indirect,possible "
            "--errors-for-leak-kinds=definite,indirect --error-exitcode=99 "
            "--track-fds=no --trace-children=no --child-silent-after-fork=yes "
            "--freelist-vol=1000000 --num-callers=40 --gen-suppressions=all")


class Unexpected(Exception):
    """An outcome the agent's documentation does not allow."""


class Stopping(Exception):
    """The soak is ending: a lane gives up what it waits for."""


def now():
    return time.time()


def proc_status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM", "VmData"):
                    out[k] = int(v.split()[0])
    except OSError:
        return None
    return out


def heap_in_use(tool, pid):
    """Bytes the agent's heap holds right now, by the tool's own count:
    ASan's allocator (__sanitizer_get_current_allocated_bytes, called in
    the agent with gdb), or memcheck's (the sum of a leak check's summary,
    through vgdb). None when it cannot be asked."""
    try:
        if tool == "asan":
            r = subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx", "-ex",
                                "print (unsigned long)__sanitizer_get_current_allocated_bytes()"],
                               capture_output=True, text=True, timeout=120,
                               stdin=subprocess.DEVNULL)
            m = re.search(r"^\$1 = (\d+)", r.stdout, re.M)
            return int(m.group(1)) if m else None
        r = subprocess.run(["vgdb", "--pid=%d" % pid, "leak_check", "summary"],
                           capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL)
        # "still reachable: 11,996 (+11,996) bytes in 137 (+137) blocks"
        cats = re.findall(r"(?:definitely lost|indirectly lost|possibly lost|"
                          r"still reachable|suppressed): ([\d,]+) (?:\([^)]*\) )?bytes",
                          r.stdout + r.stderr)
        return sum(int(c.replace(",", "")) for c in cats) if len(cats) >= 4 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


# ASan's shadow memory on x86_64: LowShadow 0x7fff8000.., HighShadow
# ..0x10007fff8000 (the gap between is mapped without access: no RSS)
ASAN_SHADOW = (0x7fff8000, 0x10007fff8000)


def shadow_kib(pid):
    """RSS of ASan's shadow memory (KiB), from /proc/PID/smaps."""
    total, inside = 0, False
    try:
        with open("/proc/%d/smaps" % pid) as f:
            for line in f:
                m = re.match(r"^([0-9a-f]+)-[0-9a-f]+ ", line)
                if m:
                    a = int(m.group(1), 16)
                    inside = ASAN_SHADOW[0] <= a < ASAN_SHADOW[1]
                elif inside and line.startswith("Rss:"):
                    total += int(line.split()[1])
    except OSError:
        return None
    return total


def kib_per_hour(samples):
    """Least-squares slope of (t, VmRSS KiB, ...) samples, KiB per hour."""
    xs = [s[0] for s in samples]
    ys = [s[1] for s in samples]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
    return round(slope * 3600, 1)


def duration_s(v):
    """Seconds in one of the agent's durations as the profiles write them
    ("100ms", "4s", "2m")."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", v)
    if not m:
        raise ValueError("duration %r" % v)
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def write_ini(path, sections):
    out = []
    for sec, kv in sections.items():
        out.append("[%s]" % sec)
        out += ["%s = %s" % (k, v) for k, v in kv.items() if v is not None]
        out.append("")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(out))


def put(root, rel, data, mode=0o644):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    os.chmod(p, mode)
    return p


def sha(b):
    return hashlib.sha256(b).hexdigest()


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


def tar_bytes(members):
    """A plain tar of (name, bytes) in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


# ------------------------------------------------------------------ comsim's events

class Collector(threading.Thread):
    """Follows comsim's event list (GET /events?since=) and keeps what the
    checks need: job states, transfer events per job, the agent's answers
    to bad input, welcomes and link closes, log files stored; and records
    protocol anomalies (a bad frame from the agent, ids not increasing,
    an answer to error/unsupported/ack, comsim's internal errors)."""

    KEEP = ("upload_open", "upload_done", "upload_corrupt", "upload_interrupted",
            "download_open", "download_done", "download_interrupted",
            "custom_download")
    ANOMALY = ("protocol_error", "internal_error", "loop_error",
               "stream_violation")

    def __init__(self, sim):
        super().__init__(daemon=True, name="collector")
        self.sim = sim
        self.lock = threading.Condition()
        self.cursor = 0
        self.paused = False
        self.stop_flag = False
        self.states = {}          # job -> [job.state msg]
        self.per_job = {}         # job -> [event]
        self.faults = []          # download_fault / upload_fault drop|corrupt events
        self.welcomes = 0
        self.closes = []          # close events
        self.answers = {}         # re -> agent's msg (error/unsupported/job.state/...)
        self.stream_closes = {}   # stream (>= 1e6) -> agent's stream.close
        self.errors_no_re = 0     # agent's "error" without re (unparsable input)
        self.log_names = []       # stored log files not yet read
        self.anomalies = []
        self.last_id = {}
        self.sent_types = {}      # link -> {id: type} of comsim's ack/error/unsupported
        self.raw_links = {}       # id (>= 1e6) of a raw frame comsim sent -> its link
        self.job_links = {}       # job -> [link it was sent on, each time]
        self.custom_lists = []    # custom_list events (COM's answer to custom.list)
        self.events_seen = 0
        self.fetch_errors = 0

    def run(self):
        while True:
            with self.lock:
                if self.stop_flag:
                    return
                paused = self.paused
            if not paused:
                self.poll()
            time.sleep(0.2)   # the poll period (comsim keeps the events)

    def poll(self):
        with self.lock:
            cursor = self.cursor
        try:
            evs = self.sim.admin("GET", "/events?since=%d" % cursor, expect=None)
        except (OSError, ValueError):
            self.fetch_errors += 1
            return
        if not isinstance(evs, list):
            return
        with self.lock:
            if self.cursor != cursor:       # reset meanwhile (comsim restarted)
                return
            for e in evs:
                self.take(e)
                self.cursor = max(self.cursor, e["seq"])
            self.events_seen += len(evs)
            self.lock.notify_all()

    def flush(self):
        self.poll()

    def reset(self):
        """comsim was restarted: its event numbers start again."""
        with self.lock:
            self.cursor = 0
            self.last_id = {}
            self.sent_types = {}

    def take(self, e):
        k = e["kind"]
        mine = e.get("customer") in (None, C) and e.get("system") in (None, S)
        if k in self.ANOMALY:
            self.anomalies.append(e)
            return
        if not mine:
            return
        link = e.get("link")
        if k == "welcome":
            self.welcomes += 1
        elif k == "close":
            self.closes.append(e)
            self.sent_types.pop(link, None)
            self.last_id.pop(link, None)
        elif k in self.KEEP:
            self.per_job.setdefault(e.get("job"), []).append(e)
        elif k in ("download_fault", "upload_fault") and e.get("action") != "set":
            self.faults.append(e)
        elif k == "log_stored":
            self.log_names.append(e["name"])
        elif k == "custom_list":
            self.custom_lists.append(e)
            if len(self.custom_lists) > 1000:
                del self.custom_lists[:500]
        elif k == "sent" and isinstance(e.get("raw"), str):
            # which link a raw frame went on (the oversized one's reaction)
            m = re.match(r'\{"type":"[^"]*","id":(\d+),', e["raw"])
            if m and int(m.group(1)) >= 1000000:
                self.raw_links[int(m.group(1))] = link
                if len(self.raw_links) > 2000:
                    for key in list(self.raw_links)[:1000]:
                        del self.raw_links[key]
        elif k == "sent" and isinstance(e.get("msg"), dict):
            m = e["msg"]
            if m.get("type") == "job" and isinstance(m.get("job"), str):
                self.job_links.setdefault(m["job"], []).append(link)
            if m.get("type") in ("ack", "error", "unsupported"):
                d = self.sent_types.setdefault(link, {})
                d[m.get("id")] = m["type"]
                if len(d) > 2000:
                    for key in list(d)[:1000]:
                        del d[key]
        elif k == "message":
            if e.get("error"):
                self.anomalies.append(e)
                return
            m = e.get("msg")
            if not isinstance(m, dict):
                return
            mid = m.get("id")
            if isinstance(mid, int):
                if link in self.last_id and mid <= self.last_id[link]:
                    self.anomalies.append(dict(e, problem="agent message id %s after %s"
                                                 % (mid, self.last_id[link])))
                self.last_id[link] = mid
            t = m.get("type")
            if t in ("ack", "error", "unsupported") and "re" in m:
                answered = self.sent_types.get(link, {}).get(m["re"])
                if answered:
                    self.anomalies.append(dict(e, problem="agent answered comsim's %s" % answered))
            if t == "job.state":
                self.states.setdefault(m.get("job"), []).append(m)
            if t == "error" and "re" not in m:
                self.errors_no_re += 1
            if t == "stream.close" and isinstance(m.get("stream"), int) \
                    and m["stream"] >= 1000000:
                self.stream_closes[m["stream"]] = m
            if t in ("error", "unsupported", "job.state", "stream.close") and \
                    isinstance(m.get("re"), int) and m["re"] >= 1000000:
                self.answers.setdefault(m["re"], m)

    # -- queries (under the lock)
    def final(self, jid):
        with self.lock:
            for m in self.states.get(jid, ()):
                if m.get("state") in FINAL:
                    return m
        return None

    def first_state(self, jid):
        with self.lock:
            s = self.states.get(jid)
            return s[0] if s else None

    def job_events(self, jid, kind=None):
        with self.lock:
            return [e for e in self.per_job.get(jid, ())
                    if kind is None or e["kind"] == kind]

    def faults_since(self, t0, action=None):
        with self.lock:
            return [e for e in self.faults if e["t"] >= t0 and
                    (action is None or e.get("action") == action)]

    def custom_lists_since(self, t0):
        with self.lock:
            return [e for e in self.custom_lists if e["t"] >= t0]

    def take_log_names(self):
        with self.lock:
            names, self.log_names = self.log_names, []
        return names


# ------------------------------------------------------------------ the soak

class Soak:
    def __init__(self, args):
        self.args = args
        self.p = PROFILES[args.tool]
        self.slow = self.p["slow"]
        self.grace = self.follow_on_grace()
        # one generator for every lane: the seed fixes the choices, the
        # lanes' timing decides their order
        random.seed(args.seed)
        self.out_dir = os.path.abspath(args.out)
        os.makedirs(self.out_dir, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix="soak-%s-" % args.tool, dir="/tmp")
        self.root = os.path.join(self.tmp, "root")
        self.ini = os.path.join(self.tmp, "comagent.ini")
        self.agent_log = os.path.join(self.out_dir, "%s-agent.log" % args.tool)
        self.vg_log = os.path.join(self.out_dir, "%s-valgrind.log" % args.tool)
        self.sim = self.agent = self.coll = None
        self.servers = []
        self.lock = threading.Lock()
        self.stats = {}           # kind -> {"ok","failed","unexpected"}
        self.unexpected = []
        self.cli_problems = []
        self.stop_ev = threading.Event()     # stop scheduling
        self.paused = threading.Event()
        self.windows = []         # [start, end|None, what]: link losses we cause
        self.gate = threading.Condition()
        self.disrupting = False
        self.pending_jobs = 0
        self.rw = threading.Condition()      # job lanes: shared / exclusive (faults)
        self.rw_shared = 0
        self.rw_excl = False
        self.rw_want = 0
        self.lanes = []
        self.idle = {}
        self.rss = []             # (t, VmRSS, RssAnon)
        self.ids = 1000000        # ids and stream ids of bad input
        self.release_n = 0
        self.job_n = 0
        self.last_job = None      # (jid, op, final state) of the ops lane
        # logs lane
        self.tokens_sent = []
        self.tokens_seen = set()
        self.syslog_expected = 0
        self.collect_expected = 0
        self.log_seq = 0
        # custom lane
        self.custom = {lv: {"phones": {}, "templates": {}} for lv in LEVELS}
        self.installed = {"phones": {}, "templates": {}}
        self.result = {}
        self.t_start = self.t_run = self.t_work_end = self.t_rss_start = now()
        self.rss_start = self.rss_end = None
        self.tunnel_thread = None
        self.finishing = False
        self.cmd = []

    # -- small tools
    def T(self, seconds):
        return seconds * self.slow

    def wait_until(self, pred, timeout, what, interval=0.1):
        deadline = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            if time.monotonic() > deadline:
                raise Unexpected("timed out after %.0fs waiting for %s" % (timeout, what))
            time.sleep(interval)

    def next_id(self):
        with self.lock:
            self.ids += 2
            return self.ids

    def count(self, kind, outcome):
        with self.lock:
            d = self.stats.setdefault(kind, {"ok": 0, "failed": 0, "unexpected": 0})
            d[outcome] += 1

    def fail(self, kind, why):
        with self.lock:
            self.unexpected.append({"t": round(now() - self.t_start, 1), "kind": kind,
                                    "error": why})
        print("soak: UNEXPECTED %s: %s" % (kind, why.splitlines()[0] if why else why),
              flush=True)
        self.stop_ev.set()

    def run_op(self, kind, fn):
        try:
            outcome = fn()
        except Stopping:
            return
        except Unexpected as e:
            self.count(kind, "unexpected")
            self.fail(kind, str(e))
            return
        except Exception:
            self.count(kind, "unexpected")
            self.fail(kind, traceback.format_exc())
            return
        self.count(kind, outcome or "ok")

    def pace(self, lo_hi):
        """Pacing between operations (the work rate), not a wait for an event."""
        lo, hi = lo_hi
        self.stop_ev.wait(random.uniform(lo, hi))

    # -- link loss windows
    def follow_on_grace(self):
        """How long after a disruption's window closed (the soak saw the
        agent connected again) a link loss is still that disruption's.

        The window ends at the first welcome after the disruption, but the
        disruption can still cost a link after it, through the agent's own
        timers (the [com] values the soak writes into its config):
          - idle_timeout: a link the agent holds but COM no longer serves
            (a stall: COM reads nothing, its pings go unanswered) is given
            up only after it; the agent hangs up without a close frame;
          - connect_timeout: an attempt that COM already welcomed may still
            time out on the agent's side (the welcome late under load): the
            agent drops it and COM, which counted it as up, sees it lost;
          - retry_max: the redial waits up to the back-off's maximum;
        and the next welcome makes COM close the link it still held as
        4003 "replaced" (the close event is recorded then). On top, slack
        for a loaded machine (comsim's event loop, the collector's poll
        and the agent's timers running late): T(3) + 2 s, the grace this
        soak always gave a window's end. asan: 4 + 5 + 1 + 5 = 15 s;
        valgrind: 10 + 30 + 2 + 38 = 80 s. A loss with no disruption in
        the window (or this long before) is still unexplained."""
        p = self.p
        return (duration_s(p["idle"]) + duration_s(p["connect"]) +
                duration_s(p["retry_max"]) + self.T(3) + 2)

    def open_window(self, what):
        w = [now(), None, what]
        with self.lock:
            self.windows.append(w)
        return w

    def close_window(self, w):
        with self.lock:
            w[1] = now()

    def disrupted(self, t0, t1, but=None, grace=None):
        """Whether a link loss the soak caused (other than window `but`)
        overlapped t0..t1, or ended at most follow_on_grace() before (a
        follow-on loss of the same disruption: a tunnel, a job or a
        bad-input round started on the link that COM then closed
        "replaced" is cut by it too)."""
        grace = self.grace if grace is None else grace
        with self.lock:
            return any(w is not but and w[0] <= t1 and
                       (w[1] is None or w[1] + grace >= t0) for w in self.windows)

    # -- comsim and the agent
    def connected(self):
        try:
            a = self.sim.agent(C, S)
        except (OSError, ValueError, AssertionError):
            return False
        return bool(a and a["connected"])

    def wait_connected(self, timeout=None):
        self.wait_until(self.connected, timeout or self.T(30), "the agent's link")

    def wait_reconnect(self, w0, timeout=None):
        self.wait_until(lambda: self.coll.welcomes > w0 and self.connected(),
                        timeout or self.T(30), "the agent to connect again")

    def cli(self, *argv, timeout=None):
        r = subprocess.run([self.bin, *argv, "-c", self.ini], capture_output=True,
                           text=True, timeout=timeout or self.T(30), env=self.env,
                           stdin=subprocess.DEVNULL)
        bad = [m for m in SANITIZER_MARKS if m in r.stdout + r.stderr]
        if bad:
            self.cli_problems.append("sanitizer report (%s) from `comagent %s`:\n%s" % (
                ", ".join(bad), " ".join(argv), r.stderr[-4000:]))
            raise Unexpected("sanitizer report from `comagent %s`" % " ".join(argv))
        return r

    def status(self):
        r = self.cli("status", "--json")
        if r.returncode != 0:
            raise Unexpected("comagent status exited %d: %s%s" % (
                r.returncode, r.stdout, r.stderr))
        return json.loads(r.stdout)

    # -- gates: a job in the window between COM sending it and the agent's
    # first answer must not lose its link (COM would wait for ever; that is
    # COM's problem, not the agent's), so disruptions wait for it.
    def job_gate_enter(self):
        with self.gate:
            while self.disrupting:
                if self.stop_ev.is_set():
                    raise Stopping()
                self.gate.wait(0.5)
            self.pending_jobs += 1

    def job_gate_leave(self):
        with self.gate:
            self.pending_jobs -= 1
            self.gate.notify_all()

    def disruption_begin(self):
        with self.gate:
            self.disrupting = True
            deadline = time.monotonic() + self.T(60)
            while self.pending_jobs and time.monotonic() < deadline:
                self.gate.wait(0.5)

    def disruption_end(self):
        with self.gate:
            self.disrupting = False
            self.gate.notify_all()

    def wait_clear(self):
        """Until no disruption runs and the link is up (tunnels, bad input)."""
        deadline = time.monotonic() + self.T(60)
        while True:
            if self.stop_ev.is_set():
                raise Stopping()
            with self.gate:
                busy = self.disrupting
            if not busy and self.connected():
                return
            if time.monotonic() > deadline:
                raise Unexpected("the link did not come back within %.0fs" % self.T(60))
            time.sleep(0.1)

    # job lanes: shared normally, exclusive while a fault is armed (faults are
    # per system: they would hit the other lanes' transfers)
    def acquire(self, exclusive):
        with self.rw:
            if exclusive:
                self.rw_want += 1
                while self.rw_excl or self.rw_shared:
                    self.rw.wait(0.5)
                self.rw_want -= 1
                self.rw_excl = True
            else:
                while self.rw_excl or self.rw_want:
                    self.rw.wait(0.5)
                self.rw_shared += 1

    def release(self, exclusive):
        with self.rw:
            if exclusive:
                self.rw_excl = False
            else:
                self.rw_shared -= 1
            self.rw.notify_all()

    def send_job(self, op, answered=None, **fields):
        """POST /job once the link is up and no disruption runs; returns the
        job id once the agent has answered it (its first job.state, or
        `answered(jid)`).
        The id is the soak's own, unique: comsim's are 24 random bits, and
        a thousand jobs in a soak make a collision likely (the agent then
        answers an id it has seen from its journal, as documented).
        The gate keeps the soak's disruptions away until the answer, but
        not a follow-on loss of one that just ended (follow_on_grace(): the
        link the job went on closed "replaced" as the agent connects again)
        that can take the job or its answer with it. Then the same job goes
        again on the new link: the agent runs it if it never saw it, or
        answers its recorded state (PROTOCOL.md 2.6). A link lost before
        the answer that the soak did not cause stays unexpected."""
        with self.lock:
            self.job_n += 1
            fields.setdefault("job", "J-SOAK-%06d" % self.job_n)
        jid = fields["job"]
        if answered is None:
            answered = self.coll.first_state
        self.job_gate_enter()
        try:
            for _ in range(5):
                self.wait_connected()
                t0 = now()
                with self.coll.lock:
                    n_sent = len(self.coll.job_links.get(jid, ()))
                    n_close = len(self.coll.closes)
                st, ans = self.sim.admin_status("POST", "/job", dict(
                    fields, customer=C, system=S, op=op))
                if st in (404, 409):
                    continue
                if st != 200:
                    raise Unexpected("POST /job %s -> %d %r" % (op, st, ans))
                if ans.get("job") != jid:
                    raise Unexpected("POST /job %s: COM sent job %r, not the soak's %s"
                                     % (op, ans.get("job"), jid))

                def reply():
                    # one look under the collector's (reentrant) lock: an
                    # answer comes before its link's close in the events
                    with self.coll.lock:
                        if answered(jid):
                            return "answered"
                        links = self.coll.job_links.get(jid, [])
                        if len(links) <= n_sent:
                            return None
                        link = links[n_sent]      # the link this POST went on
                        if any(c.get("link") == link for c in self.coll.closes[n_close:]):
                            return "lost"
                    return None
                got = self.wait_until(reply, self.T(20), "the agent's first answer "
                                      "to job %s (%s)" % (jid, op))
                if got == "answered":
                    return jid
                # the link closed before the answer came (it may still be in
                # comsim's events: then the agent answers the repeat too)
                if not self.disrupted(t0, now()):
                    raise Unexpected("job %s (%s): the link was lost before the agent "
                                     "answered, and the soak did not cause it" % (jid, op))
                self.count("job_sent_again", "ok")
            raise Unexpected("POST /job %s: no link" % op)
        finally:
            self.job_gate_leave()

    def wait_final(self, jid, timeout=None):
        def f():
            if self.stop_ev.is_set() and not self.finishing:
                raise Stopping()
            return self.coll.final(jid)
        return self.wait_until(f, timeout or self.T(120), "a final state of job %s" % jid)

    def corrupt_fetched_again(self, jid, t0):
        """A download fault's flipped byte that the agent fetched again,
        clean: (fault event, later download_open) or None.
        comsim flips a byte of the next frame it sends and forgets the
        fault; when the soak's disruption (a drop, a COM restart, or its
        follow-on, follow_on_grace()) takes that frame with the link, the
        agent never gets the flipped byte and asks on the next link for
        the file from where it is, at or before the byte: it comes clean,
        and the job rightly succeeds. Only that, on another link, and
        with a disruption the soak caused in between, explains a success."""
        opens = self.coll.job_events(jid, "download_open")
        for f in self.coll.faults_since(t0, "corrupt"):
            if f.get("kind") != "download_fault":
                continue
            src = [o for o in opens if (o.get("link"), o.get("stream")) ==
                   (f.get("link"), f.get("stream"))]
            if not src:
                continue
            again = [o for o in opens if o["t"] >= f["t"] and o.get("link") != f.get("link")
                     and o["name"] == src[0]["name"] and o.get("level") == src[0].get("level")
                     and o["asked_offset"] <= f["position"]]
            if again and self.disrupted(f["t"], again[0]["t"]):
                return f, again[0]
        return None

    # ------------------------------------------------------------------ setup
    def start(self):
        a = self.args
        # A copy of the binary: the tree may be rebuilt while the soak runs
        # (the CLI runs it too).
        self.bin = os.path.join(self.tmp, "comagent")
        shutil.copy2(a.bin, self.bin)
        with open(self.bin, "rb") as f:
            self.bin_sha = sha(f.read())
        self.env = dict(os.environ)
        self.env["ASAN_OPTIONS"] = a.asan_options
        self.env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
        self.env["LSAN_OPTIONS"] = ""
        self.t_start = now()
        # comsim: one system, with a reseller (three custom-file levels)
        self.sim = comsim_mod.SimProcess(os.path.join(self.tmp, "com"), customers=[{
            "customer": C, "system": S, "user": "COMAdmin", "password": "pw",
            "state": "ok", "reseller": R, "primary": True}])
        self.sim.start()
        self.coll = Collector(self.sim)
        self.coll.start()
        # local services behind the tunnels
        self.echo = tk.TCPServer(mode="echo").start()
        self.sink = tk.TCPServer(mode="sink").start()
        self.source = tk.TCPServer(mode="source", nbytes=self.p["source"]).start()
        self.servers = [self.echo, self.sink, self.source]
        self.source_bytes = self.source_expected(self.p["source"])
        closed = tk.free_port()         # nothing listens there: unreachable
        self.syslog_port = tk.free_tcp_udp_port()
        # custom files before the first connect
        for lv, part in (("provider", "phones"), ("reseller", "templates"),
                         ("system", "phones")):
            self.set_custom(lv, part, self.random_members(part))
        # the agent's root: a Linux system with something to back up
        put(self.root, "etc/ipoffice/config.xml", "<config>soak</config>\n")
        put(self.root, "etc/ipoffice/voicemail/vm.conf", "vm=1\n")
        put(self.root, "var/lib/ipoffice/users.db", os.urandom(2048))
        put(self.root, "var/lib/ipoffice/media.bin", os.urandom(4096))
        put(self.root, "etc/ipoffice-version", "11.1.3.0\n")
        put(self.root, "var/lib/comagent/settings",
            "remoteupgrade=1\nlogtransfer=1\nremoteaccess=1\ncentralmgmt=1\n", 0o600)
        os.makedirs(os.path.join(self.root, "var/log/pbx"), exist_ok=True)
        self.collect_file = os.path.join(self.root, "var/log/pbx/app.log")
        keys = " ".join(k["public_pem_path"] for k in self.sim.signing_keys())
        p = self.p
        write_ini(self.ini, {
            "com": {"url": "wss://localhost:%d/agent/v1" % self.sim.port,
                    "ca_file": self.sim.ca, "ping_interval": p["ping"],
                    "idle_timeout": p["idle"], "connect_timeout": p["connect"],
                    "retry_min": "100ms", "retry_max": p["retry_max"],
                    "auth_retry_min": "30s", "auth_retry_max": "60s", "grace": "2s"},
            "system": {"profile": "linux", "customer_id": C, "system_name": S,
                       "root": self.root, "address": "127.0.0.1"},
            "services": {"ssh": self.echo.port, "https": self.sink.port,
                         "webcontrol": self.source.port, "weblm": closed},
            "service_user": {"name": "COMAdmin", "password": "pw"},
            "log": {"level": "info"},
            "jobs": {"hooks_dir": os.path.join(REPO, "scripts"), "auto_backup": "off",
                     "trusted_keys": keys},
            # 1 MiB in all: the oldest (uploaded) files are deleted for room
            # as the soak goes on, and the store's file list stays bounded
            "logs": {"syslog": "127.0.0.1:%d" % self.syslog_port, "file_max": "64K",
                     "max_total": "1M", "collect_dirs": "var/log/pbx"},
        })
        r = subprocess.run([self.bin, "check-config", "-c", self.ini], capture_output=True,
                           text=True, env=self.env)
        if r.returncode != 0:
            raise SystemExit("soak: check-config failed:\n%s%s" % (r.stdout, r.stderr))
        wrapper = shlex.split(a.wrapper) if a.wrapper else []
        if a.tool == "valgrind":
            if not wrapper:
                wrapper = shlex.split(VALGRIND)
                if os.path.exists(os.path.join(HERE, "valgrind.supp")):
                    wrapper.append("--suppressions=" + os.path.join(HERE, "valgrind.supp"))
            wrapper.append("--log-file=" + self.vg_log)
        self.cmd = wrapper + [self.bin, "run", "-c", self.ini]
        self.logf = open(self.agent_log, "wb")
        self.agent = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.logf,
                                      stderr=self.logf, env=self.env, cwd=self.tmp)
        self.rss_thread = threading.Thread(target=self.sample_rss, daemon=True)
        self.rss_thread.start()
        self.wait_until(lambda: self.agent.poll() is None and self.connected(),
                        self.T(30), "the agent's first link")
        # the first connect's CustomData.xml and first refresh are over
        st = self.wait_until(lambda: (lambda s: s if s.get("custom_refresh") in (
            "succeeded", "failed") else None)(self.agent_status()), self.T(60),
            "the first custom-files refresh")
        if st.get("custom_refresh") != "succeeded":
            raise Unexpected("the first custom-files refresh: %r" % st)
        self.refresh_expected(prune=False)
        self.check_installed("the first refresh")
        # The lanes compare the collector's welcome count before and after
        # an operation: it polls comsim's events, so it must have counted
        # the first link's welcome before any lane starts (CI saw a lane
        # start at 0 and end at 1: "the link was lost").
        self.wait_until(lambda: self.coll.welcomes >= 1, self.T(30),
                        "the event collector to see the first welcome")
        print("soak: %s: agent pid %d connected after %.1fs; seed %d; %ds; work in %s"
              % (a.tool, self.agent.pid, now() - self.t_start, a.seed, a.seconds, self.tmp),
              flush=True)

    def agent_status(self):
        a = self.sim.agent(C, S) or {}
        return a.get("status") or {}

    @staticmethod
    def source_expected(n):
        """What tunnelkit's "source" server sends (its _source loop)."""
        block = tk.pattern(256 * 1024 + 4096, seed=5)
        out, i = [], 0
        sent = 0
        while sent < n:
            off = (i * 991) % 4096
            b = block[off:off + min(256 * 1024, n - sent)]
            out.append(b)
            sent += len(b)
            i += 1
        return b"".join(out)

    def sample_rss(self):
        while self.agent.poll() is None:
            st = proc_status(self.agent.pid)
            if st and "VmRSS" in st:
                with self.lock:
                    self.rss.append((now(), st["VmRSS"], st.get("RssAnon", 0)))
            time.sleep(self.p["rss_interval"])   # the sampling period

    # ------------------------------------------------------------------ lanes
    def lane(self, name, body):
        def run():
            while not self.stop_ev.is_set():
                if self.paused.is_set():
                    self.idle[name] = True
                    while self.paused.is_set() and not self.stop_ev.is_set():
                        time.sleep(0.1)
                    self.idle[name] = False
                    continue
                try:
                    body()
                except Stopping:
                    pass
                except Exception:
                    self.fail(name, traceback.format_exc())
            self.idle[name] = True
        t = threading.Thread(target=run, daemon=True, name=name)
        self.idle[name] = False
        self.lanes.append(t)
        t.start()

    # ---- ops lane: backups, transfers, rejections
    def ops_lane(self):
        r = random.random()
        if r < 0.40:
            fault = random.choice([None, None, "drop", "corrupt", "hold"])
            kind = "backup" + ("+" + fault if fault else "")
            self.with_lock(fault is not None, kind, lambda: self.op_backup(fault))
        elif r < 0.80:
            fault = random.choice([None, None, "drop", "corrupt"])
            kind = "transfer" + ("+" + fault if fault else "")
            self.with_lock(fault is not None, kind, lambda: self.op_transfer(fault))
        elif r < 0.88:
            self.with_lock(False, "job_rejected", self.op_rejected)
        else:
            self.with_lock(False, "job_repeated", self.op_repeat)
        self.pace(self.p["job_pause"])

    def with_lock(self, exclusive, kind, fn):
        self.acquire(exclusive)
        try:
            if self.stop_ev.is_set():
                return
            self.run_op(kind, fn)
        finally:
            self.release(exclusive)

    def op_backup(self, fault):
        size = random.randint(*self.p["backup"])
        if fault == "hold":
            size = max(size, 256 << 10)     # more than the 64 KiB window
        put(self.root, "var/lib/ipoffice/media.bin", os.urandom(size))
        w = None
        if fault == "drop":
            self.sim.upload_fault(C, S, drop_after=random.randint(size // 4, size // 2))
            w = self.open_window("upload drop")
        elif fault == "corrupt":
            self.sim.upload_fault(C, S, corrupt=True)
        elif fault == "hold":
            self.sim.upload_fault(C, S, hold_credit=True)
        try:
            jid = self.send_job("backup")
            if fault == "hold":
                self.wait_until(lambda: self.coll.job_events(jid, "upload_open"),
                                self.T(60), "the held backup's upload")
                busy = self.send_job("backup")
                m = self.wait_final(busy, self.T(30))
                if (m["state"], m.get("reason")) != ("rejected", "busy"):
                    raise Unexpected("a backup during backup %s: %r" % (jid, m))
                self.count("busy_probe", "ok")
                self.sim.upload_fault(C, S, hold_credit=False)
            m = self.wait_final(jid)
        finally:
            self.sim.upload_fault(C, S, clear=True)
            if w:
                self.wait_connected()
                self.close_window(w)
        if m["state"] != "succeeded":
            raise Unexpected("backup %s (%s): %r" % (jid, fault, m))
        stored = [b for b in self.sim.backups(C, S) if b["job"] == jid]
        if len(stored) != 1 or stored[0]["sha256"] not in m.get("message", ""):
            raise Unexpected("backup %s: COM holds %r; agent said %r" % (jid, stored, m))
        # (a resumed upload starts where COM says; COM checks the whole file)
        corrupt = self.coll.job_events(jid, "upload_corrupt")
        if fault == "corrupt" and not corrupt:
            raise Unexpected("backup %s: COM's corrupt verdict not seen" % jid)
        with self.lock:
            self.last_job = (jid, "backup", m)
        return "ok"

    def op_transfer(self, fault):
        self.release_n += 1
        rel = "12.1.%d.0" % self.release_n
        comps = [{"name": "ipoffice-%s-%d.bin" % (rel, i),
                  "size": random.randint(*self.p["comp"])}
                 for i in range(random.choice((1, 1, 2)))]
        mf = self.sim.add_release(rel, comps)
        # COM's library grows by a release each time: the files of those
        # two releases back go (no job asks for them again), so that an
        # hour's soak does not fill the disk
        shutil.rmtree(os.path.join(self.sim.dir, "library", "12.1.%d.0" % (
            self.release_n - 2)), ignore_errors=True)
        total = sum(c["size"] for c in comps)
        t0 = now()
        w = None
        if fault == "drop":
            self.sim.download_fault(C, S, drop_after=random.randint(total // 4,
                                                                     total * 3 // 4))
            w = self.open_window("download drop")
        elif fault == "corrupt":
            self.sim.download_fault(C, S, corrupt=True)
        try:
            jid = self.send_job("transfer", release=rel)
            m = self.wait_final(jid)
        finally:
            self.sim.download_fault(C, S, clear=True)
            if w:
                self.wait_connected()
                self.close_window(w)
        if fault == "corrupt" and not (m["state"] == "succeeded" and
                                       self.corrupt_fetched_again(jid, t0)):
            if (m["state"], m.get("reason")) != ("failed", "corrupt"):
                raise Unexpected("transfer %s with a flipped byte: %r" % (jid, m))
            return "failed"
        if m["state"] != "succeeded":
            raise Unexpected("transfer %s (%s): %r" % (jid, fault, m))
        staging = os.path.join(self.root, "var/lib/comagent/staging")
        for c in mf["components"]:
            p = os.path.join(staging, c["name"])
            if not os.path.exists(p) or tk.sha256_file(p) != c["sha256"]:
                raise Unexpected("transfer %s: staged %s is not the component" % (jid, p))
        # resumed: after COM dropped the link in the middle of a component,
        # the agent asks for the rest of it, not for all of it again
        opens = self.coll.job_events(jid, "download_open")
        for d in self.coll.faults_since(t0, "drop"):
            if d.get("kind") != "download_fault" or not d.get("sent"):
                continue
            later = [o for o in opens if o["name"] == d.get("name") and o["t"] > d["t"]]
            # ("sent" counts the frame the fault cut the link after: when
            # another disruption of the soak was closing the link at that
            # very moment, that frame, and what went before it on this
            # stream, may never have reached the agent. Only a window open
            # then (1 s either side) explains it, not a follow-on grace.)
            if later and later[0]["asked_offset"] == 0 and \
                    not self.disrupted(d["t"] - 1, d["t"] + 1, but=w, grace=0):
                raise Unexpected("transfer %s: %s not resumed after the drop %r: %r"
                                 % (jid, d.get("name"), d, later[0]))
        with self.lock:
            self.last_job = (jid, "transfer", m)
        return "ok"

    def op_rejected(self):
        case = random.choice(("unknown", "invalid", "invalid_vmpro"))
        if case == "unknown":
            jid = self.send_job("frobnicate")
            want = "unsupported"
        elif case == "invalid":
            jid = self.send_job("backup", args={"elements": ["../etc"]})
            want = "invalid"
        else:
            jid = self.send_job("backup", args={"vmpro": "all"})
            want = "invalid"
        m = self.wait_final(jid, self.T(30))
        if (m["state"], m.get("reason")) != ("rejected", want):
            raise Unexpected("job %s (%s): %r" % (jid, case, m))
        return "ok"

    def op_repeat(self):
        with self.lock:
            last = self.last_job
        if not last:
            return self.op_rejected()
        jid, op, m0 = last
        n_up = len(self.coll.job_events(jid, "upload_open"))
        n_dn = len(self.coll.job_events(jid, "download_open"))
        with self.coll.lock:
            n_states = len(self.coll.states.get(jid, ()))
        def answered(j):
            with self.coll.lock:
                return len(self.coll.states.get(j, ())) > n_states
        self.send_job(op, answered=answered, job=jid, **(
            {"release": "12.1.%d.0" % self.release_n} if op == "transfer" else {}))
        with self.coll.lock:
            again = self.coll.states[jid][n_states]
        if (again["state"], again.get("reason")) != (m0["state"], m0.get("reason")):
            raise Unexpected("job %s sent again: %r, first %r" % (jid, again, m0))
        if len(self.coll.job_events(jid, "upload_open")) != n_up or \
                len(self.coll.job_events(jid, "download_open")) != n_dn:
            raise Unexpected("job %s sent again ran again" % jid)
        return "ok"

    # ---- logs lane
    def logs_lane(self):
        self.with_lock(False, "fetch_logs", self.op_logs)
        # Each fetch closes the current log file, and the store makes at
        # most 999 files a local day (documented): at most ~1 fetch in 6 s
        # (asan), so that an hour's soak stays far below.
        self.pace(self.p["logs_pause"])

    def op_logs(self):
        st0 = self.status()["logs"]
        lo, hi = self.p["syslog"]
        seq = self.log_seq
        self.log_seq += 1
        tokens = []

        def tok():
            t = "soak-%d-%d-%s" % (seq, len(tokens), os.urandom(4).hex())
            tokens.append(t)
            return t
        # TCP: octet-counted or LF-framed, one connection
        n_tcp = random.randint(lo, hi)
        octet = random.random() < 0.5
        buf = b""
        for _ in range(n_tcp):
            m = ("<14>1 2026-12-01T10:00:00.000Z pbx-hq soak - - - %s %s" % (
                tok(), os.urandom(random.randint(0, 150)).hex())).encode()
            buf += (b"%d %s" % (len(m), m)) if octet else m + b"\n"
        n_udp = random.randint(0, 10)
        udp = [("<13>Dec  1 10:00:01 pbx-hq soak: %s" % tok()).encode()
               for _ in range(n_udp)]
        bad = random.random() < 0.3
        n_col = random.randint(0, 10)
        col = ["%s collected" % tok() for _ in range(n_col)]
        s = socket.create_connection(("127.0.0.1", self.syslog_port), timeout=10)
        s.sendall(buf)
        s.close()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for d in udp:
            u.sendto(d, ("127.0.0.1", self.syslog_port))
        if bad:
            u.sendto(b"no pri at all", ("127.0.0.1", self.syslog_port))
            u.sendto(b"<13>bin\x00ary", ("127.0.0.1", self.syslog_port))
        u.close()
        if n_col:
            if os.path.exists(self.collect_file) and random.random() < 0.2:
                old = self.collect_file + ".1"
                if os.path.exists(old):
                    os.unlink(old)
                os.rename(self.collect_file, old)
            with open(self.collect_file, "a") as f:
                f.write("".join(c + "\n" for c in col))
        want = st0["stored"] + n_tcp + n_udp + n_col
        want_bad = st0["malformed"] + st0["binary"] + (2 if bad else 0)
        last = [None]

        def stored():
            st = self.status()["logs"]
            last[0] = st
            if st["stored"] > want:
                raise Unexpected("log store: %d messages stored, %d sent" % (
                    st["stored"], want))
            return st["stored"] == want and st["malformed"] + st["binary"] == want_bad
        try:
            self.wait_until(stored, self.T(30), "the messages in the log store",
                            interval=0.3)
        except Unexpected as e:
            raise Unexpected("%s: %r (want stored %d, bad %d)" % (e, last[0], want, want_bad))
        with self.lock:
            self.tokens_sent += tokens
        jid = self.send_job("fetch_logs")
        m = self.wait_final(jid)
        if m["state"] != "succeeded":
            raise Unexpected("fetch_logs %s: %r" % (jid, m))
        # every message sent so far is in COM's stored logs
        self.coll.flush()
        for name in self.coll.take_log_names():
            body = self.sim.log_file(C, S, name)
            if body is None:
                continue       # replaced meanwhile: a later log_stored has it
            for line in gzip.decompress(body).decode(errors="replace").splitlines():
                for t in re.findall(r"soak-\d+-\d+-[0-9a-f]{8}", line):
                    self.tokens_seen.add(t)
        missing = [t for t in self.tokens_sent if t not in self.tokens_seen]
        if missing:
            raise Unexpected("fetch_logs %s: %d messages not in COM's logs, e.g. %s"
                             % (jid, len(missing), missing[:3]))
        return "ok"

    # ---- custom lane
    def random_members(self, part):
        if part == "templates":
            names = random.sample(["t1.xml", "t2.xml", "t3.xml", "t4.xml"],
                                  random.randint(1, 3))
            return {n: ("<template n='%s'>%s</template>\n" % (n, os.urandom(8).hex())).encode()
                    for n in names}
        names = random.sample(["46xxspecials.txt", "a.png", "b.png", "c.png",
                               "d.jpg", "e.gif"], random.randint(1, 4))
        out = {n: os.urandom(random.randint(16, 2048)).hex().encode() for n in names}
        if random.random() < 0.3:
            out[random.choice(names)] = os.urandom(
                random.randint(1, self.p["big_member"]) // 2 + 1).hex().encode()
        return out

    def set_custom(self, level, part, members):
        name = PHONES if part == "phones" else TEMPLATES
        ids = {"provider": {}, "reseller": {"reseller": R},
               "system": {"customer": C, "system": S}}[level]
        if members is None:
            st, _ = self.sim.delete_custom_file(level, name, **ids)
            if st not in (200, 404):
                raise Unexpected("deleting %s at %s: %d" % (name, level, st))
        else:
            self.sim.custom_file(level, name, data=tar_bytes(sorted(members.items())),
                                 **ids)
        self.custom[level][part] = members or {}

    def refresh_expected(self, prune):
        for part in ("phones", "templates"):
            merged = {}
            for lv in LEVELS:
                merged.update(self.custom[lv][part])
            if prune:
                self.installed[part] = merged
            else:
                self.installed[part] = dict(self.installed[part], **merged)

    def check_installed(self, what):
        got = {"phones": tree(self.root, PHONE_DIR),
               "templates": tree(self.root, TEMPLATE_DIR)}
        for part in ("phones", "templates"):
            if got[part] != self.installed[part]:
                raise Unexpected("%s: installed %s %s, expected %s" % (
                    what, part, sorted(got[part]), sorted(self.installed[part])))

    def custom_lane(self):
        fault = random.choice([None, None, None, "drop", "corrupt", "list", "hostile"])
        kind = "refresh" + ("+" + fault if fault else "")
        self.with_lock(fault not in (None, "hostile"), kind,
                       lambda: self.op_refresh(fault))
        self.pace(self.p["job_pause"])

    def op_refresh(self, fault):
        # COM's folders change: a level's tar replaced or removed
        for _ in range(random.randint(0, 3)):
            lv = random.choice(LEVELS)
            part = random.choice(("phones", "templates"))
            members = None if random.random() < 0.2 else self.random_members(part)
            if part == "templates" and members is not None:
                # at most 4 templates installed in all (the agent's limit)
                have = set(self.installed["templates"])
                for other in LEVELS:
                    if other != lv:
                        have |= set(self.custom[other]["templates"])
                if len(have | set(members)) > 4:
                    continue
            self.set_custom(lv, part, members)
        prune = random.random() < 0.3
        hostile_old = None
        if fault == "hostile":
            hostile_old = self.custom["system"]["phones"]
            self.sim.custom_file("system", PHONES, data=tar_bytes(
                [("ok.png", b"fine"), ("../evil.png", b"bad")]), customer=C, system=S)
        files = self.sim.custom_files(C, S)
        total = sum(f["size"] for lv in files["levels"] for f in lv["files"]
                    if f["name"] != "CustomData.xml")
        t0 = now()
        w = None
        if fault == "drop" and total > 1:
            self.sim.download_fault(C, S, drop_after=random.randint(1, total - 1))
            w = self.open_window("custom download drop")
        elif fault == "corrupt":
            self.sim.download_fault(C, S, corrupt=True)
        elif fault == "list":
            self.sim.custom_list_fault(C, S, "error", count=1)
        try:
            jid = self.send_job("refresh_custom", args={"prune": prune} if prune else {})
            m = self.wait_final(jid)
        finally:
            if fault in ("drop", "corrupt"):
                self.sim.download_fault(C, S, clear=True)
            if fault == "list":
                self.sim.custom_list_fault(C, S, "none")
            if w:
                self.wait_connected()
                self.close_window(w)
        if fault == "hostile":
            # the phone files are refused at every level; the templates install
            self.set_custom("system", "phones", hostile_old or None)
            if (m["state"], m.get("reason")) != ("failed", "refused"):
                raise Unexpected("refresh %s with a hostile tar: %r" % (jid, m))
            merged = {}
            for lv in LEVELS:
                merged.update(self.custom[lv]["templates"])
            self.installed["templates"] = merged if prune else dict(
                self.installed["templates"], **merged)
            self.check_installed("refresh %s (hostile tar)" % jid)
            return "failed"
        corrupted = fault == "corrupt" and self.coll.faults_since(t0, "corrupt")
        if corrupted and m["state"] == "succeeded" and self.corrupt_fetched_again(jid, t0):
            corrupted = False      # the flipped byte went with the link (see there)
        list_failed = fault == "list" and not (m["state"] == "succeeded" and
                                               self.list_error_lost(t0))
        if list_failed or corrupted:
            if m["state"] != "failed":
                raise Unexpected("refresh %s (%s): %r" % (jid, fault, m))
            self.check_installed("refresh %s (%s, failed)" % (jid, fault))
            return "failed"
        if m["state"] != "succeeded":
            raise Unexpected("refresh %s (%s): %r" % (jid, fault, m))
        self.refresh_expected(prune)
        self.check_installed("refresh %s" % jid)
        return "ok"

    def list_error_lost(self, t0):
        """Whether COM's "unavailable" answer to custom.list (the list
        fault, one answer) went with a link the soak's disruption closed
        (or its follow-on): the agent asks again on the next link
        (PROTOCOL.md 3.5), COM answers the list, and the refresh rightly
        succeeds. Only a later list answered on another link, with a
        disruption the soak caused in between, explains a success."""
        lists = self.coll.custom_lists_since(t0)
        err = [e for e in lists if e.get("answer") == "error"]
        if not err:
            return False
        again = [e for e in lists if e["t"] >= err[0]["t"] and
                 e.get("answer") == "custom.files" and e.get("link") != err[0].get("link")]
        return bool(again) and self.disrupted(err[0]["t"], again[0]["t"])

    # ---- tunnel lane: a pool of workers
    def tunnel_lane(self):
        busy = threading.Semaphore(self.p["tunnels"])
        workers = []
        while not self.stop_ev.is_set() and not self.paused.is_set():
            if not busy.acquire(timeout=0.2):
                continue
            kind = random.choices(
                ["tunnel_echo", "tunnel_sink", "tunnel_source", "tunnel_long",
                 "tunnel_refused", "tunnel_unreachable"], [5, 3, 2, 1, 1, 1])[0]
            fn = getattr(self, "op_" + kind)

            def work(kind=kind, fn=fn):
                try:
                    self.run_op(kind, fn)
                finally:
                    busy.release()
            t = threading.Thread(target=work, daemon=True, name=kind)
            t.start()
            workers.append(t)
            workers = [w for w in workers if w.is_alive()]
            self.pace(self.p["tunnel_pause"])
        for t in workers:
            t.join()

    def tunnel(self, port, what):
        """CONNECT through COM's proxy; (t0, tunnel) or raises."""
        self.wait_clear()
        t0 = now()
        try:
            r = tk.proxy_connect(self.sim.proxy_port, self.sim.ca,
                                 "%s.maint.%s:%d" % (C, tk.COM_DOMAIN, port),
                                 timeout=self.T(20))
        except (OSError, ssl.SSLError, tk.ProxyClosed) as e:
            return t0, self.interrupted(t0, "%s: CONNECT: %r" % (what, e))
        if r.status != 200:
            return t0, self.interrupted(t0, "%s: CONNECT answered %s %s %r" % (
                what, r.status, r.headers.get("x-com-reason"), r.body[:200]))
        return t0, r.tunnel

    def interrupted(self, t0, why):
        """A transport failure: expected when it overlapped a link loss."""
        if self.disrupted(t0, now()):
            return None
        raise Unexpected(why)

    def op_tunnel_echo(self):
        t0, tun = self.tunnel(22, "echo")
        if tun is None:
            return "failed"
        data = random.randbytes(random.randint(*self.p["echo"]))
        try:
            banner = tun.readline(self.T(20))
            if not banner.startswith(b"ECHO 127.0.0.1:"):
                raise Unexpected("echo tunnel: banner %r" % banner)
            pos = 0
            while pos < len(data):
                n = min(len(data) - pos, random.choice((1, 100, 4096, 16384, 65536)))
                chunk = data[pos:pos + n]
                tun.send(chunk)
                got = tun.recv_exact(n, self.T(30))
                if got != chunk:
                    raise Unexpected("echo tunnel: bytes %d..%d came back different"
                                     % (pos, pos + n))
                pos += n
        except (AssertionError, OSError, ssl.SSLError) as e:
            tun.close()
            return "failed" if self.interrupted(t0, "echo tunnel: %r" % e) is None else "ok"
        tun.close()
        return "ok"

    def op_tunnel_long(self):
        """An interactive session: a few bytes now and then for a while."""
        t0, tun = self.tunnel(22, "long")
        if tun is None:
            return "failed"
        until = time.monotonic() + random.uniform(*self.p["long_tunnel"])
        try:
            tun.readline(self.T(20))
            while time.monotonic() < until and not self.stop_ev.is_set() \
                    and not self.paused.is_set():
                b = os.urandom(random.randint(1, 200))
                tun.send(b)
                if tun.recv_exact(len(b), self.T(30)) != b:
                    raise Unexpected("long tunnel: echo differs")
                self.stop_ev.wait(random.uniform(0.2, 2.0))   # the user's pace
        except (AssertionError, OSError, ssl.SSLError) as e:
            tun.close()
            return "failed" if self.interrupted(t0, "long tunnel: %r" % e) is None else "ok"
        tun.close()
        return "ok"

    def op_tunnel_sink(self):
        t0, tun = self.tunnel(443, "sink")
        if tun is None:
            return "failed"
        data = random.randbytes(random.randint(*self.p["sink"]))
        want = sha(data)
        try:
            tun.sock.settimeout(self.T(60))
            tun.sock.sendall(data)
            try:
                tun.sock.settimeout(self.T(10))
                tun.sock.unwrap().close()
            except (OSError, ssl.SSLError, ValueError):
                tun.close()
        except (OSError, ssl.SSLError) as e:
            tun.close()
            return "failed" if self.interrupted(t0, "sink tunnel: %r" % e) is None else "ok"

        def arrived():
            mine = [c for c in self.sink.connections() if c.t_open >= t0]
            for c in mine:
                if c.closed and c.bytes_in == len(data) and c.sha.hexdigest() == want:
                    return "ok"
            # cut by a link loss: every connection since is over, none whole
            if self.disrupted(t0, now()) and all(c.closed for c in mine):
                return "failed"
            return None
        try:
            return self.wait_until(arrived, self.T(30), "%d bytes at the sink" % len(data))
        except Unexpected:
            if self.interrupted(t0, "sink tunnel: %d bytes never arrived whole"
                                % len(data)) is None:
                return "failed"
        return "ok"

    def op_tunnel_source(self):
        t0, tun = self.tunnel(7071, "source")
        if tun is None:
            return "failed"
        got = tun.buf
        tun.sock.settimeout(self.T(60))
        err = None
        try:
            while True:
                b = tun.sock.recv(262144)
                if not b:
                    break
                got += b
        except (OSError, ssl.SSLError) as e:
            err = e
        tun.close()
        if not self.source_bytes.startswith(got):
            raise Unexpected("source tunnel: %d bytes arrived, not what the server sent"
                             % len(got))
        if len(got) != len(self.source_bytes):
            if self.interrupted(t0, "source tunnel: %d of %d bytes (%r)" % (
                    len(got), len(self.source_bytes), err)) is None:
                return "failed"
        return "ok"

    def op_tunnel_refused(self):
        self.wait_clear()
        t0 = now()
        port = random.choice((25, 3389, 80))
        try:
            r = tk.proxy_connect(self.sim.proxy_port, self.sim.ca,
                                 "%s.maint.%s:%d" % (C, tk.COM_DOMAIN, port),
                                 timeout=self.T(20))
        except (OSError, ssl.SSLError, tk.ProxyClosed) as e:
            self.interrupted(t0, "refused tunnel: %r" % e)
            return "failed"
        if r.tunnel:
            r.tunnel.close()
        if (r.status, r.headers.get("x-com-reason")) != (403, "not_allowed"):
            self.interrupted(t0, "port %d: %s %r %r" % (port, r.status, r.headers, r.body))
            return "failed"
        return "ok"

    def op_tunnel_unreachable(self):
        self.wait_clear()
        t0 = now()
        try:
            r = tk.proxy_connect(self.sim.proxy_port, self.sim.ca,
                                 "%s.maint.%s:52233" % (C, tk.COM_DOMAIN),
                                 timeout=self.T(20))
        except (OSError, ssl.SSLError, tk.ProxyClosed) as e:
            self.interrupted(t0, "unreachable tunnel: %r" % e)
            return "failed"
        if r.tunnel:
            r.tunnel.close()
        if (r.status, r.headers.get("x-com-reason")) != (502, "unreachable"):
            self.interrupted(t0, "a closed port: %s %r %r" % (r.status, r.headers, r.body))
            return "failed"
        return "ok"

    # ---- main lane: disruptions and bad input
    def main_op(self):
        r = random.random()
        if r < 0.45:
            self.run_op("bad_input", self.op_bad_input)
            return
        kind = random.choices(["drop", "restart", "stall", "oversize", "comsim_restart"],
                              [5, 3, 2, 1, 0.5])[0]
        self.run_op(kind, getattr(self, "op_" + kind))

    def disruption(self, what, action, timeout=None, pass_window=False):
        self.disruption_begin()
        w = self.open_window(what)
        try:
            self.wait_connected()
            w0 = self.coll.welcomes
            if pass_window:
                action(w)
            else:
                action()
            self.wait_reconnect(w0, timeout)
        finally:
            self.close_window(w)
            self.disruption_end()
        return "ok"

    def link_admin(self, path, body=None):
        """An admin request on the link (drop, stall, send): the link may
        have gone meanwhile (a fault of a job lane): wait for it again."""
        for _ in range(5):
            st, ans = self.sim.admin_status("POST", path, dict(
                body or {}, customer=C, system=S))
            if st == 200:
                return ans
            if st not in (404, 409):
                raise Unexpected("POST %s -> %d %r" % (path, st, ans))
            # (comsim counts a link that is closing as connected until it
            # is closed: a moment, not five tries in a row)
            time.sleep(0.2)
            self.wait_connected()
        raise Unexpected("POST %s: the link keeps going away" % path)

    def op_drop(self):
        return self.disruption("drop", lambda: self.link_admin("/drop"))

    def op_restart(self):
        down = random.choice((0, 200, 1000, 2500))
        return self.disruption("restart", lambda: self.sim.admin(
            "POST", "/restart", {"down_ms": down}), self.T(30) + down / 1000)

    def op_stall(self):
        return self.disruption("stall", lambda: self.link_admin("/stall"), self.T(60))

    def op_oversize(self):
        """A 70000-byte text frame: the agent closes the link 4002 (or
        answers "malformed"; then the soak drops the link itself).
        The job lanes are held out meanwhile (exclusive, as for a comsim
        restart): a fault armed by one of them (a dropped upload or
        download) could close the link at the moment the frame goes, and
        the frame, never read, would get no 4002. The reaction looked for
        is the one of the link the frame went on (comsim's "sent" event):
        a follow-on close of an earlier link (a 4003 "replaced" after a
        stall) is not it, and is left to the attribution at the end."""
        out = ["ok"]

        def act(w):
            n0 = len(self.coll.closes)
            t0 = now()
            bid = self.next_id()
            big = '{"type":"frobnicate","id":%d,"pad":"%s"}' % (bid, "x" * 70000)
            self.link_admin("/send", {"raw": big})

            def reaction():
                with self.coll.lock:
                    link = self.coll.raw_links.get(bid)
                    cl = [c for c in self.coll.closes[n0:] if c.get("link") == link] \
                        if link is not None else []
                    ans = self.coll.answers.get(bid)
                if cl:
                    return ("close", cl[0])
                if ans:
                    return ("answer", ans)
                return None
            kind, e = self.wait_until(reaction, self.T(20), "the agent's reaction to a "
                                      "70000-byte frame")
            if kind == "close" and (e.get("code"), e.get("by")) != (4002, "agent"):
                # lost otherwise first: only a follow-on loss of an earlier
                # disruption (follow_on_grace()) can explain it now; then the
                # frame may never have reached the agent
                if self.disrupted(t0, now(), but=w):
                    out[0] = "failed"
                    return
                raise Unexpected("oversized frame: link closed %r" % e)
            if kind == "answer":
                if e.get("code") != "malformed":
                    raise Unexpected("oversized frame: answered %r" % e)
                # the link stays up: make the reconnect wait a drop
                self.link_admin("/drop")
        self.acquire(True)
        try:
            self.disruption("oversize", act, pass_window=True)
        finally:
            self.release(True)
        return out[0]

    def op_comsim_restart(self):
        """The comsim process stopped and started again (same ports); its
        event numbers start again, and faults armed in it are gone, so the
        job lanes are held out (exclusive) meanwhile."""
        self.acquire(True)
        try:
            def act():
                with self.coll.lock:
                    self.coll.paused = True
                self.coll.flush()
                rc = self.sim.stop()
                if rc != 0:
                    raise Unexpected("comsim exited %s" % rc)
                self.sim.start()
                self.coll.reset()
                with self.coll.lock:
                    self.coll.paused = False
            return self.disruption("comsim restart", act, self.T(40))
        finally:
            self.release(True)

    def op_bad_input(self):
        """Text frames the agent must answer "malformed" or "unsupported",
        stream frames for streams that are not open, and messages it must
        never answer; then a barrier (an unknown type, answered after
        everything before it). The link must stay up."""
        self.wait_clear()
        t0 = now()
        w0 = self.coll.welcomes
        with self.coll.lock:
            e0 = self.coll.errors_no_re
        expect = []             # (key, want, what): answers by re / closes by stream
        maybe_no_re = []        # limits: answered with re if the id was read
        n_garbage = 0

        def send(body):
            st, ans = self.sim.admin_status("POST", "/send", dict(
                body, customer=C, system=S))
            if st != 200:
                raise ConnectionError("POST /send -> %d %r" % (st, ans))
        items = list(range(12))
        random.shuffle(items)
        try:
            for it in items[:random.randint(3, 12)]:
                i = self.next_id()          # even: COM's side of stream ids too
                if it == 0:
                    send({"raw": "this is not json{"})
                    n_garbage += 1
                elif it == 1:
                    send({"raw": '{"id":%d,"x":1}' % i})
                    expect.append((i, "malformed", "no type"))
                elif it == 2:
                    send({"message": {"type": "soak.frob", "id": i, "x": {"y": [1, 2]}}})
                    expect.append((i, "unsupported", "unknown type"))
                elif it == 3:
                    send({"raw": '{"type":"frobnicate","id":%d,"n":%s1%s}'
                          % (i, "[" * 20, "]" * 20)})
                    maybe_no_re.append((i, "nesting 20"))
                elif it == 4:
                    send({"raw": '{"type":"frobnicate","id":%d,"s":"%s"}' % (i, "y" * 5000)})
                    maybe_no_re.append((i, "a 5000-byte string"))
                elif it == 5:
                    send({"message": {"type": "stream.open", "id": i, "stream": i,
                                      "kind": "tunnel", "window": 65536}})
                    expect.append((i, "stream.close:refused", "a tunnel without port"))
                elif it == 6:
                    st, ans = self.sim.admin_status("POST", "/send_binary", {
                        "customer": C, "system": S, "stream": i,
                        "data_b64": base64.b64encode(os.urandom(100)).decode()})
                    if st != 200:
                        # The link went down under us (another lane's drop).
                        raise ConnectionError("POST /send_binary -> %d %r" % (st, ans))
                    expect.append((i, "stream.close:unknown_stream",
                                   "data for a stream not open"))
                elif it == 7:
                    send({"message": {"type": "error", "id": i, "re": 1,
                                      "code": "malformed", "message": "soak"}})
                elif it == 8:
                    send({"message": {"type": "unsupported", "id": i, "re": 1,
                                      "what": "soak"}})
                elif it == 9:
                    send({"message": {"type": "ack", "id": i, "re": 123456789}})
                elif it == 10:
                    send({"raw": "".join(chr(random.randrange(32, 127)) for _ in range(
                        random.randint(1, 300))).replace("{", "(")})
                    n_garbage += 1
                else:
                    fields = ",".join('"f%d":%d' % (k, k) for k in range(70))
                    send({"raw": '{"type":"frobnicate","id":%d,%s}' % (i, fields)})
                    maybe_no_re.append((i, "70 fields"))
            bid = self.next_id()
            send({"message": {"type": "soak.barrier", "id": bid}})
            self.wait_until(lambda: self.coll.answers.get(bid), self.T(20),
                            "the answer to a barrier")
        except (ConnectionError, Unexpected) as e:
            if self.disrupted(t0, now()):
                return "failed"
            raise Unexpected("bad input: %s" % e)
        problems = []
        with self.coll.lock:
            for key, want, what in expect:
                if want.startswith("stream.close:"):
                    m = self.coll.stream_closes.get(key)
                    if not m or m.get("reason") != want.split(":")[1]:
                        problems.append("%s: %r" % (what, m))
                else:
                    m = self.coll.answers.get(key)
                    if not m or not (m.get("type") == want or m.get("code") == want):
                        problems.append("%s: %r" % (what, m))
            no_re = n_garbage
            for key, what in maybe_no_re:
                m = self.coll.answers.get(key)
                if m is None:
                    no_re += 1
                elif m.get("code") != "malformed":
                    problems.append("%s: %r" % (what, m))
            got = self.coll.errors_no_re - e0
        if got != no_re:
            problems.append("%d \"malformed\" errors without re, expected %d" % (got, no_re))
        if problems:
            if self.disrupted(t0, now()):
                return "failed"
            raise Unexpected("bad input: " + "; ".join(problems))
        if self.coll.welcomes != w0 and not self.disrupted(t0, now()):
            raise Unexpected("bad input: the link was lost")
        return "ok"

    # ------------------------------------------------------------------ the run
    def quiesce(self, what):
        """Every lane idle, no tunnel open, link up; then the median of 5
        RSS samples (an observation window, not a wait)."""
        self.paused.set()
        self.wait_until(lambda: all(self.idle.values()), self.T(300),
                        "the lanes to finish (%s)" % what, interval=0.2)
        self.wait_connected(self.T(60))
        self.wait_until(lambda: not self.sim.tunnels(), self.T(30),
                        "comsim's tunnels to close")
        samples = []
        for _ in range(5):
            st = proc_status(self.agent.pid)
            sh = shadow_kib(self.agent.pid) if self.args.tool == "asan" else 0
            samples.append((st["VmRSS"], st.get("RssAnon", 0), sh))
            time.sleep(0.5)
        heap = heap_in_use(self.args.tool, self.agent.pid)
        return (int(statistics.median(s[0] for s in samples)),
                int(statistics.median(s[1] for s in samples)), heap,
                int(statistics.median(s[2] for s in samples)))

    def resume(self):
        self.paused.clear()
        # the tunnel lane returns when paused: start it again
        self.start_tunnel_lane()

    def start_tunnel_lane(self):
        t = threading.Thread(target=self.tunnel_lane, daemon=True, name="tunnel")
        self.tunnel_thread = t
        t.start()

    def run(self):
        a = self.args
        p = self.p
        warm = a.warmup if a.warmup is not None else max(
            p["warmup_min"], p["warmup_frac"] * a.seconds)
        warm = min(warm, a.seconds / 2)
        self.finishing = False
        self.t_run = now()
        end = self.t_run + a.seconds
        self.lane("ops", self.ops_lane)
        self.lane("logs", self.logs_lane)
        self.lane("custom", self.custom_lane)
        self.idle["tunnel"] = False
        self.start_tunnel_lane()
        self.rss_start = None
        next_report = now() + 30
        while now() < end and not self.stop_ev.is_set():
            if self.rss_start is None and now() >= self.t_run + warm:
                self.pause_tunnels()
                try:
                    self.rss_start = self.quiesce("warm-up")
                except Unexpected as e:
                    self.fail("quiesce", str(e))
                    break
                self.t_rss_start = now()
                print("soak: warm-up over after %.0fs: RSS %d KiB (anon %d KiB), "
                      "heap in use %s bytes" % (now() - self.t_run, *self.rss_start[:3]),
                      flush=True)
                self.resume()
            self.main_op()
            if now() >= next_report:
                next_report = now() + 30
                self.progress()
            if not self.stop_ev.is_set():
                self.pace(p["main_pause"])
        self.finishing = True
        self.rss_end = None
        if not self.unexpected:
            self.pause_tunnels()
            try:
                self.rss_end = self.quiesce("end")
            except Unexpected as e:
                self.fail("quiesce", str(e))
        self.stop_ev.set()
        for t in self.lanes + [self.tunnel_thread]:
            t.join(self.T(120))
        self.t_work_end = now()

    def pause_tunnels(self):
        self.paused.set()
        self.tunnel_thread.join(self.T(300))
        self.idle["tunnel"] = True

    def progress(self):
        with self.lock:
            ops = sum(sum(d.values()) for d in self.stats.values())
            rss = self.rss[-1][1] if self.rss else 0
        print("soak: %4.0fs  %d ops  %d welcomes  RSS %d KiB" % (
            now() - self.t_run, ops, self.coll.welcomes, rss), flush=True)

    # ------------------------------------------------------------------ end
    def stop_agent(self):
        out = {"exit": "not started", "sanitizer_reports": []}
        p = self.agent
        if p is None:
            return out
        with open(self.agent_log, errors="replace") as f:
            early = " main: stopping" in f.read()
        if early or p.poll() is not None:
            # not the soak's doing: some other process signalled the agent
            out["stopped_before_sigterm"] = True
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(self.T(30) + 60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = "killed (ignored SIGTERM)"
        self.logf.close()
        out["exit"] = rc
        with open(self.agent_log, errors="replace") as f:
            log = f.read()
        out["sanitizer_reports"] = [m for m in SANITIZER_MARKS if m in log]
        if self.args.tool == "valgrind":
            out.update(self.parse_valgrind())
        return out

    def parse_valgrind(self):
        try:
            with open(self.vg_log, errors="replace") as f:
                text = f.read()
        except OSError:
            return {"valgrind": "no log %s" % self.vg_log}

        def num(pat):
            m = re.findall(pat, text)
            return int(m[-1].replace(",", "")) if m else 0
        out = {
            "errors": num(r"ERROR SUMMARY: ([\d,]+) errors"),
            "definitely_lost": num(r"definitely lost: ([\d,]+) bytes"),
            "indirectly_lost": num(r"indirectly lost: ([\d,]+) bytes"),
            "possibly_lost": num(r"possibly lost: ([\d,]+) bytes"),
            "still_reachable": num(r"still reachable: ([\d,]+) bytes"),
            "summary_found": "ERROR SUMMARY" in text,
        }
        return out

    def finish(self, agent_out):
        a = self.args
        problems = list(e["kind"] + ": " + e["error"].splitlines()[0]
                        for e in self.unexpected)
        # link losses the soak did not cause
        with self.lock:
            wins = list(self.windows)
        # a close is the soak's when it falls in a window (1 s before its
        # start: comsim's clock and ours, the order of the event and of
        # open_window) or within follow_on_grace() after its end: a
        # follow-on loss, such as a 4003 "replaced" after a stall
        grace = self.grace
        unexplained = [c for c in self.coll.closes if c["t"] <= self.t_work_end
                       and not any(w[0] - 1 <= c["t"] and (w[1] is None or c["t"] <= w[1] + grace)
                                  for w in wins)]
        if unexplained:
            problems.append("%d link losses the soak did not cause, first %r" % (
                len(unexplained), unexplained[0]))
        if self.coll.anomalies:
            problems.append("%d protocol anomalies, first %r" % (
                len(self.coll.anomalies), self.coll.anomalies[0]))
        problems += self.cli_problems
        if agent_out.get("stopped_before_sigterm"):
            problems.append("the agent stopped (or began to) before the soak's SIGTERM")
        if agent_out["exit"] != 0:
            problems.append("agent exited %s after SIGTERM" % agent_out["exit"])
        if agent_out["sanitizer_reports"]:
            problems.append("sanitizer report in %s: %s" % (
                self.agent_log, ", ".join(agent_out["sanitizer_reports"])))
        if a.tool == "valgrind":
            if not agent_out.get("summary_found"):
                problems.append("no ERROR SUMMARY in %s" % self.vg_log)
            for k in ("errors", "definitely_lost", "indirectly_lost"):
                if agent_out.get(k):
                    problems.append("valgrind: %s %d (see %s)" % (k, agent_out[k],
                                                                   self.vg_log))
        rss = {"threshold_kib": a.rss_max_kib, "heap_threshold_kib": a.heap_max_kib,
               "samples": len(self.rss)}
        if self.rss:
            rss["peak_kib"] = max(s[1] for s in self.rss)
            rss["first_kib"] = self.rss[0][1]
        if self.rss_start and self.rss_end:
            rss.update(start_kib=self.rss_start[0], end_kib=self.rss_end[0],
                       growth_kib=self.rss_end[0] - self.rss_start[0],
                       start_anon_kib=self.rss_start[1], end_anon_kib=self.rss_end[1],
                       anon_growth_kib=self.rss_end[1] - self.rss_start[1],
                       heap_start=self.rss_start[2], heap_end=self.rss_end[2],
                       shadow_start_kib=self.rss_start[3], shadow_end_kib=self.rss_end[3],
                       measured_s=round(self.t_work_end - self.t_rss_start))
            after = [s for s in self.rss if s[0] >= self.t_rss_start]
            if len(after) > 10:
                rss["slope_kib_per_h"] = kib_per_hour(after)
                rss["slope_last_half_kib_per_h"] = kib_per_hour(after[len(after) // 2:])
                rss["max_after_warmup_kib"] = max(s[1] for s in after)
            if None in (self.rss_start[2], self.rss_end[2]):
                problems.append("the heap in use could not be measured (gdb / vgdb)")
            else:
                rss["heap_growth"] = self.rss_end[2] - self.rss_start[2]
                if rss["heap_growth"] > a.heap_max_kib * 1024:
                    problems.append("the heap in use grew %d bytes after the warm-up "
                                    "(%d -> %d), more than %d KiB" % (
                                        rss["heap_growth"], self.rss_start[2],
                                        self.rss_end[2], a.heap_max_kib))
            if rss["growth_kib"] > a.rss_max_kib:
                problems.append("RSS grew %d KiB after the warm-up (%d -> %d KiB), "
                                "more than %d KiB" % (rss["growth_kib"], rss["start_kib"],
                                                     rss["end_kib"], a.rss_max_kib))
        elif not self.unexpected:
            problems.append("no RSS figures (run shorter than the warm-up?)")
        # the series, at most ~720 points: (s since the run began, VmRSS, RssAnon)
        step = max(1, len(self.rss) // 720)
        rss["series"] = [(round(t - self.t_run, 1), v, an)
                         for t, v, an in self.rss[::step]]
        ops = {k: dict(v) for k, v in sorted(self.stats.items())}
        self.result = {
            "tool": a.tool, "binary": os.path.abspath(a.bin),
            "binary_sha256": getattr(self, "bin_sha", None), "command": self.cmd,
            "seed": a.seed, "seconds": a.seconds,
            "duration_s": round(self.t_work_end - self.t_run, 1),
            "total_s": round(now() - self.t_start, 1),
            "rss": rss, "ops": ops,
            "ops_total": sum(sum(v.values()) for v in ops.values()),
            "welcomes": self.coll.welcomes, "link_closes": len(self.coll.closes),
            "comsim_events": self.coll.events_seen,
            "agent": agent_out, "unexpected": self.unexpected,
            "problems": problems, "pass": not problems,
            "asan_options": a.asan_options if a.tool == "asan" else None,
            "agent_log": self.agent_log,
            "valgrind_log": self.vg_log if a.tool == "valgrind" else None,
        }
        path = os.path.join(self.out_dir, "%s.json" % a.tool)
        with open(path, "w") as f:
            json.dump(self.result, f, indent=1)
        self.print_summary(path)
        return not problems

    def print_summary(self, path):
        r = self.result
        print()
        print("== soak %s: %s (%.0f s of work, seed %d) -> %s" % (
            r["tool"], "PASS" if r["pass"] else "FAIL", r["duration_s"], r["seed"], path))
        print("%-24s %7s %7s %10s" % ("operation", "ok", "failed", "unexpected"))
        tot = [0, 0, 0]
        for k, v in r["ops"].items():
            print("%-24s %7d %7d %10d" % (k, v["ok"], v["failed"], v["unexpected"]))
            tot = [tot[0] + v["ok"], tot[1] + v["failed"], tot[2] + v["unexpected"]]
        print("%-24s %7d %7d %10d" % ("total", *tot))
        print("(failed = the documented failure: a faulted transfer, a refused tar, or a "
              "tunnel/bad-input round cut by a link loss the soak caused)")
        rs = r["rss"]
        if "start_kib" in rs:
            print("RSS after warm-up %d KiB, at the end %d KiB (%+d KiB, limit +%d); "
                  "RssAnon %d -> %d KiB; peak %d KiB; slope %s KiB/h over %d s "
                  "(last half %s KiB/h)" % (
                      rs["start_kib"], rs["end_kib"], rs["growth_kib"], rs["threshold_kib"],
                      rs["start_anon_kib"], rs["end_anon_kib"], rs["peak_kib"],
                      rs.get("slope_kib_per_h"), rs["measured_s"],
                      rs.get("slope_last_half_kib_per_h")))
            print("heap in use after warm-up %s bytes, at the end %s bytes (%s, limit +%d KiB)"
                  % (rs["heap_start"], rs["heap_end"],
                     "%+d" % rs["heap_growth"] if "heap_growth" in rs else "?",
                     rs["heap_threshold_kib"]))
            if r["tool"] == "asan":
                print("of the RSS, ASan's shadow memory: %d -> %d KiB" % (
                    rs["shadow_start_kib"], rs["shadow_end_kib"]))
        ag = r["agent"]
        if r["tool"] == "valgrind":
            print("valgrind: %s errors; lost: definitely %s, indirectly %s, possibly %s "
                  "bytes; still reachable %s bytes; exit %s" % (
                      ag.get("errors"), ag.get("definitely_lost"), ag.get("indirectly_lost"),
                      ag.get("possibly_lost"), ag.get("still_reachable"), ag["exit"]))
        else:
            print("ASan/UBSan/LSan: %s; exit %s" % (
                ", ".join(ag["sanitizer_reports"]) or "no report", ag["exit"]))
        print("welcomes %d, link closes %d" % (r["welcomes"], r["link_closes"]))
        for p in r["problems"]:
            print("PROBLEM: " + p)

    def cleanup(self):
        if self.agent and self.agent.poll() is None:
            self.agent.kill()
            self.agent.wait()
        if self.coll:
            with self.coll.lock:
                self.coll.stop_flag = True
        for s in self.servers:
            s.stop()
        if self.sim:
            comsim_log = self.sim.log()
            try:
                rc = self.sim.stop()
            except RuntimeError:
                rc = "killed"
                self.sim.kill()
            lines = comsim_log.splitlines()
            with open(os.path.join(self.out_dir, "%s-comsim.log" % self.args.tool), "w") as f:
                f.write("\n".join(lines[-3000:]) + "\n")
            if "Traceback" in comsim_log:
                print("soak: comsim raised internally (see %s-comsim.log)" % self.args.tool)
            if self.result and rc not in (0, None):
                print("soak: comsim exited %s" % rc)
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tool", choices=sorted(PROFILES), required=True)
    ap.add_argument("--bin", help="the agent binary (default: build/asan/comagent "
                    "for asan, build/host/comagent for valgrind)")
    ap.add_argument("--wrapper", help="command the agent runs under (valgrind: "
                    "default %r)" % VALGRIND)
    ap.add_argument("--seconds", type=float, default=3600)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--warmup", type=float, help="seconds before the start RSS "
                    "(default: max(60 s, 10%%) asan, max(75 s, 25%%) valgrind)")
    ap.add_argument("--rss-max-kib", type=int, help="allowed RSS growth after the "
                    "warm-up (default 2048 asan, 1024 valgrind)")
    ap.add_argument("--heap-max-kib", type=int, default=256, help="allowed growth "
                    "of the heap in use after the warm-up (default 256)")
    ap.add_argument("--asan-options", default=ASAN_OPTIONS, help="ASAN_OPTIONS "
                    "(default %(default)s)")
    ap.add_argument("--out", default=os.path.join(REPO, "build", "soak"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    # `kill -USR1 <soak pid>` prints every thread's stack (a stuck lane)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    if args.bin is None:
        args.bin = os.path.join(REPO, "build", "asan" if args.tool == "asan" else "host",
                                "comagent")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    if args.rss_max_kib is None:
        args.rss_max_kib = PROFILES[args.tool]["rss_max_kib"]
    if not os.access(args.bin, os.X_OK):
        sys.exit("soak: %s is not an executable (make it first)" % args.bin)
    soak = Soak(args)
    ok = False
    try:
        try:
            soak.start()
        except Unexpected as e:
            soak.fail("start", str(e))
            soak.t_run = soak.t_work_end = now()
            soak.rss_start = soak.rss_end = None
            soak.tunnel_thread = threading.Thread(target=lambda: None)
        else:
            soak.run()
        agent_out = soak.stop_agent()
        ok = soak.finish(agent_out)
    finally:
        soak.cleanup()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

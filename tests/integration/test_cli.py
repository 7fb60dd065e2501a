"""comagent's command line: check-config, the world-readable guard, status
without a daemon, version, help."""

import os
import re
import shutil
import subprocess
import tempfile

import pytest

from conftest import COMAGENT_BIN, agent_env, need_binary, run_cli, sanitizer_report


@pytest.fixture
def root():
    d = tempfile.mkdtemp(prefix="cag-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def ca(pki):
    return os.path.join(pki, "ca.pem")


def good_lines(root, ca):
    return [
        "# comagent test configuration",
        "[com]",
        "url = wss://localhost:8443/agent/v1",
        "ca_file = %s" % ca,
        "ping_interval = 1s",
        "idle_timeout = 3s",
        "",
        "[system]",
        "profile = linux",
        "customer_id = C1001",
        "system_name = pbx-hq",
        "root = %s" % root,
        "",
        "[service_user]",
        "name = COMAdmin",
        "password = pw",
        "",
        "[log]",
        "level = debug",
    ]


def write(path, lines, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path, mode)
    return path


def clean(r):
    bad = sanitizer_report(r.stdout + r.stderr)
    assert not bad, "sanitizer report: %s\n%s" % (bad, r.stderr)


def test_check_config_ok(root, ca):
    path = write(os.path.join(root, "good.ini"), good_lines(root, ca))
    r = run_cli("check-config", "-c", path)
    clean(r)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "configuration OK" in r.stdout + r.stderr


def test_check_config_group_readable_ok(root, ca):
    path = write(os.path.join(root, "good.ini"), good_lines(root, ca), 0o640)
    r = run_cli("check-config", "-c", path)
    clean(r)
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_config_problems(root, ca):
    lines = [
        "[com]",                                    # 1
        "url = wss://localhost:8443/agent/v1",      # 2
        "ca_file = %s" % ca,                        # 3
        "ping_interval = 0s",                       # 4  out of range
        "pingg_interval = 5s",                      # 5  unknown key
        "this line has no equals sign",             # 6  syntax
        "[system]",                                 # 7
        "profile = foo",                            # 8  bad enum
        "system_name = pbx-hq",                     # 9
        "root = %s" % root,                         # 10
        "[service_user]",                           # 11
        "name = COMAdmin",                          # 12
        "password = pw",                            # 13
        # customer_id missing (required)
    ]
    path = write(os.path.join(root, "bad.ini"), lines)
    r = run_cli("check-config", "-c", path)
    clean(r)
    assert r.returncode != 0
    assert "configuration OK" not in r.stdout
    err = r.stderr.splitlines()
    located = {}
    pat = re.compile(r"^%s:(\d+): (.+)$" % re.escape(path))
    for ln in err:
        m = pat.match(ln)
        if m:
            located.setdefault(int(m.group(1)), []).append(m.group(2))
    msg = "stderr was:\n" + r.stderr

    def at(line, word=None):
        assert line in located, "no problem reported at line %d; %s" % (line, msg)
        if word:
            assert any(word in t for t in located[line]), \
                "line %d's message does not name %r; %s" % (line, word, msg)
    at(4, "ping_interval")
    at(5, "pingg_interval")
    at(6)
    at(8, "profile")
    assert any("customer_id" in ln and ln.startswith(path + ":") for ln in err), \
        "missing customer_id not reported as FILE:LINE: ...; " + msg
    for ln in err:
        if ln.strip():
            assert ln.startswith(path + ":"), "not FILE:LINE: message: %r; %s" % (ln, msg)
    # no problem invented on good lines
    for good in (1, 2, 3, 7, 9, 10, 11, 12, 13):
        assert good not in located, "spurious problem at line %d; %s" % (good, msg)


def test_world_readable_refused(root, ca):
    path = write(os.path.join(root, "open.ini"), good_lines(root, ca), 0o644)
    r = run_cli("check-config", "-c", path)
    clean(r)
    assert r.returncode != 0
    assert path in r.stderr and "world-readable" in r.stderr, r.stderr

    need_binary()
    p = subprocess.Popen([COMAGENT_BIN, "run", "-c", path], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=agent_env(),
                         stdin=subprocess.DEVNULL)
    try:
        out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail("comagent run started with a world-readable password file")
    assert p.returncode != 0
    assert path in err and "world-readable" in err, err
    assert not sanitizer_report(err), err


def test_missing_config_file(root):
    path = os.path.join(root, "nope.ini")
    r = run_cli("check-config", "-c", path)
    clean(r)
    assert r.returncode != 0 and path in r.stderr


def test_status_without_daemon(root, ca):
    path = write(os.path.join(root, "good.ini"), good_lines(root, ca))
    r = run_cli("status", "-c", path, "--json")
    clean(r)
    assert r.returncode != 0
    assert r.stderr.strip()


def test_version():
    r = run_cli("version")
    clean(r)
    assert r.returncode == 0
    assert re.fullmatch(r"comagent \d+\.\d+\.\d+\S*\n?", r.stdout), repr(r.stdout)


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"]])
def test_help(args):
    r = run_cli(*args)
    clean(r)
    assert r.returncode == 0, r.stderr
    assert "usage" in r.stdout.lower(), r.stdout


def test_top_level_help_lists_commands():
    r = run_cli("--help")
    for cmd in ("run", "status", "check-config", "version"):
        assert cmd in r.stdout


def test_unknown_command():
    r = run_cli("frobnicate")
    clean(r)
    assert r.returncode != 0
    assert r.stderr.strip()

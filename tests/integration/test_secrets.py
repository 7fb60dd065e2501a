"""Secrets never reach a log or an answer: the service user's and the
proxy's passwords are distinctive here, and every place the agent writes
or prints is searched for them after it connected, was refused, ran a job
and answered the CLI."""
import os

from conftest import DEFAULT_CUSTOMER, wait_until

SECRET = "Sentinel-Pw-7f3a9c"
PROXY_SECRET = "Proxy-Sentinel-51e0"


def test_passwords_never_logged_or_printed(comsim, agent):
    rec = dict(DEFAULT_CUSTOMER, password=SECRET)
    sim = comsim([rec])
    a = agent(sim, {"log": {"file": "var/log/comagent/comagent.log",
                            "level": "debug"}}, password=SECRET, start=False)
    a.start()
    a.wait_connected()
    outputs = []
    for args in (("status",), ("status", "--json"), ("jobs", "--json"),
                 ("settings", "show"), ("check-config",), ("custom-files",)):
        r = a.cli(*args)
        outputs.append(r.stdout + r.stderr)
    # Refused: COM says the credentials are wrong; the agent logs that.
    sim.admin("POST", "/customers", dict(rec, state="auth_failed"))
    sim.admin("POST", "/drop", {"customer": "C1001", "system": "pbx-hq"})
    wait_until(lambda: "Authorization failed" in a.status()["state"], 15,
               "the refusal")
    outputs.append(a.cli("status").stdout)
    a.stop()
    logs = [a.log()]
    for dp, _, fs in os.walk(os.path.join(a.root, "var/log")):
        for f in fs:
            with open(os.path.join(dp, f), errors="replace") as fh:
                logs.append(fh.read())
    assert len(logs) >= 2 and "Authorization failed" in "".join(logs)
    for text in logs + outputs:
        assert SECRET not in text
    # A config line with a bad password value is reported without it.
    with open(a.ini, "a") as f:
        f.write("[service_user]\npassword = %s\n" % ("x" * 112 + SECRET))
    r = a.cli("check-config")
    assert r.returncode == 2 and "password" in r.stderr, r.stderr
    assert SECRET not in r.stdout + r.stderr


def test_proxy_password_never_logged(comsim, agent, proxy):
    sim = comsim()
    px = proxy(user="u", password=PROXY_SECRET)
    a = agent(sim, {"com": {"proxy": "127.0.0.1:%d" % px.port, "proxy_user": "u",
                            "proxy_password": PROXY_SECRET},
                    "log": {"level": "debug"}})
    a.wait_connected()
    r = a.cli("status", "--json")
    a.stop()
    for text in (a.log(), r.stdout, r.stderr):
        assert PROXY_SECRET not in text

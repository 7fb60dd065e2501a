"""A short end-to-end pass over the agent's main paths: connect, status,
one tunnel, one custom-files refresh. It runs in the host suite and is
what `make TARGET=armhf check-smoke` runs against the cross-built binary
under qemu (COMAGENT_BIN names a wrapper then), so it uses nothing of the
test build (no test-only control requests, no sanitizer)."""
import os

import tunnelkit as tk
from conftest import wait_until

C, S = "C1001", "pbx-hq"


def test_smoke_connect_status_tunnel_refresh(comsim, agent, tcp_server):
    sim = comsim()
    echo = tcp_server()
    sim.custom_file("provider", "CustomPhoneFiles.tar",
                    files={"46xxspecials.txt": "SET A 1\n", "logo.png": "PNG"})
    a = agent(sim, {"services": {"ssh": str(echo.port)}}, start=False)
    path = os.path.join(a.root, "var/lib/comagent/settings")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("remoteaccess=1\n")
    a.start()
    a.wait_connected(30)
    st = a.status()
    assert st["state"] == "Connection successful", st

    r = tk.proxy_connect(sim.proxy_port, sim.ca, tk.maint() + ":22")
    assert r.status == 200, r
    try:
        # The echo server greets, then echoes.
        r.tunnel.send(b"ping through the agent\n")
        got = b""
        while b"ping through the agent\n" not in got:
            got += r.tunnel.recv_exact(1)
        assert got.startswith(b"ECHO 127.0.0.1:"), got
    finally:
        r.tunnel.close()

    # The first connect's refresh installed the provider's phone files.
    wait_until(lambda: a.status()["custom"]["refresh"] == "succeeded", 30,
               "the first custom-files refresh")
    d = os.path.join(a.root, "opt/ipoffice/system/primary")
    assert sorted(n for n in os.listdir(d)
                  if os.path.isfile(os.path.join(d, n))) == \
        ["46xxspecials.txt", "logo.png"]
    r = a.cli("custom-files")
    assert r.returncode == 0 and "logo.png" in r.stdout, r

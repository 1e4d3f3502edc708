#!/usr/bin/env python3
"""Side by side, in private namespaces: `nicslice attach`/`detach`, a CNI ADD/DEL
of the same binary (nicslice-macvlan + nicslice-ipam), the same with
`"hostAccess": true` (the pod routed through the master's shim), and the equivalent `ip`
sequence (link into the container, address, up, default route; `ip link del`);
then `nicslice network rm --force` of N endpoints against one link delete.

Every contender is a process started from this one, which has entered the
"host" namespace itself (no `ip netns exec` in the way); rounds rotate the
order. Medians in ms. Root only; everything it makes is named `nsb-*` and
removed at the end.

    scripts/bench-attach.py [--binary target/x86_64-unknown-linux-gnu/release/nicslice]
                            [--runs 100] [--rm 40,100]
"""

import argparse
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

CLONE_NEWNET = 0x40000000
PFX = f"nsb{os.getpid() % 10000}"
HOST, SWITCH, CTR = f"{PFX}-host", f"{PFX}-sw", f"{PFX}-ctr"
# A pod that stays attached with hostAccess for the whole run, so the shim
# exists already, as on a node with pods: what a pod's ADD adds, not the
# first pod's shim.
RESIDENT = f"{PFX}-res"
libc = ctypes.CDLL(None, use_errno=True)


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def enter(name):
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        sys.exit(f"setns {name}: {os.strerror(ctypes.get_errno())}")
    os.close(fd)


def timed(args, env=None, stdin=None):
    t = time.perf_counter()
    p = subprocess.run(args, env=env, input=stdin, capture_output=True, text=True)
    dt = (time.perf_counter() - t) * 1000
    if p.returncode != 0:
        sys.exit(f"{' '.join(args)} failed: {p.stderr}{p.stdout}")
    return dt


def setup():
    for ns in (HOST, SWITCH, CTR, RESIDENT):
        sh("ip", "netns", "add", ns)
    sh("ip", "-n", SWITCH, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", SWITCH, "addr", "add", "192.168.0.1/24", "dev", "br0")
    sh("ip", "-n", SWITCH, "link", "set", "br0", "up")
    sh("ip", "-n", HOST, "link", "add", "eth0", "type", "veth", "peer", "name", "p0",
       "netns", SWITCH)
    sh("ip", "-n", SWITCH, "link", "set", "p0", "master", "br0", "up")
    sh("ip", "-n", HOST, "link", "set", "eth0", "up")
    # The host's own address on the parent, which hostAccess borrows.
    sh("ip", "-n", HOST, "addr", "add", "192.168.0.254/24", "dev", "eth0")
    for ns in (HOST, CTR):
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def teardown():
    for ns in (HOST, SWITCH, CTR, RESIDENT):
        sh("ip", "netns", "del", ns, check=False)
    for i in range(1000):
        if not os.path.exists(f"/run/netns/{PFX}-e{i}"):
            break
        sh("ip", "netns", "del", f"{PFX}-e{i}", check=False)


def med(xs):
    return f"{statistics.median(xs):6.2f} ({min(xs):.2f}..{max(xs):.2f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/x86_64-unknown-linux-gnu/release/nicslice")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--rm", default="40,100")
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    work = tempfile.mkdtemp(prefix="nsb-", dir="/run")
    state = os.path.join(work, "state.db")
    cni_dir = os.path.join(work, "cni")
    os.makedirs(cni_dir)
    for p in ("nicslice-macvlan", "nicslice-ipam"):
        os.symlink(binary, os.path.join(cni_dir, p))
    conf = json.dumps({
        "cniVersion": "1.0.0", "name": "bench", "type": "nicslice-macvlan", "master": "eth0",
        "mode": "bridge",
        "ipam": {"type": "nicslice-ipam", "subnet": "192.168.0.0/24",
                 "rangeStart": "192.168.0.100", "rangeEnd": "192.168.0.199",
                 "gateway": "192.168.0.1", "routes": [{"dst": "0.0.0.0/0"}],
                 "dataDir": os.path.join(work, "leases")}})
    shim_conf = json.dumps(dict(json.loads(conf), hostAccess=True))
    ctr_path = f"/run/netns/{CTR}"
    try:
        setup()
        enter(HOST)
        ns = [binary, "--state", state]
        sh(*ns, "network", "create", "lan", "--parent", "eth0", "--mode", "bridge",
           "--subnet", "192.168.0.0/24", "--gateway", "192.168.0.1",
           "--ip-range", "192.168.0.0/25")

        def cni(cmd, i, config=conf, netns=ctr_path):
            env = {"CNI_COMMAND": cmd, "CNI_CONTAINERID": f"b{i}", "CNI_NETNS": netns,
                   "CNI_IFNAME": "eth0", "CNI_PATH": cni_dir, "PATH": "/usr/sbin:/usr/bin:/bin"}
            return timed([os.path.join(cni_dir, "nicslice-macvlan")], env=env, stdin=config)

        def ip_add(_i):
            t = time.perf_counter()
            for args in (
                ["ip", "link", "add", "link", "eth0", "name", "eth0", "netns", CTR,
                 "type", "macvlan", "mode", "bridge"],
                ["ip", "-n", CTR, "addr", "add", "192.168.0.250/24", "dev", "eth0"],
                ["ip", "-n", CTR, "link", "set", "eth0", "up"],
                ["ip", "-n", CTR, "route", "add", "default", "via", "192.168.0.1"],
            ):
                p = subprocess.run(args, capture_output=True, text=True)
                if p.returncode:
                    sys.exit(f"{args}: {p.stderr}")
            return (time.perf_counter() - t) * 1000

        contenders = {
            "nicslice attach / detach": (
                lambda i: timed(ns + ["attach", "lan", "--netns", CTR]),
                lambda i: timed(ns + ["detach", "lan", "--netns", CTR])),
            "nicslice-macvlan CNI ADD / DEL": (
                lambda i: cni("ADD", i), lambda i: cni("DEL", i)),
            "the same with hostAccess": (
                lambda i: cni("ADD", i, shim_conf), lambda i: cni("DEL", i, shim_conf)),
            "ip sequence (4 execs) / ip link del": (
                ip_add, lambda i: timed(["ip", "-n", CTR, "link", "del", "eth0"])),
        }
        cni("ADD", "resident", shim_conf, f"/run/netns/{RESIDENT}")
        names = list(contenders)
        adds = {n: [] for n in names}
        dels = {n: [] for n in names}
        for i in range(a.runs):
            k = i % len(names)
            for n in names[k:] + names[:k]:
                add, delete = contenders[n]
                adds[n].append(add(i))
                dels[n].append(delete(i))
        print(f"{a.runs} runs each, median (min..max) in ms, kernel {os.uname().release}")
        print(f"{'contender':38} {'add':24} {'remove':24}")
        for n in names:
            print(f"{n:38} {med(adds[n]):24} {med(dels[n]):24}")
        cni_add = statistics.median(adds[names[1]])
        print(f"attach / CNI ADD: {statistics.median(adds[names[0]]) / cni_add:.2f}x")
        # The two CNI contenders run back to back in every round: the median
        # of their per-round differences is steadier on a busy machine than
        # the difference of medians (three runs of one binary at load 4:
        # 0.09 to 0.24 ms against 0.06 to 0.74 ms).
        paired = [h - p for h, p in zip(adds[names[2]], adds[names[1]])]
        print(f"hostAccess adds {statistics.median(paired):.2f} ms to a CNI ADD (median of the"
              f" rounds' differences; difference of medians {statistics.median(adds[names[2]]) - cni_add:.2f};"
              " the shim made already, by a resident pod)")

        # network rm --force of N endpoints, each in a namespace of its own.
        one_del = statistics.median(dels[names[3]])
        for count in [int(x) for x in a.rm.split(",") if x]:
            sh(*ns, "network", "create", "big", "--parent", "eth0", "--mode", "bridge",
               "--subnet", "10.77.0.0/16")
            for e in range(count):
                name = f"{PFX}-e{e}"
                if not os.path.exists(f"/run/netns/{name}"):
                    sh("ip", "netns", "add", name)
                sh(*ns, "attach", "big", "--netns", name)
            dt = timed(ns + ["network", "rm", "big", "--force"])
            print(f"network rm --force, {count} endpoints: {dt:.1f} ms = "
                  f"{dt / one_del:.2f} x one link delete ({one_del:.2f} ms)")
    finally:
        teardown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

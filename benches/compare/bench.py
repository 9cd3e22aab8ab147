#!/usr/bin/env python3
"""snoop vs tcpdump / tshark / bpftrace / nethogs on the same traffic.

Called by benches/compare/run.sh (which installs and builds what this needs).
Environment: SNOOP (binary), LOADGEN (snb-loadgen), BENCH_DIR (scratch dir),
BENCH_SECS (seconds per run, default 2), BENCH_REPS (paired reps, default 5),
BENCH_WORKLOADS (comma list, default all), BENCH_OUT (results.md path).

Method (see BENCHMARKS.md): for every workload and every rep, the workload
runs once without any tool and once under each tool, in an order rotated per
rep; overhead = throughput(tool) / throughput(none) of the same rep, median
over reps. Tool CPU = user+sys of the tool process (and its children) from
wait4() rusage, i.e. the whole run including start-up and final flush.
"""

import json
import os
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import time

SNOOP = os.environ.get("SNOOP", "/work/target-bench/release/snoop")
LOADGEN = os.environ.get("LOADGEN", "/work/target-bench/compare/snb-loadgen")
WORK = os.environ.get("BENCH_DIR", "/tmp/snoop-compare")
SECS = float(os.environ.get("BENCH_SECS", "2"))
REPS = int(os.environ.get("BENCH_REPS", "5"))
# Bulk runs pin the iperf3 client to CPU 0 and its server to CPU 1 (iperf3
# -A): left to the scheduler, their placement moved loopback throughput
# between 19 and 25 Gbit/s from run to run, more than the tools' overhead.
IPERF_PIN = ["-A", "0,1"] if (os.cpu_count() or 1) >= 2 else []
OUT = os.environ.get("BENCH_OUT", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.md"))
HERE = os.path.dirname(os.path.abspath(__file__))
NS_A, NS_B = "snbA", "snbB"  # network namespaces (veth workloads)
VETH_A, VETH_B = "snb-va", "snb-vb"
IP_A, IP_B = "10.213.0.1", "10.213.0.2"
MSG = 64  # bytes per message in rr / conn / udp / proc workloads

T0 = time.time()


def log(*a):
    print(f"[{time.time() - T0:6.1f}s]", *a, file=sys.stderr, flush=True)


def sh(cmd, check=True, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), check=check, text=True,
                          capture_output=True, **kw)


def has_analyzer():
    return sh([SNOOP, "analyze", "--help"], check=False).returncode == 0


# --------------------------------------------------------------- namespaces

def netns_up(rps_cpus=None):
    """Make the two namespaces and their veth pair. rps_cpus (a hex CPU
    mask, e.g. "2"): process both ends' received packets on those CPUs
    (RPS), instead of on whichever CPU sent them."""
    netns_down()
    for c in [f"ip netns add {NS_A}", f"ip netns add {NS_B}",
              f"ip link add {VETH_A} netns {NS_A} type veth peer name {VETH_B} netns {NS_B}",
              f"ip -n {NS_A} addr add {IP_A}/24 dev {VETH_A}",
              f"ip -n {NS_B} addr add {IP_B}/24 dev {VETH_B}",
              f"ip -n {NS_A} link set {VETH_A} up", f"ip -n {NS_B} link set {VETH_B} up",
              f"ip -n {NS_A} link set lo up", f"ip -n {NS_B} link set lo up",
              # short-connection workloads: reuse TIME_WAIT ports (client side)
              f"ip netns exec {NS_A} sysctl -qw net.ipv4.tcp_tw_reuse=1",
              f"ip netns exec {NS_A} sysctl -qw net.ipv4.ip_local_port_range='10000 60999'"]:
        sh(c)
    if rps_cpus:
        for ns, dev in ((NS_A, VETH_A), (NS_B, VETH_B)):
            sh(f"ip netns exec {ns} sh -c 'echo {rps_cpus} > /sys/class/net/{dev}/queues/rx-0/rps_cpus'")


def netns_down():
    for ns in (NS_A, NS_B):
        sh(f"ip netns del {ns}", check=False)


def in_ns(ns, argv):
    return (["ip", "netns", "exec", ns] + argv) if ns else argv


# --------------------------------------------------------------- workloads

class Workload:
    """One traffic pattern. run() returns (throughput, unit, truth, info)
    where truth = list of (key_kind, key, tx_bytes, rx_bytes, exact)."""

    def __init__(self, name, kind, net, desc, nethogs=False):
        self.name, self.kind, self.net, self.desc = name, kind, net, desc
        self.nethogs = nethogs
        self.srv_ns = NS_B if net == "veth" else None
        self.cli_ns = NS_A if net == "veth" else None
        self.srv_ip = IP_B if net == "veth" else "127.0.0.1"
        self.iface = VETH_A if net == "veth" else "lo"
        self.cap_ns = NS_A if net == "veth" else None
        self.iperf = None
        self.port = None

    # iperf3 keeps one server per workload; loadgen starts a server per run
    # (its totals are printed when its stdin closes).
    def setup(self):
        if self.kind == "bulk":
            self.port = 5301 if self.net == "lo" else 5302
            self.iperf = subprocess.Popen(in_ns(self.srv_ns, ["iperf3", "-s", "-p", str(self.port)]),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(100):
                r = sh(in_ns(self.srv_ns, ["ss", "-Hltn", f"sport = :{self.port}"]), check=False)
                if r.stdout.strip():
                    break
                time.sleep(0.05)

    def teardown(self):
        if self.iperf:
            self.iperf.terminate()
            self.iperf.wait()

    def start_server(self):
        if self.kind == "bulk":
            return None
        skind = {"rr": "rr", "conn": "conn", "proc": "conn", "udp": "udp"}[self.kind]
        p = subprocess.Popen(in_ns(self.srv_ns, [LOADGEN, "server", skind, f"{self.srv_ip}:0", str(MSG)]),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = p.stdout.readline().split()
        assert line and line[0] == "ready", line
        self.port = int(line[1])
        return p

    def run_client(self, server, secs):
        """A load-generator client run (bulk runs iperf3 in one_run, which
        needs its pid)."""
        r = sh(in_ns(self.cli_ns, [LOADGEN, "client", self.kind, f"{self.srv_ip}:{self.port}", str(secs), str(MSG)]),
               timeout=secs + 60)
        c = json.loads(r.stdout)
        unit = {"rr": "k req/s", "conn": "k conn/s", "udp": "k dgram/s", "proc": "proc/s"}[self.kind]
        scale = 1 if self.kind == "proc" else 1000
        return c["ops"] / c["secs"] / scale, unit, c


def stop_server(p):
    if p is None:
        return None
    p.stdin.close()
    out = p.stdout.read()
    p.wait()
    return json.loads(out.strip().splitlines()[-1])


# --------------------------------------------------------------- tools

BPFTRACE_PROG = r"""
tracepoint:sock:sock_send_length /args->ret > 0/ { @tx[pid, comm] = sum(args->ret); @n = count(); }
tracepoint:sock:sock_recv_length /args->ret > 0 && !(args->flags & 2)/ { @rx[pid, comm] = sum(args->ret); @n = count(); }
"""


EBPF_TOOLS = ("snoop", "snoop-msgs", "snoop-each", "bpftrace")


class Run:
    pass


def wait_for(path, pattern, timeout, proc):
    t = time.time()
    while time.time() - t < timeout:
        try:
            with open(path, errors="replace") as f:
                if pattern in f.read():
                    return True
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def start_tool(tool, wl, tag):
    run = Run()
    run.tool, run.files = tool, {}
    base = os.path.join(WORK, f"{wl.name}.{tool}.{tag}")
    err = base + ".err"
    out = base + ".out"
    if tool.startswith("snoop"):
        run.files["trace"] = base + ".snp"
        argv = [SNOOP, "record", "-o", run.files["trace"], "--force", "--port", str(wl.port)]
        if tool == "snoop-msgs":
            argv.append("--no-packets")
        if tool == "snoop-each":
            argv.append("--packets=each")
        marker, where = "recording to", err
    elif tool == "tcpdump":
        run.files["pcap"] = base + ".pcap"
        argv = in_ns(wl.cap_ns, ["tcpdump", "-i", wl.iface, "-s", "96", "-n", "-Z", "root", "-B", "8192",
                                 "-w", run.files["pcap"], "port", str(wl.port)])
        marker, where = "listening on", err
    elif tool == "bpftrace":
        argv = ["bpftrace", "-f", "json", "-e", BPFTRACE_PROG]
        marker, where = "attached_probes", out
    elif tool == "nethogs":
        argv = in_ns(wl.cap_ns, ["nethogs", "-a", "-t", "-v", "2", "-d", "1", wl.iface])
        marker, where = None, None
    else:
        raise ValueError(tool)
    run.out, run.err = out, err
    before = bpf_progs() if tool in EBPF_TOOLS else {}
    run.proc = subprocess.Popen(argv, stdout=open(out, "w"), stderr=open(err, "w"))
    if marker:
        if not wait_for(where, marker, 60, run.proc):
            raise RuntimeError(f"{tool} did not start: {open(err).read()[-2000:]}")
    else:
        time.sleep(1.0)
    time.sleep(0.1)
    run.cpu_at_ready = proc_cpu(run.proc.pid)
    # eBPF programs the tool loaded (new ids since just before it started),
    # and their run time so far (kernel.bpf_stats_enabled=1)
    if tool in EBPF_TOOLS:
        now = bpf_progs()
        run.progs = {i: ns for i, ns in now.items() if i not in before}
    else:
        run.progs = None
    return run


def enable_bpf_stats():
    """BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): eBPF run-time accounting stays on
    while the returned fd is open, whatever others do to the sysctl
    kernel.bpf_stats_enabled."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    attr = ctypes.create_string_buffer(16)  # enable_stats.type = 0 (RUN_TIME)
    fd = libc.syscall(321, 32, attr, 16)   # SYS_bpf, BPF_ENABLE_STATS
    if fd < 0:
        log(f"BPF_ENABLE_STATS failed (errno {ctypes.get_errno()}): no in-kernel eBPF CPU column")
        return None
    return fd


def cost_key(tool):
    """Key of a tool's eBPF cost run (run-time accounting on) in a workload's results."""
    return f"{tool} (eBPF cost run)"


def bpf_progs():
    """{prog id: run_time_ns} of every loaded eBPF program."""
    r = sh(["bpftool", "prog", "show", "--json"], check=False)
    try:
        return {p["id"]: p.get("run_time_ns", 0) for p in json.loads(r.stdout)}
    except ValueError:
        return {}


def proc_cpu(pid):
    """utime+stime (s) of pid and its reaped children, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        st = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return (int(st[11]) + int(st[12]) + int(st[13]) + int(st[14])) / tck


def stop_tool(run):
    p = run.proc
    run.bpf_cpu = None
    if run.progs:
        now = bpf_progs()
        run.bpf_cpu = sum(now.get(i, ns) - ns for i, ns in run.progs.items()) / 1e9
    os.kill(p.pid, signal.SIGINT)
    t = time.time()
    ru = None
    while time.time() - t < 60:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.01)
    else:
        p.kill()
        _, status, ru = os.wait4(p.pid, 0)
    p.returncode = status
    # CPU from "attached/listening" to exit: excludes start-up (bpftrace
    # compiles its program with LLVM), includes the final flush.
    run.cpu_total = ru.ru_utime + ru.ru_stime
    run.cpu = max(0.0, run.cpu_total - run.cpu_at_ready)
    run.maxrss_kb = ru.ru_maxrss
    run.events = None
    run.own_drops = None
    run.file_bytes = None
    errtxt = open(run.err, errors="replace").read()
    outtxt = open(run.out, errors="replace").read()
    if run.tool.startswith("snoop"):
        info = json.loads(sh([SNOOP, "info", "--json", run.files["trace"]]).stdout)
        run.info = info
        run.events = info["events"]
        d = info.get("dropped") or {}
        run.own_drops = sum(v for v in d.values() if isinstance(v, (int, float))) if isinstance(d, dict) else d
        run.file_bytes = info["file_bytes"]
    elif run.tool == "tcpdump":
        m = re.search(r"(\d+) packets captured", errtxt)
        run.events = int(m.group(1)) if m else None
        m = re.search(r"(\d+) packets dropped by kernel", errtxt)
        run.own_drops = int(m.group(1)) if m else None
        run.file_bytes = os.path.getsize(run.files["pcap"])
    elif run.tool == "bpftrace":
        run.maps = {}
        for line in outtxt.splitlines():
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if j.get("type") == "map":
                run.maps.update(j["data"])
        run.events = run.maps.get("@n")
    elif run.tool == "nethogs":
        blocks = outtxt.split("Refreshing:")
        run.nethogs = {}
        for line in (blocks[-1] if blocks else "").splitlines():
            parts = line.split("\t")
            if len(parts) == 3:
                run.nethogs[parts[0]] = (float(parts[1]), float(parts[2]))
    return run


# --------------------------------------------------------------- pcap

def pcap_payload(path, port):
    """(client->server L4 payload bytes, server->client, packets) of a pcap."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return 0, 0, 0
    magic = struct.unpack_from("<I", data, 0)[0]
    e = "<" if magic in (0xa1b2c3d4, 0xa1b23c4d) else ">"
    linktype = struct.unpack_from(e + "I", data, 20)[0]
    off, c2s, s2c, n = 24, 0, 0, 0
    l2 = 14 if linktype == 1 else (16 if linktype == 113 else 0)
    while off + 16 <= len(data):
        _, _, incl, _orig = struct.unpack_from(e + "IIII", data, off)
        pkt = data[off + 16: off + 16 + incl]
        off += 16 + incl
        n += 1
        ip = pkt[l2:]
        if len(ip) < 20 or ip[0] >> 4 != 4:
            continue
        ihl = (ip[0] & 15) * 4
        tot = struct.unpack_from(">H", ip, 2)[0]
        proto = ip[9]
        l4 = ip[ihl:]
        if len(l4) < 8:
            continue
        sport, dport = struct.unpack_from(">HH", l4, 0)
        if proto == 6 and len(l4) >= 13:
            pay = tot - ihl - (l4[12] >> 4) * 4
        elif proto == 17:
            pay = tot - ihl - 8
        else:
            continue
        if dport == port:
            c2s += pay
        elif sport == port:
            s2c += pay
    return c2s, s2c, n


# --------------------------------------------------------------- analysis

ANALYSIS_RUNS = int(os.environ.get("BENCH_ANALYSIS_RUNS", "3"))


def timed(argv, out_path=None):
    """Median wall seconds and peak RSS (MiB, the largest) of argv over
    ANALYSIS_RUNS runs, via /usr/bin/time -v (one run of a short analysis is
    within scheduler noise of the next)."""
    tfile = os.path.join(WORK, "time.txt")
    walls, rss = [], []
    for _ in range(max(1, ANALYSIS_RUNS)):
        t = time.time()
        r = subprocess.run(["/usr/bin/time", "-v", "-o", tfile] + argv, text=True,
                           stdout=open(out_path, "w") if out_path else subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
        walls.append(time.time() - t)
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(tfile).read())
        if m:
            rss.append(int(m.group(1)) / 1024)
        if r.returncode != 0:
            return {"wall": walls[-1], "rss_mb": max(rss) if rss else None, "ok": False,
                    "err": r.stderr[-500:]}
    return {"wall": statistics.median(walls), "rss_mb": max(rss) if rss else None, "ok": True,
            "err": ""}


def snoop_by_pid(trace):
    """{(pid, comm): (tx, rx)} from `snoop analyze --by pid --format json`."""
    r = sh([SNOOP, "analyze", trace, "--by", "pid", "--format", "json", "--top", "0"], check=False)
    if r.returncode != 0:
        return None, r.stderr.strip()[-300:]
    try:
        j = json.loads(r.stdout)
    except ValueError:
        rows = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
        j = rows
    rows = j.get("rows", j) if isinstance(j, dict) else j
    res = {}
    for row in rows:
        pid = row.get("pid")
        comm = row.get("comm", "")
        tx = next((row[k] for k in ("tx_bytes", "send_bytes", "sent_bytes", "tx") if k in row), None)
        rx = next((row[k] for k in ("rx_bytes", "recv_bytes", "received_bytes", "rx") if k in row), None)
        res[(pid, comm)] = (tx, rx)
    return res, ""


# --------------------------------------------------------------- main loop

WORKLOADS = [
    Workload("bulk-lo", "bulk", "lo", "iperf3 TCP, 128 KiB writes, 1 stream, loopback"),
    Workload("rr-lo", "rr", "lo", "TCP request/response, 64 B each way, 1 connection, loopback", nethogs=True),
    Workload("udp-lo", "udp", "lo", "UDP 64 B datagrams, 1 sender as fast as it can, loopback"),
    Workload("conn-lo", "conn", "lo", "short TCP connections: connect, 64 B each way, close; loopback"),
    Workload("proc-lo", "proc", "lo", "short-lived processes: one per connection (fork+exec), loopback"),
    Workload("bulk-veth", "bulk", "veth", "iperf3 TCP, 128 KiB writes, netns A -> netns B over veth"),
    Workload("udp-veth", "udp", "veth", "UDP 64 B datagrams, netns A -> netns B over veth"),
]


def truth_of(wl, client, cli_pid, server_tot, srv_pid):
    """Ground truth rows: (kind, key, tx, rx, exact)."""
    if wl.kind == "bulk":
        return [("pid", cli_pid, client["tx"], None, False), ("pid", srv_pid, None, client["srv_rx"], False)]
    if wl.kind == "proc":
        return [("comm", "snb-oneshot", client["tx_bytes"], client["rx_bytes"], True),
                ("pid", srv_pid, server_tot["tx_bytes"], server_tot["rx_bytes"], True)]
    return [("pid", client["pid"], client["tx_bytes"], client["rx_bytes"], True),
            ("pid", srv_pid, server_tot["tx_bytes"], server_tot["rx_bytes"], True)]


def check_attr(truth, per_pid):
    """Worst relative error of recorded per-process bytes vs truth, or None."""
    worst = 0.0
    for kind, key, tx, rx, _exact in truth:
        if kind == "pid":
            rows = [v for (pid, comm), v in per_pid.items() if pid == key]
        else:
            rows = [v for (pid, comm), v in per_pid.items() if comm == key]
        gtx = sum((v[0] or 0) for v in rows)
        grx = sum((v[1] or 0) for v in rows)
        for want, got in ((tx, gtx), (rx, grx)):
            if want is None:
                continue
            err = abs(got - want) / want if want else (0.0 if got == 0 else 1.0)
            worst = max(worst, err)
    return worst


def one_run(wl, tool, rep, secs=None, extra_tools=()):
    """One workload run under `tool` (and extra_tools at the same time)."""
    secs = secs or SECS
    server = wl.start_server()
    run = start_tool(tool, wl, f"r{rep}") if tool != "none" else None
    extra = {t: start_tool(t, wl, f"r{rep}") for t in extra_tools}
    t_run = time.time()
    if wl.kind == "bulk":
        # the client's pid: run it ourselves so we know it
        argv = in_ns(wl.cli_ns, ["iperf3", "-c", wl.srv_ip, "-p", str(wl.port), "-t", str(secs), "-l", "128K",
                                     *IPERF_PIN, "-J"])
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        out, _ = p.communicate(timeout=secs + 30)
        j = json.loads(out)
        if "error" in j:
            raise RuntimeError("iperf3: " + j["error"])
        end = j["end"]
        tput, unit = end["sum_received"]["bits_per_second"] / 1e9, "Gbit/s"
        client = {"tx": end["sum_sent"]["bytes"], "srv_rx": end["sum_received"]["bytes"], "pid": p.pid}
        cli_pid = p.pid
    else:
        tput, unit, client = wl.run_client(server, secs)
        cli_pid = client["pid"]
    elapsed = time.time() - t_run
    # Let receivers drain before the tool stops; libpcap (TPACKET_V3) hands
    # over a ring block only when it fills or after its 1 s timeout, and
    # packets still in the ring at SIGINT are lost without being counted.
    time.sleep(1.1 if {tool, *extra_tools} & {"tcpdump", "nethogs"} else 0.3)
    if run:
        stop_tool(run)
    for r in extra.values():
        stop_tool(r)
    stot = stop_server(server)
    srv_pid = server.pid if server else wl.iperf.pid
    return {"tput": tput, "unit": unit, "client": client, "server": stot, "run": run, "elapsed": elapsed,
            "port": wl.port, "extra": extra,
            "truth": truth_of(wl, client, cli_pid, stot, srv_pid)}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec=".2f", none="—"):
    return none if x is None else format(x, spec)


def main():
    os.makedirs(WORK, exist_ok=True)
    sel = os.environ.get("BENCH_WORKLOADS")
    wls = [w for w in WORKLOADS if not sel or w.name in sel.split(",")]
    analyzer = has_analyzer()
    have = {t: shutil.which(t) is not None for t in ("tcpdump", "bpftrace", "nethogs", "tshark")}
    log(f"snoop={SNOOP} analyzer={'yes' if analyzer else 'no'} secs={SECS} reps={REPS} peers={have}")
    if any(w.net == "veth" for w in wls):
        netns_up()
    results = {}
    try:
        for wl in wls:
            tools = ["none", "snoop", "snoop-msgs"] + [t for t in ("tcpdump", "bpftrace") if have[t]]
            if wl.nethogs and have["nethogs"]:
                tools.append("nethogs")
            if os.environ.get("BENCH_TOOLS"):
                tools = ["none"] + [t for t in tools if t in os.environ["BENCH_TOOLS"].split(",")]
            wl.setup()
            res = {t: [] for t in tools}
            try:
                for rep in range(REPS):
                    order = tools[rep % len(tools):] + tools[:rep % len(tools)]
                    for tool in order:
                        for attempt in range(2):
                            try:
                                r = one_run(wl, tool, rep)
                                break
                            except Exception as e:  # noqa: BLE001 - retry once, then record the failure
                                log(f"{wl.name} {tool} rep {rep}: {e}")
                                r = None
                        res[tool].append(r)
                    log(f"{wl.name} rep {rep}: " + ", ".join(
                        f"{t}={fmt(res[t][-1]['tput'] if res[t][-1] else None)}" for t in tools))
                # eBPF run-time accounting costs every program run two clock
                # reads (~10% of the UDP rows' throughput, measured), a tax
                # tcpdump and nethogs would not pay: the paired reps above
                # run without it, and the in-kernel CPU of each eBPF tool
                # comes from one more run with it on, not used for ratios.
                for tool in [t for t in tools if t in EBPF_TOOLS]:
                    stats_fd = enable_bpf_stats()
                    try:
                        res[cost_key(tool)] = [one_run(wl, tool, "cost")]
                    except Exception as e:  # noqa: BLE001 - the column shows "—"
                        log(f"{wl.name} {tool} eBPF cost run: {e}")
                        res[cost_key(tool)] = [None]
                    finally:
                        if stats_fd is not None:
                            os.close(stats_fd)
            finally:
                wl.teardown()
            results[wl.name] = (wl, tools, res)
        big = big_runs(wls, have)
        analysis = analyze_files({**results, **big}, analyzer, have)
    finally:
        if any(w.net == "veth" for w in wls):
            netns_down()
    md = render(results, analysis, analyzer)
    with open(OUT, "w") as f:
        f.write(md)
    with open(os.path.join(WORK, "raw.json"), "w") as f:
        json.dump(raw_dump(results, analysis), f, indent=1, default=str)
    print(md)
    log(f"done; table written to {OUT}")


BIG_SECS = float(os.environ.get("BENCH_BIG_SECS", "8"))


def big_runs(wls, have):
    """Analysis input of realistic size: rr-lo and udp-lo recorded by snoop
    and tcpdump at the same time (identical traffic in both files)."""
    out = {}
    for wl in wls:
        if wl.name not in ("rr-lo", "udp-lo") or not have["tcpdump"] or BIG_SECS <= 0:
            continue
        r = one_run(wl, "snoop", "big", secs=BIG_SECS, extra_tools=("tcpdump",))
        r2 = dict(r)
        r2["run"] = r["extra"]["tcpdump"]
        name = f"{wl.name} {BIG_SECS:g} s, snoop+tcpdump at once"
        out[name] = (wl, ["snoop", "tcpdump"], {"snoop": [r], "tcpdump": [r2]})
        log(f"{name}: {r['tput']:.2f} {r['unit']}")
    return out


def last_ok(runs):
    for r in reversed(runs):
        if r and r["run"]:
            return r
    return None


def analyze_files(results, analyzer, have):
    """File sizes, analysis time/memory and per-process correctness, on the
    last good rep's files of each workload."""
    out = {}
    for name, (wl, tools, res) in results.items():
        a = {}
        sn = last_ok(res.get("snoop", []))
        td = last_ok(res.get("tcpdump", []))
        if sn:
            tr = sn["run"].files["trace"]
            info = sn["run"].info
            a["snoop_events"] = info["events"]
            a["snoop_tables"] = info.get("tables")
            a["snoop_bytes"] = info["file_bytes"]
            if wl.kind == "udp":
                # every datagram sent and every datagram received is one message
                want = sn["client"]["ops"] + sn["server"]["rx_msgs"]
                a["snoop_udp_msgs"] = ((info.get("tables") or {}).get("messages", 0), want)
            if analyzer:
                a["snoop_analyze"] = timed([SNOOP, "analyze", tr, "--by", "pid"])
                per_pid, err = snoop_by_pid(tr)
                a["snoop_err"] = err
                if per_pid is not None:
                    a["snoop_attr_err"] = check_attr(sn["truth"], per_pid)
                pq = os.path.join(WORK, f"{name}.messages.parquet")
                r = sh([SNOOP, "export", tr, "--table", "messages", "-o", pq], check=False)
                if r.returncode == 0:
                    a["parquet_export_bytes"] = os.path.getsize(pq)
                    pqz = os.path.join(WORK, f"{name}.messages.zstd.parquet")
                    r2 = sh([sys.executable, os.path.join(HERE, "polars_by_pid.py"), "--rewrite", pq, pqz], check=False)
                    if r2.returncode == 0:
                        a["parquet_rows"] = int(r2.stdout.strip() or 0)
                        a["parquet_bytes"] = os.path.getsize(pqz)
                        a["polars"] = timed([sys.executable, os.path.join(HERE, "polars_by_pid.py"), pqz])
                    else:
                        a["parquet_err"] = r2.stderr[-300:]
                else:
                    a["parquet_err"] = r.stderr[-300:]
        if td:
            pc = td["run"].files["pcap"]
            a["pcap_bytes"] = os.path.getsize(pc)
            c2s, s2c, n = pcap_payload(pc, td["port"])
            a["pcap_pkts"] = n
            t = td["truth"]
            # bulk: iperf3's bytes received by the server (its "sent" counts
            # bytes written, some of which may still be queued at the end)
            want_c2s = t[1][3] if wl.kind == "bulk" else t[0][2]
            want_s2c = t[0][3]
            a["pcap_c2s"], a["pcap_s2c"], a["want_c2s"], a["want_s2c"] = c2s, s2c, want_c2s, want_s2c
            if have["tshark"]:
                a["tshark"] = timed(["tshark", "-q", "-z", "conv,tcp", "-z", "conv,udp", "-r", pc])
        sm = last_ok(res.get("snoop-msgs", []))
        if sm:
            i2 = sm["run"].info
            a["msgs_only"] = (i2["file_bytes"], (i2.get("tables") or {}).get("messages", 0), i2["events"])
        # bpftrace prints its maps when it exits; a rep where it printed
        # none (seen once: SIGINT answered without the maps) has no totals
        # to check, which is not an attribution error: take the last rep
        # that printed them, and say how many did not.
        bts = [r for r in res.get("bpftrace", []) if r and r["run"]]
        printed = [r for r in bts if r["run"].maps.get("@n") is not None]
        if len(printed) < len(bts):
            a["bpftrace_silent"] = (len(bts) - len(printed), len(bts))
        bt = last_ok(printed)
        if bt:
            per = {}
            for mname, idx in (("@tx", 0), ("@rx", 1)):
                for k, v in (bt["run"].maps.get(mname) or {}).items():
                    pid, _, comm = k.partition(",")
                    cur = list(per.get((int(pid), comm), (0, 0)))
                    cur[idx] = v
                    per[(int(pid), comm)] = tuple(cur)
            a["bpftrace_attr_err"] = check_attr(bt["truth"], per)
        nh = last_ok(res.get("nethogs", []))
        if nh:
            a["nethogs_rows"] = nh["run"].nethogs
            tot = {}
            for k, (s, r) in nh["run"].nethogs.items():
                m = re.search(r"/(\d+)/\d+$", k)
                if m:
                    tot[int(m.group(1))] = (s, r)
            a["nethogs_attr_err"] = check_attr(nh["truth"], {(p, ""): v for p, v in tot.items()})
            parts = []
            for kind, key, tx, rx, _ in nh["truth"]:
                if kind == "pid":
                    s_, r_ = tot.get(key, (0, 0))
                    parts.append(f"pid {key}: sent {s_ / 1e6:.2f} MB, recv {r_ / 1e6:.2f} MB "
                                 f"(truth {(tx or 0) / 1e6:.2f} / {(rx or 0) / 1e6:.2f} MB payload)")
            a["nethogs_text"] = "; ".join(parts)
        out[name] = a
        log(f"analysis {name}: " + ", ".join(f"{k}={v}" for k, v in a.items() if not isinstance(v, dict)))
    return out


def head_to_head(runs, a="snoop", b="tcpdump"):
    """Markdown rows comparing tool `a` with tool `b` rep by rep: both ran in
    the same rep, one after the other, so a's throughput ÷ b's is a paired
    comparison of their overheads, steadier than setting their medians of
    "with ÷ without" side by side. `runs` is raw.json's "runs"."""
    L = ["| workload | " + a + " ÷ " + b + " throughput, same rep (median, min–max) | reps where "
         + a + " costs less | verdict |", "|---|---|---|---|"]
    for name, res in runs.items():
        if a not in res or b not in res:
            continue
        q = [x["tput"] / y["tput"] for x, y in zip(res[a], res[b]) if x and y and y["tput"]]
        if not q:
            continue
        wins = sum(1 for v in q if v > 1)
        if wins == len(q):
            verdict = f"{a} costs less in every rep"
        elif wins == 0:
            verdict = f"{b} costs less in every rep"
        else:
            verdict = "mixed: no clear winner"
        L.append(f"| {name} | **{statistics.median(q):.3f}** ({min(q):.3f}–{max(q):.3f}) | "
                 f"{wins} of {len(q)} | {verdict} |")
    return L


def render(results, analysis, analyzer):
    L = []
    L.append(f"Runs: {REPS} paired reps x {SECS:g} s per workload and tool; host {os.uname().nodename}, "
             f"kernel {os.uname().release}, {os.cpu_count()} CPUs; snoop analyzer: {'yes' if analyzer else 'no (recorder-only build)'}.")
    L.append("")
    L.append("### Recording: overhead, CPU, loss")
    L.append("")
    L.append("| workload | tool | throughput (median) | with ÷ without (median, min–max) | tool CPU (user-space process), % of one core | in-kernel eBPF CPU, % of one core | tool CPU s per M events (process + eBPF) | events per run (tool's own count) | dropped (tool's own counter, max over reps) | captured vs sent by the workload |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for name, (wl, tools, res) in results.items():
        base = res["none"]
        a = analysis.get(name, {})
        for tool in tools:
            runs = res[tool]
            tputs = [r["tput"] if r else None for r in runs]
            unit = next((r["unit"] for r in runs if r), "")
            ratios = [r["tput"] / b["tput"] if r and b and b["tput"] else None for r, b in zip(runs, base)]
            rr = [x for x in ratios if x is not None]
            ratio_s = "1 (baseline)" if tool == "none" else (
                f"**{med(rr):.3f}** ({min(rr):.3f}–{max(rr):.3f})" if rr else "—")
            cpu = [r["run"].cpu / r["elapsed"] * 100 if r and r["run"] else None for r in runs]
            # In-kernel eBPF CPU only from the cost run (accounting on);
            # per M events adds it to that same run's process CPU.
            cost = res.get(cost_key(tool), [])
            kcpu = [r["run"].bpf_cpu / r["elapsed"] * 100 if r and r["run"] and r["run"].bpf_cpu is not None else None
                    for r in cost]
            per_m = [(r["run"].cpu + (r["run"].bpf_cpu or 0)) / r["run"].events * 1e6
                     if r and r["run"] and r["run"].events else None for r in (cost or runs)]
            ev = [r["run"].events if r and r["run"] else None for r in runs]
            drops = [r["run"].own_drops for r in runs if r and r["run"] and r["run"].own_drops is not None]
            if tool == "none":
                cpu_s, kcpu_s, perm_s, ev_s, drop_s, vs_s = "—", "—", "—", "—", "—", "—"
            else:
                cpu_s = fmt(med(cpu), ".1f") + "%"
                kcpu_s = (fmt(med(kcpu), ".1f") + "%") if tool in EBPF_TOOLS else "not measurable (AF_PACKET copy)"
                perm_s = fmt(med(per_m), ".2f")
                ev_s = fmt(med(ev), ",.0f")
                drop_s = {"snoop": lambda: fmt(max(drops), ",d") if drops else "—",
                          "snoop-msgs": lambda: fmt(max(drops), ",d") if drops else "—",
                          "tcpdump": lambda: fmt(max(drops), ",d") if drops else "—",
                          "bpftrace": lambda: "no counter (in-kernel sums, nothing to drop)",
                          "nethogs": lambda: "no counter"}[tool]()
                vs_s = vs_workload(tool, wl, a)
            L.append(f"| {name} | {tool} | {fmt(med(tputs))} {unit} | {ratio_s} | {cpu_s} | {kcpu_s} | {perm_s} | {ev_s} | {drop_s} | {vs_s} |")
    L.append("")
    L.append("### snoop vs tcpdump, rep by rep")
    L.append("")
    L.extend(head_to_head(raw_dump(results, analysis)["runs"]))
    L.append("")
    L.append("### Files and analysis (last rep's files of each workload)")
    L.append("")
    L.append("| workload | snoop .snp: B/event (events) | snoop `--no-packets`: B/event (events; messages) | pcap -s 96: B/packet (packets) | Parquet zstd (polars): B/message (rows) | `snoop analyze --by pid`: wall, peak RSS | `tshark -z conv,tcp -z conv,udp`: wall, peak RSS | polars on Parquet: wall, peak RSS |")
    L.append("|---|---|---|---|---|---|---|---|")
    for name, a in analysis.items():
        def tm(k):
            t = a.get(k)
            if not t:
                return "—"
            if not t["ok"]:
                return "failed"
            return f"{t['wall']:.2f} s, {t['rss_mb']:.0f} MiB"
        snp = f"{a['snoop_bytes'] / a['snoop_events']:.2f} ({a['snoop_events']:,})" if a.get("snoop_events") else "—"
        permsg = "—"
        if a.get("msgs_only") and a["msgs_only"][2]:
            fb, nm, ne = a["msgs_only"]
            permsg = f"{fb / ne:.2f} ({ne:,}; {nm:,})"
        pc = f"{a['pcap_bytes'] / a['pcap_pkts']:.1f} ({a['pcap_pkts']:,})" if a.get("pcap_pkts") else "—"
        pq = f"{a['parquet_bytes'] / a['parquet_rows']:.2f} ({a['parquet_rows']:,})" if a.get("parquet_rows") else "—"
        L.append(f"| {name} | {snp} | {permsg} | {pc} | {pq} | {tm('snoop_analyze')} | {tm('tshark')} | {tm('polars')} |")
    L.append("")
    L.append("### Correctness: per-process bytes vs the workload's own counts (last rep)")
    L.append("")
    L.append("| workload | snoop (`analyze --by pid`) | bpftrace (tracepoint sums) | nethogs | tcpdump / tshark |")
    L.append("|---|---|---|---|---|")
    for name, a in analysis.items():
        def err(k):
            if k not in a:
                return "—"
            e = a[k]
            return "exact" if e == 0 else f"worst error {e * 100:.3f}%"
        sn = err("snoop_attr_err") if analyzer else "needs analyzer build"
        if analyzer and "snoop_attr_err" not in a and a.get("snoop_err"):
            sn = "analyze failed: " + a["snoop_err"].replace("|", "/")[:120]
        nh = err("nethogs_attr_err")
        if a.get("nethogs_text"):
            nh += ": " + a["nethogs_text"]
        bt = err("bpftrace_attr_err")
        if a.get("bpftrace_silent"):
            n, of = a["bpftrace_silent"]
            bt += f" ({n} of {of} reps printed no totals)"
        L.append(f"| {name} | {sn} | {bt} | {nh} | cannot attribute to processes |")
    L.append("")
    return "\n".join(L)


def vs_workload(tool, wl, a):
    if tool == "tcpdump" and "pcap_c2s" in a:
        w = a["want_c2s"] or 0
        return f"payload {a['pcap_c2s'] / w * 100:.2f}% of client's bytes (last rep)" if w else "—"
    if tool == "snoop-msgs":
        return "messages only (`--no-packets`)"
    if tool == "snoop":
        parts = []
        if "snoop_udp_msgs" in a:
            got, want = a["snoop_udp_msgs"]
            parts.append(f"messages {got:,} of {want:,} ({got / want * 100:.2f}%, last rep)")
        parts.append("bytes: see correctness table" if "snoop_attr_err" in a else "bytes: needs analyzer")
        return "; ".join(parts)
    if tool == "bpftrace":
        return "see correctness table"
    if tool == "nethogs":
        return "see correctness table"
    return "—"


def raw_dump(results, analysis):
    d = {"analysis": analysis, "runs": {}}
    for name, (wl, tools, res) in results.items():
        d["runs"][name] = {t: [None if r is None else {
            "tput": r["tput"], "unit": r["unit"], "elapsed": r["elapsed"], "truth": r["truth"],
            "cpu": getattr(r["run"], "cpu", None), "bpf_cpu": getattr(r["run"], "bpf_cpu", None),
            "cpu_total": getattr(r["run"], "cpu_total", None), "events": getattr(r["run"], "events", None),
            "drops": getattr(r["run"], "own_drops", None), "file_bytes": getattr(r["run"], "file_bytes", None)}
            for r in rs] for t, rs in res.items()}
    return d


if __name__ == "__main__":
    main()

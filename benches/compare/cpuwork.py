#!/usr/bin/env python3
"""Fixed-work CPU cost: snoop vs tcpdump -w -s 96 on the same amount of work.

Called by benches/compare/run.sh with BENCH_MODE=cpu (which installs and
builds what this needs). Each workload is a fixed amount of work, not a
fixed time:

  conn-lo    CPU_CONNS (20000) short TCP connections over loopback (64 B each
             way, the server closes first)
  bulk-lo    CPU_BULK_LO (4 GB) of one TCP stream over loopback (128 KiB writes)
  bulk-veth  CPU_BULK_VETH (2 GB) of one TCP stream over a veth pair between
             two network namespaces
  udp-lo     CPU_DGRAMS (300000) 64-byte UDP datagrams over loopback

For every rep each tool runs the work once, in an order rotated per rep:
`none` (no recorder), `tcpdump` (-w -s 96, filtered to the workload's
port), `snoop` (default `snoop record --port`, i.e. --packets=runs) and
`snoop-each` (--packets=each, the per-packet recording of before). On
bulk-veth, CPU_TOOLS may add `tcpdump-2`: one tcpdump on each end of the
pair (each in its namespace), which sees every packet twice, as snoop
does (sent by one end, received by the other). CPU is
the whole machine's busy time from /proc/stat (user+nice+system+irq+
softirq, all CPUs; steal, the time the host ran something else on our
virtual CPUs, is not our work: until 2026-12-02 it was counted, and the
host's bursts of 30-45% steal made one rep of the same 20 000
connections take 3 to 22 s of "busy" CPU) from just before the work starts until the work
is done and the tool has exited (its final drain and flush included); the
tool's cost is its run's busy time minus the `none` run's of the same rep,
per unit of work (µs per connection or datagram, ms per GB), median over
reps. Softirq time (where the receive-side hooks run) is in /proc/stat
but not in any process's rusage, hence the whole machine. `proc` repeats
the comparison with the CPU of the processes (workload + tool, from
rusage; tool start-up excluded), which other jobs on the machine do not
disturb. Throughput ratio = work per second of the client under the tool /
without, same rep, median. *Steal*: the host's share of the run's CPU
time (the larger of the tool's run and the same rep's `none` run), median:
a rep with much steal ran on a busy host, and its figures are less sure.

The workload's client runs on CPU 0 and its server on CPU 1 (taskset;
CPU_PIN=0 leaves them to the scheduler); the tools are not pinned.

With CPU_ATTRIB=1 every run (`none` too) is also sampled by `perf record
-a -g` (CPU_ATTRIB_HZ, 1999 per CPU), and each tool is charged the samples
that are its own: its process (every thread, user and kernel), and, in
any process or softirq, the kernel work that runs only because the tool is
there: snoop's eBPF programs and their dispatch (tracepoint and cgroup
hooks, BPF trampolines), tcpdump's packet taps (dev_queue_xmit_nit's
clone, packet_rcv / tpacket_rcv's copy into its ring). The same rule
applied to the `none` run of the rep (what it matches without any tool)
is subtracted. This "own CPU" does not see indirect costs (caches, the
memory the tool's copies use, the workload slowed), which the busy-CPU
column does, but it does not carry the workload's own variance either,
so it ranks the tools where the machine's busy CPU cannot (bulk TCP,
whose busy CPU moves +-15% between identical runs).

Environment: CPU_REPS (5), CPU_PIN (1), CPU_WORKLOADS (all), CPU_TOOLS (tcpdump,snoop,
snoop-each), the sizes above, CPU_ATTRIB (unset), CPU_ATTRIB_HZ (1999),
BENCH_OUT_CPU (markdown output, benches/compare/cpu-results.md), and
bench.py's SNOOP, LOADGEN, BENCH_DIR.
"""

import copy
import json
import os
import re
import signal
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (netns, tool start/stop, logging)
from bench import IP_A, IP_B, NS_A, NS_B, LOADGEN, SNOOP, WORK, in_ns, log, sh  # noqa: E402

REPS = int(os.environ.get("CPU_REPS", "5"))
CONNS = int(os.environ.get("CPU_CONNS", "20000"))
BULK_LO = int(float(os.environ.get("CPU_BULK_LO", "4e9")))
BULK_VETH = int(float(os.environ.get("CPU_BULK_VETH", "2e9")))
DGRAMS = int(os.environ.get("CPU_DGRAMS", "300000"))
OUT = os.environ.get("BENCH_OUT_CPU", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "cpu-results.md"))
MSG = 64
# Client on CPU 0, server on CPU 1 (CPU_PIN=0: unpinned). Unpinned, where
# the scheduler puts the two ends moved a tool's bulk medians 2-4x between
# runs, more than the tools differ; the recorders stay unpinned.
PIN = (os.cpu_count() or 1) >= 2 and os.environ.get("CPU_PIN", "1") != "0"


# Pinned, both veth ends' received packets are processed on the server's
# CPU (RPS mask 2). Otherwise a veth packet is processed on the CPU that
# sent it: the client's writes on CPU 0 and the sends its ACKs trigger on
# CPU 1 went through two backlogs and arrived out of order, the sender
# retransmitted 11-40 thousand segments per 2 GB (spuriously: DSACKs, no
# drops), and the same 2 GB took 1.2 to 1.9 s of busy CPU by how many.
# Steered, 0 retransmits.
VETH_RPS = "2" if PIN else None


def pinned(cpu, argv):
    return (["taskset", "-c", str(cpu)] + argv) if PIN else argv


ATTRIB = os.environ.get("CPU_ATTRIB") == "1"
ATTRIB_HZ = int(os.environ.get("CPU_ATTRIB_HZ", "1999"))

# Kernel frames that run only because a tool is attached (see the module
# doc): a sample with one of them in its stack is the tool's.
SNOOP_FRAMES = re.compile(r"^(bpf_prog_\w*snoop|bpf_trace_run\d|__bpf_trace_|__bpf_prog_enter|"
                          r"__bpf_prog_exit|__cgroup_bpf_run_filter|bpf_ringbuf_)")
TCPDUMP_FRAMES = re.compile(r"^(dev_queue_xmit_nit|packet_rcv|tpacket_rcv|packet_rcv_spkt|"
                            r"packet_rcv_fanout)$")

CAP_SECS = 120  # a run that takes longer than this is cut short (and flagged)


class Work:
    def __init__(self, name, kind, net, ops, size, unit, per):
        self.name, self.kind, self.net, self.ops, self.size = name, kind, net, ops, size
        self.unit, self.per = unit, per  # unit label, ops per unit
        self.srv_ns = NS_B if net == "veth" else None
        self.cli_ns = NS_A if net == "veth" else None
        self.srv_ip = IP_B if net == "veth" else "127.0.0.1"
        self.iface = bench.VETH_A if net == "veth" else "lo"
        self.cap_ns = NS_A if net == "veth" else None
        self.port = None


WORKS = [
    Work("conn-lo", "conn", "lo", CONNS, MSG, "µs/conn", 1e-6),
    Work("bulk-lo", "bulk", "lo", BULK_LO, 1 << 17, "ms/GB", 1e-3 / 1e9),
    Work("bulk-veth", "bulk", "veth", BULK_VETH, 1 << 17, "ms/GB", 1e-3 / 1e9),
    Work("udp-lo", "udp", "lo", DGRAMS, MSG, "µs/dgram", 1e-6),
]


def cpu_ticks():
    """{cpu: (busy, steal, all)} ticks from /proc/stat, "all" for the sum
    of the CPUs: busy is user+nice+system+irq+softirq (not steal)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            name, *v = line.split()
            v = [int(x) for x in v[:8]]
            user, nice, system, idle, iowait, irq, softirq, steal = v
            busy = user + nice + system + irq + softirq
            out["all" if name == "cpu" else int(name[3:])] = (busy, steal, busy + steal + idle + iowait)
    return out


def steal_fractions(t0, t1):
    """Per CPU (and "all"): the share of the window the host stole."""
    return {c: (t1[c][1] - t0[c][1]) / max(1, t1[c][2] - t0[c][2]) for c in t1 if c in t0}


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def one_run(w, tool, rep):
    """One fixed-work run under `tool`: (busy s, process s, client result, run)."""
    skind = {"conn": "conn", "udp": "udp", "bulk": "sink"}[w.kind]
    srv = subprocess.Popen(in_ns(w.srv_ns, pinned(1, [LOADGEN, "server", skind, f"{w.srv_ip}:0", str(MSG)])),
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = srv.stdout.readline().split()
    assert line and line[0] == "ready", line
    w.port = int(line[1])
    try:
        return measured(w, tool, rep, srv)
    finally:
        if srv.returncode is None and not srv.stdin.closed:
            bench.stop_server(srv)


def perf_start(tag):
    """Start sampling every CPU with call stacks (CPU_ATTRIB=1)."""
    if not ATTRIB:
        return None
    data = os.path.join(WORK, f"{tag}.perf")
    p = subprocess.Popen(["perf", "record", "-a", "-g", "-F", str(ATTRIB_HZ), "-q", "-o", data],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)  # perf has opened its events
    return p, data


def perf_own(sampling, pids, steal):
    """Seconds of CPU the tool itself used in a sampled run, by the rules of
    the module doc: {"snoop": (process s, kernel hooks s), "tcpdump": ...}.
    `pids` are the tool's processes (none for `none`). A sample stands for its
    period of the guest's clock, which runs on while the host steals the
    CPU, so each is weighed by the share of its CPU's window not stolen
    (`steal`: per CPU, from /proc/stat)."""
    p, data = sampling
    p.send_signal(signal.SIGINT)
    p.wait(timeout=120)
    out = subprocess.run(["perf", "script", "-i", data, "-F", "pid,cpu,period,ip,sym"],
                         capture_output=True, text=True).stdout
    os.unlink(data)
    own = {"snoop": [0, 0], "tcpdump": [0, 0]}
    for block in out.split("\n\n"):
        lines = block.strip().splitlines()
        if not lines:
            continue
        head = lines[0].replace("[", " ").replace("]", " ").split()
        if len(head) < 3 or not head[0].isdigit():
            continue
        spid, cpu, period = int(head[0]), int(head[1]), int(head[2])
        period *= 1 - steal.get(cpu, steal["all"])
        syms = [ln.split(None, 1)[1].split("+", 1)[0].split(" (", 1)[0]
                for ln in lines[1:] if len(ln.split(None, 1)) == 2]
        for name, rule in (("snoop", SNOOP_FRAMES), ("tcpdump", TCPDUMP_FRAMES)):
            if spid in pids:
                own[name][0] += period
            elif any(rule.match(x) for x in syms):
                own[name][1] += period
    return {k: (v[0] / 1e9, v[1] / 1e9) for k, v in own.items()}


def applies(tool, w):
    """Does `tool` run on workload `w` (tcpdump-2 needs two ends)?"""
    return tool != "tcpdump-2" or w.net == "veth"


def tool_key(tool):
    """Which attribution rule of perf_own a tool's samples follow."""
    return "snoop" if tool.startswith("snoop") else "tcpdump"


def start(tool, w, rep):
    """Start `tool` for workload `w`; tcpdump-2 is a tcpdump on each end,
    the second one in `run.peers`."""
    if tool != "tcpdump-2":
        return bench.start_tool(tool, w, f"cpu{rep}")
    run = bench.start_tool("tcpdump", w, f"cpu{rep}")
    other = copy.copy(w)
    other.name, other.cap_ns, other.iface = w.name + ".b", NS_B, bench.VETH_B
    try:
        peer = bench.start_tool("tcpdump", other, f"cpu{rep}")
    except Exception:
        run.proc.kill()
        run.proc.wait()
        raise
    run.tool, run.peers = tool, [peer]
    run.cpu_at_ready += peer.cpu_at_ready
    return run


def procs(run):
    """The processes of a tool run (two for tcpdump-2)."""
    return [run.proc] + [p.proc for p in getattr(run, "peers", [])]


def measured(w, tool, rep, srv):
    run = None
    if tool != "none":
        run = start(tool, w, rep)
    sampling = perf_start(f"{w.name}.{tool}.{rep}")
    c0 = children_cpu()
    t0 = cpu_ticks()
    try:
        cli = subprocess.run(in_ns(w.cli_ns, pinned(0, [LOADGEN, "client", w.kind,
                                                         f"{w.srv_ip}:{w.port}", str(CAP_SECS),
                                                         str(w.size), str(w.ops)])),
                             capture_output=True, text=True, check=True)
        c = json.loads(cli.stdout)
    except Exception:
        if run is not None:
            for p in procs(run):
                p.kill()
                p.wait()
        raise
    if run is not None:
        # Stop and wait for the exit only: nothing else of the harness's
        # runs inside the measured window.
        for p in procs(run):
            os.kill(p.pid, signal.SIGINT)
        for p in procs(run):
            p.wait(timeout=120)
    t1 = cpu_ticks()
    bench.stop_server(srv)
    proc = children_cpu() - c0 - (run.cpu_at_ready if run is not None else 0.0)
    steal = steal_fractions(t0, t1)
    own = None
    if sampling is not None:
        own = perf_own(sampling, {p.pid for p in procs(run)} if run is not None else set(), steal)
    if run is not None:
        tool_facts(run)
        run.own = own
    hz = os.sysconf("SC_CLK_TCK")
    return (t1["all"][0] - t0["all"][0]) / hz, proc, c, run, own, steal["all"]


def tool_facts(run):
    """Records and drops of a finished tool run (after the measured window)."""
    run.events = run.own_drops = None
    run.info = {}
    if run.tool.startswith("snoop"):
        info = json.loads(sh([SNOOP, "info", "--json", run.files["trace"]]).stdout)
        run.info = info
        run.events = info["events"]
        d = info.get("dropped") or {}
        run.own_drops = sum(v for v in d.values() if isinstance(v, (int, float)))
        # Events with each run counted as its packets, from the recorder's
        # closing line ("N events (... R packet runs of P packets ...)"):
        # the same count for every --packets mode, so bytes per event
        # compare across modes.
        run.represented = run.events
        m = re.search(r"(\d+) packet runs of (\d+) packets", open(run.err, errors="replace").read())
        if m and run.events is not None:
            run.represented = run.events - int(m.group(1)) + int(m.group(2))
    elif run.tool.startswith("tcpdump"):
        events = drops = 0
        for r in [run] + getattr(run, "peers", []):
            err = open(r.err, errors="replace").read()
            m = re.search(r"(\d+) packets captured", err)
            events = None if m is None or events is None else events + int(m.group(1))
            m = re.search(r"(\d+) packets dropped by kernel", err)
            drops = None if m is None or drops is None else drops + int(m.group(1))
        run.events, run.own_drops = events, drops


def own_log(tool, r):
    """The per-rep log's own-CPU figure of a tool's run (CPU_ATTRIB=1)."""
    if r[4] is None or tool == "none":
        return ""
    proc_s, hooks_s = r[4][tool_key(tool)]
    return f" own={proc_s + hooks_s:.3f}s"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, spec=".2f"):
    return "—" if v is None else format(v, spec)


def main():
    os.makedirs(WORK, exist_ok=True)
    sel = os.environ.get("CPU_WORKLOADS")
    works = [w for w in WORKS if not sel or w.name in sel.split(",")]
    tools = ["none"] + os.environ.get("CPU_TOOLS", "tcpdump,snoop,snoop-each").split(",")
    load0 = open("/proc/loadavg").read().split()[:3]
    log(f"snoop={SNOOP} reps={REPS} tools={tools} loadavg={load0}")
    if any(w.net == "veth" for w in works):
        bench.netns_up(rps_cpus=VETH_RPS)
    rows = []
    started = time.time()
    try:
        for w in works:
            wtools = [t for t in tools if applies(t, w)]
            res = {t: [] for t in wtools}
            for rep in range(REPS):
                order = wtools[rep % len(wtools):] + wtools[:rep % len(wtools)]
                for tool in order:
                    try:
                        res[tool].append(one_run(w, tool, rep))
                    except Exception as e:  # noqa: BLE001 - a failed run is shown as missing
                        log(f"{w.name} {tool} rep {rep}: {e}")
                        res[tool].append(None)
                base = res["none"][-1]
                log(f"{w.name} rep {rep}: " + ", ".join(
                    f"{t} busy={fmt(r[0])}s proc={fmt(r[1])}s steal={r[5]:.0%}" + own_log(t, r)
                    for t in wtools for r in [res[t][-1]] if r) + (" (no baseline)" if base is None else ""))
            for tool in wtools[1:]:
                extra, extra_p, ratio, own, own_k, steal = [], [], [], [], [], []
                key = tool_key(tool)
                drops, bpe, bpp, events, size, short = [], [], [], [], [], 0
                for rep in range(REPS):
                    b, r = res["none"][rep], res[tool][rep]
                    if b is None or r is None:
                        continue
                    ops = r[2]["ops"]
                    if ops < w.ops:
                        short += 1
                    extra.append((r[0] - b[0]) / ops / w.per)
                    steal.append(max(r[5], b[5]))
                    extra_p.append((r[1] - b[1]) / ops / w.per)
                    ratio.append((r[2]["ops"] / r[2]["secs"]) / (b[2]["ops"] / b[2]["secs"]))
                    run = r[3]
                    if r[4] is not None and b[4] is not None and key in r[4]:
                        proc_s, hooks_s = r[4][key]
                        hooks_s -= b[4][key][1]
                        own.append((proc_s + hooks_s) / ops / w.per)
                        own_k.append(hooks_s / ops / w.per)
                    drops.append(run.own_drops)
                    events.append(run.events)
                    if tool.startswith("snoop"):
                        bpe.append(run.info.get("bytes_per_event"))
                        if run.represented:
                            bpp.append(run.info.get("file_bytes") / run.represented)
                        size.append(run.info.get("file_bytes"))
                    elif tool.startswith("tcpdump"):
                        size.append(sum(os.path.getsize(r.files["pcap"])
                                        for r in [run] + getattr(run, "peers", [])))
                rows.append({
                    "work": w.name, "tool": tool, "unit": w.unit, "extra": med(extra),
                    "extra_proc": med(extra_p), "ratio": med(ratio),
                    "own": med(own), "own_k": med(own_k), "steal": med(steal),
                    "drops": max([d for d in drops if d is not None], default=None),
                    "bpe": med(bpe), "bpp": med(bpp), "events": med(events), "reps": len(extra), "short": short,
                    "size": med(size),
                })
    finally:
        if any(w.net == "veth" for w in works):
            bench.netns_down()
    load1 = open("/proc/loadavg").read().split()[:3]
    mins = (time.time() - started) / 60
    out = [f"Fixed-work CPU cost ({REPS} reps, {mins:.1f} min; load average at start "
           f"{' '.join(load0)}, at end {' '.join(load1)}; {os.cpu_count()} CPUs; "
           f"{'client on CPU 0, server on CPU 1' if PIN else 'workload unpinned'}; "
           f"snoop {SNOOP})", "",
           "| work | tool | extra busy CPU (machine) | extra CPU (processes) "
           + ("| own CPU (perf) | of it in kernel hooks " if ATTRIB else "")
           + "| throughput ratio | drops | B/record | B/event (runs as packets) | records | file "
           "| steal | target met |" + (" own CPU below tcpdump's |" if ATTRIB else ""),
           "|---|---|---|---|" + ("---|---|" if ATTRIB else "") + "---|---|---|---|---|---|---|---|"
           + ("---|" if ATTRIB else "")]
    by = {(r["work"], r["tool"]): r for r in rows}
    for r in rows:
        target = ""
        td = by.get((r["work"], "tcpdump"))
        if r["tool"] == "snoop" and td and None not in (r["extra"], td["extra"], r["ratio"], td["ratio"]):
            ok_cpu = r["extra"] < td["extra"]
            ok_tput = r["ratio"] >= td["ratio"]
            ok_drops = (r["drops"] or 0) == 0
            target = ("yes" if ok_cpu and ok_tput and ok_drops else
                      "no: " + ", ".join(x for x, ok in (("CPU", ok_cpu), ("throughput", ok_tput),
                                                          ("drops", ok_drops)) if not ok))
        own_cells, own_ok = "", ""
        if ATTRIB:
            own_cells = f"{fmt(r['own'])} {r['unit']} | {fmt(r['own_k'])} {r['unit']} | "
            if r["tool"] == "snoop" and td and None not in (r["own"], td["own"]):
                own_ok = " yes |" if r["own"] < td["own"] else " no |"
            else:
                own_ok = " |"
        out.append(f"| {r['work']} | {r['tool']} | {fmt(r['extra'])} {r['unit']} | "
                   f"{fmt(r['extra_proc'])} {r['unit']} | {own_cells}{fmt(r['ratio'], '.3f')} | "
                   f"{fmt(r['drops'], ',.0f')} | {fmt(r['bpe'])} | {fmt(r['bpp'])} | "
                   f"{fmt(r['events'], ',.0f')} | "
                   f"{fmt(None if r['size'] is None else r['size'] / 1024, ',.0f')} KiB | "
                   f"{fmt(r['steal'], '.0%')} | "
                   f"{target}{' (cut short)' if r['short'] else ''} |{own_ok}")
    text = "\n".join(out) + "\n"
    print(text)
    with open(OUT, "w") as f:
        f.write(text)
    log(f"wrote {OUT}")


if __name__ == "__main__":
    main()

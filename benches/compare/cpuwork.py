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
`snoop-each` (--packets=each, the per-packet recording of before). CPU is
the whole machine's busy time from /proc/stat (user+nice+system+irq+
softirq+steal, all CPUs) from just before the work starts until the work
is done and the tool has exited (its final drain and flush included); the
tool's cost is its run's busy time minus the `none` run's of the same rep,
per unit of work (µs per connection or datagram, ms per GB), median over
reps. Softirq time (where the receive-side hooks run) is in /proc/stat
but not in any process's rusage, hence the whole machine. `proc` repeats
the comparison with the CPU of the processes (workload + tool, from
rusage; tool start-up excluded), which other jobs on the machine do not
disturb. Throughput ratio = work per second of the client under the tool /
without, same rep, median.

The workload's client runs on CPU 0 and its server on CPU 1 (taskset;
CPU_PIN=0 leaves them to the scheduler); the tools are not pinned.

Environment: CPU_REPS (5), CPU_PIN (1), CPU_WORKLOADS (all), CPU_TOOLS (tcpdump,snoop,
snoop-each), the sizes above, BENCH_OUT_CPU (markdown output,
benches/compare/cpu-results.md), and bench.py's SNOOP, LOADGEN, BENCH_DIR.
"""

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


def busy_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
    return user + nice + system + irq + softirq + steal


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


def measured(w, tool, rep, srv):
    run = None
    if tool != "none":
        run = bench.start_tool(tool, w, f"cpu{rep}")
    c0 = children_cpu()
    t0 = busy_ticks()
    try:
        cli = subprocess.run(in_ns(w.cli_ns, pinned(0, [LOADGEN, "client", w.kind,
                                                         f"{w.srv_ip}:{w.port}", str(CAP_SECS),
                                                         str(w.size), str(w.ops)])),
                             capture_output=True, text=True, check=True)
        c = json.loads(cli.stdout)
    except Exception:
        if run is not None:
            run.proc.kill()
            run.proc.wait()
        raise
    if run is not None:
        # Stop and wait for the exit only: nothing else of the harness's
        # runs inside the measured window.
        os.kill(run.proc.pid, signal.SIGINT)
        run.proc.wait(timeout=120)
    t1 = busy_ticks()
    bench.stop_server(srv)
    proc = children_cpu() - c0 - (run.cpu_at_ready if run is not None else 0.0)
    if run is not None:
        tool_facts(run)
    hz = os.sysconf("SC_CLK_TCK")
    return (t1 - t0) / hz, proc, c, run


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
    elif run.tool == "tcpdump":
        err = open(run.err, errors="replace").read()
        m = re.search(r"(\d+) packets captured", err)
        run.events = int(m.group(1)) if m else None
        m = re.search(r"(\d+) packets dropped by kernel", err)
        run.own_drops = int(m.group(1)) if m else None


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
            res = {t: [] for t in tools}
            for rep in range(REPS):
                order = tools[rep % len(tools):] + tools[:rep % len(tools)]
                for tool in order:
                    try:
                        res[tool].append(one_run(w, tool, rep))
                    except Exception as e:  # noqa: BLE001 - a failed run is shown as missing
                        log(f"{w.name} {tool} rep {rep}: {e}")
                        res[tool].append(None)
                base = res["none"][-1]
                log(f"{w.name} rep {rep}: " + ", ".join(
                    f"{t} busy={fmt(r[0])}s proc={fmt(r[1])}s" for t in tools
                    for r in [res[t][-1]] if r) + (" (no baseline)" if base is None else ""))
            for tool in tools[1:]:
                extra, extra_p, ratio = [], [], []
                drops, bpe, bpp, events, size, short = [], [], [], [], [], 0
                for rep in range(REPS):
                    b, r = res["none"][rep], res[tool][rep]
                    if b is None or r is None:
                        continue
                    ops = r[2]["ops"]
                    if ops < w.ops:
                        short += 1
                    extra.append((r[0] - b[0]) / ops / w.per)
                    extra_p.append((r[1] - b[1]) / ops / w.per)
                    ratio.append((r[2]["ops"] / r[2]["secs"]) / (b[2]["ops"] / b[2]["secs"]))
                    run = r[3]
                    drops.append(run.own_drops)
                    events.append(run.events)
                    if tool.startswith("snoop"):
                        bpe.append(run.info.get("bytes_per_event"))
                        if run.represented:
                            bpp.append(run.info.get("file_bytes") / run.represented)
                        size.append(run.info.get("file_bytes"))
                    elif tool == "tcpdump":
                        size.append(os.path.getsize(run.files["pcap"]))
                rows.append({
                    "work": w.name, "tool": tool, "unit": w.unit, "extra": med(extra),
                    "extra_proc": med(extra_p), "ratio": med(ratio),
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
           "| work | tool | extra busy CPU (machine) | extra CPU (processes) | throughput ratio "
           "| drops | B/record | B/event (runs as packets) | records | file | target met |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
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
        out.append(f"| {r['work']} | {r['tool']} | {fmt(r['extra'])} {r['unit']} | "
                   f"{fmt(r['extra_proc'])} {r['unit']} | {fmt(r['ratio'], '.3f')} | "
                   f"{fmt(r['drops'], ',.0f')} | {fmt(r['bpe'])} | {fmt(r['bpp'])} | "
                   f"{fmt(r['events'], ',.0f')} | "
                   f"{fmt(None if r['size'] is None else r['size'] / 1024, ',.0f')} KiB | "
                   f"{target}{' (cut short)' if r['short'] else ''} |")
    text = "\n".join(out) + "\n"
    print(text)
    with open(OUT, "w") as f:
        f.write(text)
    log(f"wrote {OUT}")


if __name__ == "__main__":
    main()

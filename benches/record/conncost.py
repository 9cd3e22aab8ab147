#!/usr/bin/env python3
"""Recorder CPU and eBPF time per short TCP connection, binaries side by side.

A fixed amount of work: N short connections over loopback (connect, 64 B
each way, the server closes first: the compare harness's conn-lo load
generator), recorded by each binary in turn, alternated REPS times. For
each run: the recorder's own CPU (utime + stime of the snoop process from
its "recording to" line to its exit, so the final seal and footer count),
the kernel time of its eBPF programs (run_time_ns from its own program fds,
kernel.bpf_stats_enabled on for the run and restored after), both per
connection, and the records and bytes of the trace. Medians per binary,
and with PROGS=1 the median ns per run of each program.

  sudo python3 benches/record/conncost.py N BIN[:FLAGS] BIN[:FLAGS] ...
  e.g. sudo REPS=9 python3 benches/record/conncost.py 5000 old/snoop new/snoop new/snoop:--packets=each

Environment: REPS (5), PROGS (unset), LOADGEN (built with rustc from
benches/compare/loadgen.rs into $TMPDIR when unset), INFO (a snoop binary
with the analyzer, for `snoop info --json`; default: the first binary).
Only the recorder's process and programs are measured, so other jobs on
the host disturb the figures less than whole-machine CPU; still, compare
binaries only within one run.
"""

import glob
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HZ = os.sysconf("SC_CLK_TCK")


def loadgen():
    lg = os.environ.get("LOADGEN")
    if lg:
        return lg
    lg = os.path.join(tempfile.gettempdir(), "snoop-conncost-loadgen")
    src = os.path.join(HERE, "..", "compare", "loadgen.rs")
    if not os.path.exists(lg) or os.path.getmtime(src) > os.path.getmtime(lg):
        subprocess.run(["rustc", "-O", "--edition", "2021", src, "-o", lg], check=True)
    return lg


def progs(pid):
    """{prog id: (run_time_ns, run_cnt)} of the programs pid holds open."""
    out = {}
    for fd in glob.glob(f"/proc/{pid}/fdinfo/*"):
        try:
            text = open(fd).read()
        except OSError:
            continue
        kv = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if "prog_id" in kv and "run_time_ns" in kv:
            out[kv["prog_id"].strip()] = (int(kv["run_time_ns"]), int(kv["run_cnt"]))
    return out


def prog_names():
    """{prog id: name} of every loaded program (ids are gone once the
    recorder exits, so this is asked while it runs)."""
    r = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True, text=True)
    try:
        return {str(p["id"]): p.get("name", str(p["id"])) for p in json.loads(r.stdout)}
    except ValueError:
        return {}


def cpu_of(pid):
    st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) / HZ


def one(lg, spec, conns, work, info_bin):
    path, *flags = spec.split(":")
    flags = [f for f in flags if f]
    srv = subprocess.Popen([lg, "server", "conn", "127.0.0.1:0", "64"], stdout=subprocess.PIPE,
                           stdin=subprocess.PIPE, text=True)
    port = int(srv.stdout.readline().split()[1])
    trace, err = os.path.join(work, "t.snp"), os.path.join(work, "rec.err")
    with open(err, "w") as e:
        rec = subprocess.Popen([path, "record", "-o", trace, "--force", "--port", str(port)] + flags,
                               stderr=e, stdout=subprocess.DEVNULL)
    try:
        while "recording to" not in open(err).read():
            if rec.poll() is not None:
                sys.exit(f"{spec} did not start: {open(err).read()}")
            time.sleep(0.02)
        c0, p0 = cpu_of(rec.pid), progs(rec.pid)
        subprocess.run([lg, "client", "conn", f"127.0.0.1:{port}", "120", "64", str(conns)],
                       capture_output=True, check=True)
        p1 = progs(rec.pid)
        names = prog_names() if os.environ.get("PROGS") else {}
        rec.send_signal(signal.SIGINT)
        _, status, ru = os.wait4(rec.pid, 0)
    finally:
        srv.stdin.close()
        srv.kill()
        srv.wait()
    if status != 0:
        sys.exit(f"{spec} exited with status {status}: {open(err).read()}")
    info = json.loads(subprocess.run([info_bin, "info", "--json", trace], capture_output=True,
                                     text=True, check=True).stdout)
    per = {}
    for i, (t, c) in p1.items():
        t0, n0 = p0.get(i, (0, 0))
        if c > n0:
            per[names.get(i, i)] = (t - t0, c - n0)
    return {
        "recorder": (ru.ru_utime + ru.ru_stime - c0) * 1e6 / conns,
        "ebpf": sum(t for t, _ in per.values()) / 1e3 / conns,
        "records": info["events"],
        "file": info["file_bytes"],
        "dropped": sum(v for v in (info.get("dropped") or {}).values() if isinstance(v, int)),
        "progs": per,
    }


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    conns, specs = int(sys.argv[1]), sys.argv[2:]
    reps = int(os.environ.get("REPS", "5"))
    info_bin = os.environ.get("INFO", specs[0].split(":")[0])
    lg = loadgen()
    old = open("/proc/sys/kernel/bpf_stats_enabled").read().strip()
    runs = {s: [] for s in specs}
    with tempfile.TemporaryDirectory(prefix="snoop-conncost.") as work:
        try:
            open("/proc/sys/kernel/bpf_stats_enabled", "w").write("1")
            for rep in range(reps):
                for s in specs:
                    r = one(lg, s, conns, work, info_bin)
                    runs[s].append(r)
                    print(f"rep {rep} {s}: recorder {r['recorder']:.1f} µs/conn, eBPF {r['ebpf']:.1f} "
                          f"µs/conn, {r['records']} records, {r['file']} B", flush=True)
        finally:
            open("/proc/sys/kernel/bpf_stats_enabled", "w").write(old)
    print(f"\n{conns} connections, {reps} reps, load average {open('/proc/loadavg').read().split()[:3]}")
    print("| recorder | recorder CPU µs/conn | eBPF µs/conn | sum | records/conn | bytes/conn | dropped |")
    print("|---|---|---|---|---|---|---|")
    for s in specs:
        m = lambda k: statistics.median(r[k] for r in runs[s])  # noqa: E731
        print(f"| `{s}` | {m('recorder'):.1f} | {m('ebpf'):.1f} | {m('recorder') + m('ebpf'):.1f} | "
              f"{m('records') / conns:.1f} | {m('file') / conns:.1f} | {max(r['dropped'] for r in runs[s])} |")
    if os.environ.get("PROGS"):
        by = {s: {} for s in specs}
        for s in specs:
            for r in runs[s]:
                for n, (t, c) in r["progs"].items():
                    by[s].setdefault(n, []).append(t / c)
        print("\n| program (ns per run) | " + " | ".join(f"`{s}`" for s in specs) + " |")
        print("|---|" + "---|" * len(specs))
        for n in sorted({n for s in specs for n in by[s]}):
            cells = [f"{statistics.median(by[s][n]):.0f}" if n in by[s] else "—" for s in specs]
            print(f"| {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

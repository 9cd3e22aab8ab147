//! The recorder's user-space CPU per short TCP connection, without the
//! kernel: synthetic ring records shaped like a loopback connection storm's
//! (per connection: 10 TCP state changes, 4 messages, 4 packet sets of 3
//! runs) go through the real drain pipeline into a trace file. A change to
//! decoding, the flow dictionary or chunk sealing shows here as CPU per
//! connection, steadier than a live recording (no kernel, no workload).
//!
//!     cargo run --release -p snoop-record --example pipeline_cost -- [CONNS] [OUT]
//!
//! Rows per chunk as the recorder's (SNOOP_CHUNK_ROWS overrides both). The
//! records are synthetic and compress far better than real ones: compare
//! CPU between builds or settings, not file sizes.

use std::fs::File;
use std::io::BufWriter;
use std::sync::atomic::Ordering;

use snoop_format::{FileInfo, TraceWriter, WriterOptions};
use snoop_record::pipeline::{run_pipeline, Control, Limits};
use snoop_record::skel::types::{snoop_conn, snoop_msg, snoop_pktset};
use snoop_record::skel::{bytes_of, kind};
use snoop_record::source::{Counters, ReplaySource};

const LO: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1];

fn comm(name: &str) -> [i8; 16] {
    let mut c = [0i8; 16];
    for (d, s) in c.iter_mut().zip(name.bytes()) {
        *d = s as i8;
    }
    c
}

/// One end of a connection: socket cookie, process, ports.
#[derive(Clone, Copy)]
struct End {
    cookie: u64,
    pid: u32,
    comm: [i8; 16],
    lport: u16,
    rport: u16,
}

fn state(e: End, ts: u64, old: u8, new: u8) -> Vec<u8> {
    let c = snoop_conn {
        kind: kind::CONN,
        family: 10,
        old_state: old,
        new_state: new,
        pid: e.pid,
        tid: e.pid,
        ts_ns: ts,
        cookie: e.cookie,
        laddr: LO,
        raddr: LO,
        lport: if old == 7 { 0 } else { e.lport },
        rport: e.rport,
        comm: e.comm,
        ..Default::default()
    };
    bytes_of(&c).to_vec()
}

fn msg(e: End, ts: u64, dir: u8) -> Vec<u8> {
    let m = snoop_msg {
        kind: kind::MSG,
        dir,
        family: 10,
        proto: 6,
        pid: e.pid,
        tid: e.pid,
        bytes: 64,
        ts_ns: ts,
        cookie: e.cookie,
        cgroup: 1,
        laddr: LO,
        raddr: LO,
        lport: e.lport,
        rport: e.rport,
        comm: e.comm,
        ..Default::default()
    };
    bytes_of(&m).to_vec()
}

fn set(e: End, ts: u64, dir: u8) -> Vec<u8> {
    let mut p = snoop_pktset {
        kind: kind::PKTSET,
        dir,
        family: 2,
        proto: 6,
        ifindex: 1,
        cookie: e.cookie,
        last_ns: ts + 60_000,
        pid: e.pid,
        tid: e.pid,
        lport: e.lport,
        rport: e.rport,
        n: 3,
        comm: e.comm,
        ..Default::default()
    };
    p.laddr[..4].copy_from_slice(&[127, 0, 0, 1]);
    p.raddr[..4].copy_from_slice(&[127, 0, 0, 1]);
    for (i, (len, count)) in [(60u32, 1u32), (52, 2), (116, 1)].into_iter().enumerate() {
        p.e[i].first_ns = ts + i as u64 * 9_000;
        p.e[i].last_ns = ts + i as u64 * 9_000 + u64::from(count - 1) * 40_000;
        p.e[i].len = len;
        p.e[i].count = count;
        p.e[i].segs = 1;
        p.e[i].tcp_flags = 0x10;
    }
    bytes_of(&p).to_vec()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let conns: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let out = args
        .next()
        .unwrap_or_else(|| "/tmp/pipeline-cost.snp".into());
    let (srv, cli) = (comm("snb-srv-conn"), comm("snb-cli-conn"));
    let mut recs = Vec::with_capacity(conns as usize * 18);
    let mut rows = 0u64;
    let mut late: Vec<Vec<u8>> = Vec::new();
    for i in 0..conns {
        let t = 1_000_000_000 + i * 100_000;
        let port = 20_000 + (i % 40_000) as u16;
        let c = End {
            cookie: 2 * i + 10,
            pid: 5000,
            comm: cli,
            lport: port,
            rport: 8080,
        };
        let s = End {
            cookie: 2 * i + 11,
            pid: 4000,
            comm: srv,
            lport: 8080,
            rport: port,
        };
        // The previous connection's packet sets, closed by the sweep.
        recs.append(&mut late);
        recs.push(state(c, t, 7, 2));
        recs.push(state(c, t + 14_000, 2, 1));
        recs.push(state(s, t + 19_000, 10, 3));
        recs.push(state(s, t + 22_000, 3, 1));
        recs.push(msg(c, t + 30_000, 0));
        recs.push(msg(s, t + 32_000, 1));
        recs.push(msg(s, t + 41_000, 0));
        recs.push(state(s, t + 42_000, 1, 4));
        recs.push(msg(c, t + 43_000, 1));
        recs.push(state(c, t + 47_000, 1, 8));
        recs.push(state(c, t + 60_000, 8, 9));
        recs.push(state(s, t + 67_000, 4, 5));
        recs.push(state(s, t + 70_000, 5, 7));
        recs.push(state(c, t + 78_000, 9, 7));
        for (e, dir) in [(c, 0), (s, 1), (s, 0), (c, 1)] {
            late.push(set(e, t + 2_000, dir));
        }
        rows += 10 + 4 + 12;
    }
    recs.append(&mut late);
    let info = FileInfo::from_host(vec!["pipeline_cost".into()]);
    let file = BufWriter::new(File::create(&out).expect("create output"));
    let mut w = TraceWriter::new(
        file,
        &info,
        WriterOptions {
            chunk_rows: snoop_record::record_chunk_rows(),
            zstd_level: snoop_record::record_zstd_level(),
        },
    )
    .expect("writer");
    w.seal_in_background().expect("sealing thread");
    let ctl = Control::default();
    let cpu0 = cpu_s();
    let wall = std::time::Instant::now();
    run_pipeline(
        &mut w,
        &ctl,
        &Limits::default(),
        |drain| drain(&mut ReplaySource::new(recs, 512, Counters::default())),
        || {},
        |ctl| {
            if ctl.events.load(Ordering::Relaxed) >= rows {
                ctl.stop();
            }
        },
    )
    .expect("pipeline");
    w.finish(2_000_000_000 + conns * 100_000).expect("finish");
    let cpu = cpu_s() - cpu0;
    let bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    println!(
        "{conns} connections, {rows} rows: {:.2} µs CPU per connection ({:.0} ns per row), \
         {:.2} s wall, {:.1} bytes per connection",
        cpu * 1e6 / conns as f64,
        cpu * 1e9 / rows as f64,
        wall.elapsed().as_secs_f64(),
        bytes as f64 / conns as f64
    );
}

/// This process's user + system CPU seconds, every thread.
fn cpu_s() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

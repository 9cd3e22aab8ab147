//! Format throughput on the reference synthetic workload: encoding +
//! compression (writer) and decoding into column vectors (reader), per core.
//! Run: `cargo bench -p snoop-format --bench format`.

#![allow(missing_docs)] // criterion_group! generates an undocumented fn

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use snoop_format::synth::{Synth, SynthConfig};
use snoop_format::{ColumnSet, FileInfo, Table, Trace, TraceWriter, WriterOptions};

const N: usize = 2_000_000;

fn messages() -> (
    Vec<snoop_format::Flow>,
    Vec<snoop_format::synth::SynthMessage>,
) {
    let mut s = Synth::new(SynthConfig::default());
    let msgs = (0..N).map(|_| s.next_message()).collect();
    (s.flows().to_vec(), msgs)
}

fn write(flows: &[snoop_format::Flow], msgs: &[snoop_format::synth::SynthMessage]) -> Vec<u8> {
    let mut w = TraceWriter::new(
        Vec::with_capacity(16 << 20),
        &FileInfo::default(),
        WriterOptions::default(),
    )
    .expect("writer");
    for m in msgs {
        w.push_message(m.ts_ns, &flows[m.flow], m.bytes, m.dir)
            .expect("push");
    }
    w.finish(0).expect("finish")
}

/// Many short connections (the shape of a connection storm): each lives
/// for 32 events spread over its 4 flows (client and server, messages and
/// packets), three connections overlap, so a chunk holds tens of thousands
/// of distinct flows and the one-entry "last flow" cache rarely hits.
/// `unowned`: the flows have no socket or process (packets of connections
/// whose sockets are gone), so only the client port tells them apart.
fn conn_storm(unowned: bool) -> (Vec<snoop_format::Flow>, Vec<(u64, usize)>) {
    let conns = N / 32;
    let mut flows = Vec::with_capacity(conns * 4);
    for c in 0..conns {
        for f in 0..4u32 {
            let mut fl = snoop_format::Flow {
                pid: 1000 + (f & 1) * 7,
                tid: 1000 + (f & 1) * 7,
                cookie: 10_000 + (c as u64) * 2 + (f & 1) as u64,
                ifindex: if f < 2 { 0 } else { 1 },
                family: 10,
                proto: 6,
                lport: if f & 1 == 0 {
                    40_000 + (c % 20_000) as u16
                } else {
                    8080
                },
                rport: if f & 1 == 0 {
                    8080
                } else {
                    40_000 + (c % 20_000) as u16
                },
                ..Default::default()
            };
            fl.comm[..4].copy_from_slice(if f & 1 == 0 { b"clnt" } else { b"srvr" });
            if unowned {
                (fl.pid, fl.tid, fl.cookie, fl.comm) = (0, 0, 0, [0; 16]);
            }
            fl.laddr[10] = 0xff;
            fl.laddr[11] = 0xff;
            fl.laddr[12] = 127;
            fl.laddr[15] = 1;
            fl.raddr = fl.laddr;
            flows.push(fl);
        }
    }
    let mut ev = Vec::with_capacity(N);
    for i in 0..N {
        // connection i/32, staggered by one of three in-flight ones
        let c = (i / 32 + i % 3).min(conns - 1);
        ev.push((i as u64 * 1000, c * 4 + (i * 7) % 4));
    }
    (flows, ev)
}

fn bench(c: &mut Criterion) {
    let (flows, msgs) = messages();
    let file = write(&flows, &msgs);
    eprintln!(
        "synthetic: {N} messages -> {} bytes ({:.2} bytes/event)",
        file.len(),
        file.len() as f64 / N as f64
    );
    let mut g = c.benchmark_group("format");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("write_messages", |b| b.iter(|| write(&flows, &msgs)));
    for (name, unowned) in [("write_conn_storm", false), ("write_unowned_storm", true)] {
        let (sflows, sev) = conn_storm(unowned);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut w = TraceWriter::new(
                    Vec::with_capacity(16 << 20),
                    &FileInfo::default(),
                    WriterOptions::default(),
                )
                .expect("writer");
                for &(ts, f) in &sev {
                    w.push_message(ts, &sflows[f], 64, snoop_format::Direction::Tx)
                        .expect("push");
                }
                w.finish(0).expect("finish")
            })
        });
    }
    let trace = Trace::from_bytes(file).expect("trace");
    g.bench_function("decode_messages_all_columns", |b| {
        b.iter(|| {
            let mut rows = 0;
            for i in trace.chunks_of(Table::Messages).collect::<Vec<_>>() {
                let e = trace
                    .read_chunk(i, ColumnSet::ALL)
                    .and_then(|c| c.into_events())
                    .expect("decode");
                rows += e.ts.len();
            }
            assert_eq!(rows, N);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

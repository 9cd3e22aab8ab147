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

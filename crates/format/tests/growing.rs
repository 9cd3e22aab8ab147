//! Reading a trace while a recorder is still appending to it: every open
//! sees the chunks complete so far (a torn last chunk is ignored, never an
//! error and never a SIGBUS), the count only grows, every kept chunk decodes,
//! and the finished file is complete with everything in it.
//!
//! The writer goes through [`Torn`], which splits every write into small
//! pieces with a yield between them, so readers often see half a chunk.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use snoop_format::synth::{write_synthetic, SynthConfig};
use snoop_format::{ColumnSet, FileInfo, Table, Trace, TraceWriter, WriterOptions};

/// A file whose writes land a few hundred bytes at a time.
struct Torn(std::fs::File);

impl Write for Torn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(333);
        let w = self.0.write(&buf[..n])?;
        std::thread::yield_now();
        Ok(w)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn info() -> FileInfo {
    FileInfo {
        host: "growing".into(),
        kernel: "6.18".into(),
        snoop_version: "0.1.0".into(),
        command: vec!["snoop".into(), "test".into()],
        boot_to_wall_ns: 1_767_225_600_000_000_000,
        start_ns: 1_000,
        ifaces: vec![(1, "lo".into())],
    }
}

/// Open and read everything; returns the message rows seen. `started`:
/// the writer has written its header and info block (before that, a clear
/// "no complete block" error is the right answer).
fn read_all(path: &std::path::Path, started: bool) -> u64 {
    let t = match Trace::open(path) {
        Ok(t) => t,
        Err(e) if !started => {
            assert!(!e.to_string().is_empty());
            return 0;
        }
        Err(e) => panic!("open of a growing trace failed: {e}"),
    };
    let mut rows = 0;
    for i in 0..t.chunks().len() {
        let c = t
            .read_chunk(i, ColumnSet::ALL)
            .unwrap_or_else(|e| panic!("kept chunk {i} does not decode: {e}"));
        if c.table == Table::Messages {
            rows += c.rows as u64;
        }
    }
    assert_eq!(rows, t.rows(Table::Messages));
    rows
}

#[test]
fn a_trace_being_written_reads_its_complete_chunks() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("growing.snp");
    let file = std::fs::File::create(&path).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let (p2, done2, started2) = (path.clone(), Arc::clone(&done), Arc::clone(&started));
    let reader = std::thread::spawn(move || {
        let (mut opens, mut last) = (0u32, 0u64);
        while !done2.load(Ordering::SeqCst) {
            let n = read_all(&p2, started2.load(Ordering::SeqCst));
            assert!(n >= last, "rows went down: {last} -> {n}");
            last = n;
            opens += 1;
        }
        (opens, last)
    });
    let opts = WriterOptions {
        chunk_rows: 2_000,
        zstd_level: 1,
    };
    let mut w = TraceWriter::new(Torn(file), &info(), opts).unwrap();
    started.store(true, Ordering::SeqCst);
    let cfg = SynthConfig {
        flows: 50,
        processes: 5,
        start_ns: 1_000,
        ..SynthConfig::default()
    };
    let mut total = 0;
    for round in 0..40u64 {
        let t = write_synthetic(
            &mut w,
            SynthConfig {
                seed: round,
                start_ns: 1_000 + round * 1_000_000_000,
                ..cfg.clone()
            },
            5_000,
        )
        .unwrap();
        total += t.messages;
        w.flush().unwrap();
    }
    w.finish(100_000_000_000).unwrap();
    done.store(true, Ordering::SeqCst);
    let (opens, _) = reader.join().expect("reader panicked");
    assert!(opens >= 5, "only {opens} reads overlapped the writer");
    let t = Trace::open(&path).unwrap();
    assert!(t.is_complete());
    assert_eq!(read_all(&path, true), total);
}

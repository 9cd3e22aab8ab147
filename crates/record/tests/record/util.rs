//! Shared helpers of the eBPF tests: the root check, unique names, a
//! recording running on its own thread, `snoop-peer` processes and per-comm
//! byte totals read back from a trace.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use snoop_format::{
    col, comm_str, ColumnSet, EventBatch, FileInfo, Table, Trace, TraceWriter, WriterOptions,
};
use snoop_record::kernel::KernelOptions;
use snoop_record::pipeline::{Control, Limits, Summary};
use snoop_record::record_session;

pub fn bpf_ok(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    if std::env::var("SNOOP_REQUIRE_BPF").as_deref() == Ok("1") {
        panic!("{test}: needs root for eBPF and SNOOP_REQUIRE_BPF=1");
    }
    eprintln!("{test}: skipped: not root (eBPF needs CAP_BPF/CAP_PERFMON/CAP_NET_ADMIN)");
    false
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A comm unique to this test process and call (<= 15 bytes).
pub fn name(tag: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    format!("{tag}{}x{n}", std::process::id() % 100000)
}

pub struct Recording {
    ctl: Arc<Control>,
    handle: std::thread::JoinHandle<anyhow::Result<Summary>>,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn start(opts: KernelOptions) -> Recording {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.snp");
    let file = std::fs::File::create(&path).expect("create trace");
    let ctl = Arc::new(Control::default());
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let c2 = Arc::clone(&ctl);
    let p2 = path.clone();
    let handle = std::thread::spawn(move || {
        let info = FileInfo::from_host(vec!["test".into()]);
        let mut w = TraceWriter::new(file, &info, WriterOptions::default())?;
        w.seal_in_background()?; // as `snoop record` does
        let s = record_session(
            &mut w,
            &opts,
            &Limits::default(),
            &c2,
            move || {
                let _ = tx.send(());
            },
            |_| {},
        )?;
        w.finish(snoop_format::boottime_ns())?;
        let _ = p2;
        Ok(s)
    });
    if rx.recv().is_err() {
        let r = handle.join().expect("recorder thread");
        panic!(
            "recorder did not start: {:#}",
            r.err().map(|e| format!("{e:#}")).unwrap_or_default()
        );
    }
    Recording {
        ctl,
        handle,
        path,
        _dir: dir,
    }
}

impl Recording {
    /// Message rows the recorder has written so far (live).
    pub fn messages_so_far(&self) -> u64 {
        self.ctl.per_kind[snoop_record::skel::kind::MSG as usize]
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn stop(self) -> (Trace, Summary, tempfile::TempDir) {
        self.ctl.stop();
        let s = self
            .handle
            .join()
            .expect("recorder thread")
            .expect("recording");
        let t = Trace::open(&self.path).expect("read trace");
        (t, s, self._dir)
    }
}

pub fn peer_bin() -> &'static str {
    env!("CARGO_BIN_EXE_snoop-peer")
}

pub fn spawn(args: &[&str]) -> (Child, BufReader<ChildStdout>) {
    let mut c = Command::new(peer_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn snoop-peer");
    let out = BufReader::new(c.stdout.take().expect("stdout"));
    (c, out)
}

pub fn read_line(r: &mut BufReader<ChildStdout>) -> String {
    let mut l = String::new();
    r.read_line(&mut l).expect("peer output");
    l.trim().to_string()
}

pub fn wait_ok(mut c: Child) {
    let st = c.wait().expect("wait peer");
    assert!(st.success(), "peer failed: {st}");
}

pub fn server(mode: &str, name: &str, bind: &str, a: usize, b: usize) -> (Child, u16) {
    let (c, mut out) = spawn(&[mode, name, bind, &a.to_string(), &b.to_string()]);
    let l = read_line(&mut out);
    let port = l
        .strip_prefix("ready ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("bad ready line {l:?}"));
    (c, port)
}

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes {
    pub tx: u64,
    pub rx: u64,
    pub n: u64,
}

/// Every chunk of event table `table` of `t`, decoded with `want`.
pub fn event_batches(t: &Trace, table: Table, want: ColumnSet) -> Vec<EventBatch> {
    t.chunks_of(table)
        .map(|i| {
            t.read_chunk(i, want)
                .expect("chunk")
                .into_events()
                .expect("events")
        })
        .collect()
}

/// (comm -> bytes) of one event table, plus pid per comm.
pub fn totals(t: &Trace, table: Table) -> HashMap<String, (Bytes, u32)> {
    let mut out: HashMap<String, (Bytes, u32)> = HashMap::new();
    let want = ColumnSet::of(&[
        col::TS,
        col::FLOW,
        col::BYTES,
        col::DIR,
        col::F_PID,
        col::F_COMM,
    ]);
    for b in event_batches(t, table, want) {
        for r in 0..b.rows {
            let f = b.flow[r] as usize;
            let e = out.entry(comm_str(&b.flows.comm[f])).or_default();
            e.1 = b.flows.pid[f];
            e.0.n += 1;
            if table == Table::Connections {
                continue;
            }
            if b.dir[r] == 0 {
                e.0.tx += u64::from(b.bytes[r]);
            } else {
                e.0.rx += u64::from(b.bytes[r]);
            }
        }
    }
    out
}

/// The cgroup v2 ids of the message flows of each comm in `t`.
pub fn message_cgroups(t: &Trace) -> HashMap<String, Vec<u64>> {
    let mut out: HashMap<String, Vec<u64>> = HashMap::new();
    let want = ColumnSet::of(&[col::FLOW, col::F_COMM, col::F_CGROUP]);
    for b in event_batches(t, Table::Messages, want) {
        for r in 0..b.rows {
            let f = b.flow[r] as usize;
            let v = out.entry(comm_str(&b.flows.comm[f])).or_default();
            if !v.contains(&b.flows.cgroup[f]) {
                v.push(b.flows.cgroup[f]);
            }
        }
    }
    out
}

/// This process's cgroup v2 id: the inode number of its cgroup directory
/// (what bpf_get_current_cgroup_id returns). Children inherit it.
pub fn own_cgroup_id() -> u64 {
    use std::os::unix::fs::MetadataExt;
    let c = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    let path = c
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line");
    let root = snoop_record::kernel::cgroup2_root().expect("cgroup v2 mounted");
    std::fs::metadata(format!("{root}{path}"))
        .expect("cgroup directory")
        .ino()
}

pub fn opts(comms: &[&str]) -> KernelOptions {
    KernelOptions {
        comms: comms.iter().map(|s| s.to_string()).collect(),
        packets: true,
        // As `snoop record` runs: messages staged per CPU, so every test
        // also proves that none is lost or double-counted on the way.
        msg_batch: true,
        lifecycle: true,
        existing: true,
        ring_bytes: 8 << 20,
        ..KernelOptions::default()
    }
}

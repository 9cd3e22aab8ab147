//! The trace writer: rows go into per-table builders; a full builder is
//! sealed into one self-contained chunk (rows sorted by time, flow dictionary,
//! one zstd frame per column) and appended with a single write. The writer
//! never seeks back, so a killed recorder leaves every sealed chunk readable.
//!
//! Sealing (sort, encode, compress) can run on a helper thread
//! ([`TraceWriter::seal_in_background`]) so the thread that pushes rows — the
//! recorder's ring-buffer drain — never stops for it; chunks are still
//! written in order, by the pushing thread.

use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::codec::{self, EncodedColumn, MAX_CHUNK_ROWS};
use crate::error::{FormatError, Result};
use crate::layout::{self, kind, BlockHeader, FileHeader, Trailer};
use crate::meta::{self, ChunkEntry, ChunkMeta, FileInfo, Footer};
use crate::schema::{col, Direction, Flow, ProcessRow, Table, TcpOutcome};

/// Writer settings.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Rows per chunk before it is sealed (per table).
    pub chunk_rows: usize,
    /// zstd level for column frames.
    pub zstd_level: i32,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            chunk_rows: 256 * 1024,
            zstd_level: 3,
        }
    }
}

/// Flow room of a table's first dictionary (later ones start with what the
/// chunk before needed). Growing from nothing rehashes every flow at each
/// doubling, a tenth of the recorder's CPU on a storm of short connections;
/// the table costs 8 bytes per flow of room.
const FIRST_CHUNK_FLOWS: usize = 1 << 12;

/// Per-chunk flow dictionary under construction. The table holds indices
/// into `flows` only, so each flow is stored once and the table stays
/// small enough to live in cache with tens of thousands of flows a chunk
/// (many short connections).
#[derive(Default)]
struct FlowDict {
    index: hashbrown::HashTable<u32>,
    flows: Vec<Flow>,
    /// The last flow looked up (bursts repeat one flow).
    last: Option<(Flow, u32)>,
}

impl FlowDict {
    fn get(&mut self, flow: &Flow) -> u32 {
        if let Some((f, i)) = &self.last {
            if f == flow {
                return *i;
            }
        }
        let h = flow.hash64();
        let flows = &mut self.flows;
        let i = match self.index.entry(
            h,
            |&i| flows[i as usize] == *flow,
            |&i| flows[i as usize].hash64(),
        ) {
            hashbrown::hash_table::Entry::Occupied(e) => *e.get(),
            hashbrown::hash_table::Entry::Vacant(e) => {
                let i = flows.len() as u32;
                flows.push(*flow);
                e.insert(i);
                i
            }
        };
        self.last = Some((*flow, i));
        i
    }

    /// An empty dictionary with room for `n` flows without rehashing.
    fn with_capacity(n: usize) -> FlowDict {
        FlowDict {
            index: hashbrown::HashTable::with_capacity(n),
            flows: Vec::with_capacity(n),
            last: None,
        }
    }

    fn clear(&mut self) {
        self.index.clear();
        self.flows.clear();
        self.last = None;
    }

    fn encode(&self, level: i32, out: &mut Vec<EncodedColumn>) -> Result<()> {
        let f = &self.flows;
        macro_rules! field {
            ($enc:ident, $id:expr, $field:ident) => {
                out.push(codec::$enc($id, f.iter().map(|x| x.$field), level)?)
            };
        }
        field!(u32s_of, col::F_PID, pid);
        field!(u32s_of, col::F_TID, tid);
        field!(fixed16s_of, col::F_COMM, comm);
        out.push(codec::u64s_of(
            col::F_CGROUP,
            f.iter().map(|x| x.cgroup),
            false,
            level,
        )?);
        out.push(codec::u64s_of(
            col::F_COOKIE,
            f.iter().map(|x| x.cookie),
            false,
            level,
        )?);
        field!(u32s_of, col::F_IFINDEX, ifindex);
        field!(u8s_of, col::F_FAMILY, family);
        field!(u8s_of, col::F_PROTO, proto);
        field!(fixed16s_of, col::F_LADDR, laddr);
        field!(u16s_of, col::F_LPORT, lport);
        field!(fixed16s_of, col::F_RADDR, raddr);
        field!(u16s_of, col::F_RPORT, rport);
        Ok(())
    }

    fn pid_range(&self) -> (u32, u32) {
        range(self.flows.iter().map(|f| f.pid))
    }
}

fn range(it: impl Iterator<Item = u32>) -> (u32, u32) {
    it.fold(None, |acc: Option<(u32, u32)>, p| match acc {
        None => Some((p, p)),
        Some((lo, hi)) => Some((lo.min(p), hi.max(p))),
    })
    .unwrap_or((0, 0))
}

/// The order that sorts `ts` (stable), or `None` when already sorted.
fn sort_order(ts: &[u64]) -> Option<Vec<u32>> {
    if ts.windows(2).all(|w| w[0] <= w[1]) {
        return None;
    }
    let mut idx: Vec<u32> = (0..ts.len() as u32).collect();
    idx.sort_by_key(|&i| ts[i as usize]);
    Some(idx)
}

fn permute<T: Copy>(v: &mut Vec<T>, order: &Option<Vec<u32>>) {
    if let Some(o) = order {
        *v = o.iter().map(|&i| v[i as usize]).collect();
    }
}

/// Renumber a chunk's flows in the order of their first row (`flow`: the
/// rows' flow indices, already in time order), reordering the dictionary to
/// match. Flows are numbered as rows arrive, and rows that arrive late (a
/// packet set closed by the idle sweep, some time after its packets) would
/// otherwise make the flow column jump about and leave the dictionary's
/// cookies and ports unordered: both compress several times worse. Nothing
/// moves when the order is already so.
fn number_by_first_row(flow: &mut [u32], flows: &mut [Flow]) {
    let mut new_of = vec![u32::MAX; flows.len()];
    let mut next = 0u32;
    let mut moved = false;
    for f in flow.iter_mut() {
        let Some(n) = new_of.get_mut(*f as usize) else {
            continue; // not a flow of this chunk (never pushed so)
        };
        if *n == u32::MAX {
            *n = next;
            next += 1;
        }
        moved |= *n != *f;
        *f = *n;
    }
    if !moved {
        return;
    }
    // Flows no row names (none today) keep their relative order, last.
    for n in new_of.iter_mut().filter(|n| **n == u32::MAX) {
        *n = next;
        next += 1;
    }
    let mut order = vec![0u32; flows.len()];
    for (old, &n) in new_of.iter().enumerate() {
        order[n as usize] = old as u32;
    }
    let old = flows.to_vec();
    for (slot, &o) in flows.iter_mut().zip(&order) {
        *slot = old[o as usize];
    }
}

/// Rows of one table not yet sealed into a chunk.
#[derive(Default)]
struct Builder {
    ts: Vec<u64>,
    flow: Vec<u32>,
    dict: FlowDict,
    /// bytes / len (messages, packets)
    a32: Vec<u32>,
    /// dir (messages, packets), old_state (connections), kind (processes), source (stats)
    a8: Vec<u8>,
    /// new_state (connections)
    b8: Vec<u8>,
    /// segs (packets)
    a16: Vec<u16>,
    /// bytes_acked (connections), dropped (stats)
    a64: Vec<u64>,
    /// bytes_received (connections), events (stats)
    b64: Vec<u64>,
    procs: Vec<ProcessRow>,
    /// TCP outcomes (connections)
    outcomes: Vec<TcpOutcome>,
    /// run counts (packets)
    count: Vec<u32>,
    /// run spans, ns (packets)
    span: Vec<u64>,
    /// TCP flags (packets)
    flags: Vec<u8>,
}

impl Builder {
    fn len(&self) -> usize {
        self.ts.len()
    }

    fn clear(&mut self) {
        self.ts.clear();
        self.flow.clear();
        self.dict.clear();
        self.a32.clear();
        self.a8.clear();
        self.b8.clear();
        self.a16.clear();
        self.a64.clear();
        self.b64.clear();
        self.procs.clear();
        self.outcomes.clear();
        self.count.clear();
        self.span.clear();
        self.flags.clear();
    }

    /// Encode the rows as the columns of `table`.
    fn seal(
        &mut self,
        table: Table,
        seq: u32,
        level: i32,
    ) -> Result<(ChunkMeta, Vec<EncodedColumn>)> {
        let order = sort_order(&self.ts);
        permute(&mut self.ts, &order);
        let rows = self.ts.len();
        let mut cols = vec![codec::u64s(col::TS, &self.ts, true, level)?];
        let (pid_min, pid_max) = match table {
            Table::Messages | Table::Packets | Table::Connections => {
                permute(&mut self.flow, &order);
                number_by_first_row(&mut self.flow, &mut self.dict.flows);
                cols.push(codec::u32s(col::FLOW, &self.flow, level)?);
                self.dict.pid_range()
            }
            Table::Processes => {
                if let Some(o) = &order {
                    let mut sorted: Vec<ProcessRow> =
                        o.iter().map(|&i| self.procs[i as usize].clone()).collect();
                    std::mem::swap(&mut sorted, &mut self.procs);
                }
                range(self.procs.iter().map(|p| p.pid))
            }
            Table::Stats => (0, 0),
        };
        match table {
            Table::Messages | Table::Packets => {
                permute(&mut self.a32, &order);
                permute(&mut self.a8, &order);
                cols.push(codec::u32s(col::BYTES, &self.a32, level)?);
                cols.push(codec::u8s(col::DIR, &self.a8, level)?);
                if table == Table::Packets {
                    permute(&mut self.a16, &order);
                    cols.push(codec::u16s(col::SEGS, &self.a16, level)?);
                    permute(&mut self.count, &order);
                    permute(&mut self.span, &order);
                    cols.push(codec::u32s(col::COUNT, &self.count, level)?);
                    cols.push(codec::u64s(col::SPAN_NS, &self.span, false, level)?);
                    permute(&mut self.flags, &order);
                    cols.push(codec::u8s(col::TCP_FLAGS, &self.flags, level)?);
                }
            }
            Table::Connections => {
                for v in [&mut self.a8, &mut self.b8] {
                    permute(v, &order);
                }
                permute(&mut self.a64, &order);
                permute(&mut self.b64, &order);
                cols.push(codec::u8s(col::OLD_STATE, &self.a8, level)?);
                cols.push(codec::u8s(col::NEW_STATE, &self.b8, level)?);
                cols.push(codec::u64s(col::BYTES_ACKED, &self.a64, false, level)?);
                cols.push(codec::u64s(col::BYTES_RECEIVED, &self.b64, false, level)?);
                permute(&mut self.outcomes, &order);
                let o = &self.outcomes;
                cols.push(codec::u16s(
                    col::SK_ERR,
                    &o.iter().map(|x| x.sk_err).collect::<Vec<_>>(),
                    level,
                )?);
                for (id, field) in [
                    (
                        col::RETRANS_SEGS,
                        (|x: &TcpOutcome| x.retrans_segs) as fn(&TcpOutcome) -> u32,
                    ),
                    (col::SRTT_US, |x| x.srtt_us),
                    (col::MIN_RTT_US, |x| x.min_rtt_us),
                    (col::SEGS_OUT, |x| x.segs_out),
                    (col::SEGS_IN, |x| x.segs_in),
                ] {
                    cols.push(codec::u32s(
                        id,
                        &o.iter().map(field).collect::<Vec<_>>(),
                        level,
                    )?);
                }
            }
            Table::Processes => {
                let p = &self.procs;
                cols.push(codec::u8s(
                    col::KIND,
                    &p.iter().map(|r| r.kind as u8).collect::<Vec<_>>(),
                    level,
                )?);
                cols.push(codec::u32s(
                    col::PID,
                    &p.iter().map(|r| r.pid).collect::<Vec<_>>(),
                    level,
                )?);
                cols.push(codec::u32s(
                    col::TID,
                    &p.iter().map(|r| r.tid).collect::<Vec<_>>(),
                    level,
                )?);
                cols.push(codec::u32s(
                    col::PPID,
                    &p.iter().map(|r| r.ppid).collect::<Vec<_>>(),
                    level,
                )?);
                cols.push(codec::fixed16s(
                    col::COMM,
                    &p.iter().map(|r| r.comm).collect::<Vec<_>>(),
                    level,
                )?);
                cols.push(codec::i32s(
                    col::EXIT_CODE,
                    &p.iter().map(|r| r.exit_code).collect::<Vec<_>>(),
                    level,
                )?);
                cols.push(codec::strs(
                    col::FILENAME,
                    &p.iter().map(|r| r.filename.clone()).collect::<Vec<_>>(),
                    level,
                )?);
            }
            Table::Stats => {
                permute(&mut self.a8, &order);
                permute(&mut self.a64, &order);
                permute(&mut self.b64, &order);
                cols.push(codec::u8s(col::SOURCE, &self.a8, level)?);
                cols.push(codec::u64s(col::DROPPED, &self.a64, false, level)?);
                cols.push(codec::u64s(col::EVENTS, &self.b64, false, level)?);
            }
        }
        let flow_rows = if table.has_flows() {
            self.dict.encode(level, &mut cols)?;
            self.dict.flows.len() as u32
        } else {
            0
        };
        let meta = ChunkMeta {
            seq,
            table: table as u8,
            rows: rows as u32,
            flow_rows,
            t_min: self.ts.first().copied().unwrap_or(0),
            // The last event's time, or a packet run's last packet when a
            // run reaches past it, so a reader skipping chunks by time never
            // skips one whose run reaches into its window.
            t_max: self
                .ts
                .iter()
                .zip(&self.span)
                .map(|(&t, &s)| t.saturating_add(s))
                .chain(self.ts.last().copied())
                .max()
                .unwrap_or(0),
            pid_min,
            pid_max,
            columns: Vec::new(),
        };
        self.clear();
        Ok((meta, cols))
    }
}

/// Lay out one block: header, meta, body, each padded to 16 bytes.
fn block(kind: u8, table: u8, meta: &[u8], body: &[&[u8]]) -> Vec<u8> {
    let body_len: usize = body.iter().map(|b| b.len()).sum();
    let h = BlockHeader {
        kind,
        table,
        meta_len: meta.len() as u32,
        meta_crc: crc32fast::hash(meta),
        body_len: body_len as u64,
    };
    let mut out = Vec::with_capacity(h.total_len() as usize);
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(meta);
    out.resize(h.body_offset() as usize, 0);
    for b in body {
        out.extend_from_slice(b);
    }
    out.resize(h.total_len() as usize, 0);
    out
}

/// A full builder on its way to the sealing thread.
struct SealJob {
    table: Table,
    seq: u32,
    level: i32,
    builder: Builder,
}

/// A sealed chunk on its way back, with its (cleared) builder for reuse.
struct Sealed {
    table: Table,
    meta: ChunkMeta,
    cols: Vec<EncodedColumn>,
    builder: Builder,
}

/// Chunks sealed at most this many at a time in the background; one more
/// full builder makes the pushing thread wait (memory stays bounded).
const SEALS_IN_FLIGHT: usize = 4;

/// The helper thread that seals chunks, and the chunks it has not
/// returned yet (oldest first: it works in order).
struct Sealer {
    jobs: Option<SyncSender<SealJob>>,
    done: Receiver<Result<Sealed>>,
    thread: Option<JoinHandle<()>>,
    in_flight: usize,
    /// Sealed builders back for reuse, per table: a builder keeps the
    /// capacity its table grew (a packets dictionary of tens of thousands
    /// of flows is not rebuilt by rehashing every chunk).
    spare: [Vec<Builder>; TABLES],
}

impl Sealer {
    fn start() -> Result<Sealer> {
        let (jobs, job_rx) = sync_channel::<SealJob>(SEALS_IN_FLIGHT);
        let (done_tx, done) = sync_channel::<Result<Sealed>>(SEALS_IN_FLIGHT + 1);
        let thread = std::thread::Builder::new()
            .name("snoop-seal".into())
            .spawn(move || {
                for mut j in job_rx {
                    let r = j
                        .builder
                        .seal(j.table, j.seq, j.level)
                        .map(|(meta, cols)| Sealed {
                            table: j.table,
                            meta,
                            cols,
                            builder: j.builder,
                        });
                    if done_tx.send(r).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| FormatError::io("start the chunk sealing thread", e))?;
        Ok(Sealer {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            in_flight: 0,
            spare: Default::default(),
        })
    }

    fn stopped() -> FormatError {
        FormatError::Invalid("the chunk sealing thread stopped".into())
    }

    fn submit(&mut self, job: SealJob) -> Result<()> {
        match &self.jobs {
            Some(j) if j.send(job).is_ok() => {
                self.in_flight += 1;
                Ok(())
            }
            _ => Err(Self::stopped()),
        }
    }

    /// The oldest chunk being sealed, once done (waiting for it if
    /// `wait`); `None` when none is in flight, or none is done yet.
    fn next(&mut self, wait: bool) -> Option<Result<Sealed>> {
        if self.in_flight == 0 {
            return None;
        }
        let r = if wait {
            self.done.recv().unwrap_or_else(|_| Err(Self::stopped()))
        } else {
            match self.done.try_recv() {
                Ok(r) => r,
                Err(std::sync::mpsc::TryRecvError::Empty) => return None,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => Err(Self::stopped()),
            }
        };
        self.in_flight -= 1;
        Some(r)
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        self.jobs = None; // the thread's loop ends
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes a trace file. Push rows, call [`TraceWriter::flush`] now and then
/// (so a crash loses little), and [`TraceWriter::finish`] at the end.
pub struct TraceWriter<W: Write> {
    out: W,
    opts: WriterOptions,
    offset: u64,
    seq: u32,
    events: u64,
    entries: Vec<ChunkEntry>,
    builders: [Builder; TABLES],
    sealer: Option<Sealer>,
    /// A cgroups or DNS block was written (the hooks block must come first).
    wrote_cgroups: bool,
}

/// Tables, one builder (and spare pool) each, indexed by [`slot`].
const TABLES: usize = Table::ALL.len();

fn slot(t: Table) -> usize {
    t as usize - 1
}

impl<W: Write> TraceWriter<W> {
    /// Start a trace: writes the file header and the info block.
    pub fn new(out: W, info: &FileInfo, opts: WriterOptions) -> Result<Self> {
        if opts.chunk_rows == 0 || opts.chunk_rows > MAX_CHUNK_ROWS as usize {
            return Err(FormatError::Invalid(format!(
                "chunk_rows must be 1..={MAX_CHUNK_ROWS}, got {}",
                opts.chunk_rows
            )));
        }
        let mut w = TraceWriter {
            out,
            opts,
            offset: 0,
            seq: 0,
            events: 0,
            entries: Vec::new(),
            builders: std::array::from_fn(|_| Builder {
                dict: FlowDict::with_capacity(FIRST_CHUNK_FLOWS),
                ..Builder::default()
            }),
            sealer: None,
            wrote_cgroups: false,
        };
        let header = FileHeader {
            major: layout::MAJOR,
            minor: layout::MINOR,
            flags: 0,
        }
        .encode();
        w.write(&header)?;
        let meta = meta::to_bytes(info)?;
        w.write(&block(kind::INFO, 0, &meta, &[]))?;
        Ok(w)
    }

    /// Seal full chunks on a helper thread from now on: pushing never waits
    /// for sorting and compression (unless four chunks are already being
    /// sealed). Chunks are written in order when they come back, at the
    /// next seal or flush; [`TraceWriter::flush`] then makes durable what
    /// was sealed, a chunk being sealed lands at the next flush, and
    /// [`TraceWriter::finish`] waits for all of them.
    pub fn seal_in_background(&mut self) -> Result<()> {
        if self.sealer.is_none() {
            self.sealer = Some(Sealer::start()?);
        }
        Ok(())
    }

    /// Record which hook groups the recorder ran (a hooks block, kind 4).
    /// Only before the first chunk: readers look for it right after the
    /// info block, so a later call is refused.
    pub fn write_hooks(&mut self, groups: &[(String, String)]) -> Result<()> {
        if self.seq > 0 || !self.entries.is_empty() || self.wrote_cgroups {
            return Err(FormatError::Invalid(
                "hook groups must be written before the first chunk".into(),
            ));
        }
        let meta = meta::to_bytes(&meta::Hooks {
            groups: groups.to_vec(),
        })?;
        self.write(&block(kind::HOOKS, 0, &meta, &[]))
    }

    /// Record cgroup v2 ids and their paths (format 1.2): one block, any
    /// time after the hook groups (readers merge every such block; a later
    /// block repeats no id an earlier one named, unless its path changed).
    pub fn write_cgroups(&mut self, paths: &[(u64, String)]) -> Result<()> {
        if paths.is_empty() {
            return Ok(());
        }
        let meta = meta::to_bytes(&meta::Cgroups {
            paths: paths.to_vec(),
        })?;
        self.wrote_cgroups = true;
        self.write(&block(kind::CGROUPS, 0, &meta, &[]))
    }

    /// Record names learned from DNS answers (format 1.3): one block, any
    /// time after the hook groups (readers concatenate every such block).
    pub fn write_dns(&mut self, answers: &[meta::DnsAnswer]) -> Result<()> {
        if answers.is_empty() {
            return Ok(());
        }
        let meta = meta::to_bytes(&meta::DnsNames {
            answers: answers.to_vec(),
        })?;
        self.wrote_cgroups = true;
        self.write(&block(kind::DNS, 0, &meta, &[]))
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|e| {
            FormatError::io(
                format!("writing {} bytes at offset {}", bytes.len(), self.offset),
                e,
            )
        })?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn after_push(&mut self, t: Table) -> Result<()> {
        self.events += 1;
        if self.builders[slot(t)].len() >= self.opts.chunk_rows {
            self.seal(t)?;
        }
        Ok(())
    }

    /// Add one application-level message.
    pub fn push_message(
        &mut self,
        ts_ns: u64,
        flow: &Flow,
        bytes: u32,
        dir: Direction,
    ) -> Result<()> {
        let b = &mut self.builders[slot(Table::Messages)];
        b.ts.push(ts_ns);
        let i = b.dict.get(flow);
        b.flow.push(i);
        b.a32.push(bytes);
        b.a8.push(dir as u8);
        self.after_push(Table::Messages)
    }

    /// Add one packet.
    pub fn push_packet(
        &mut self,
        ts_ns: u64,
        flow: &Flow,
        len: u32,
        dir: Direction,
        segs: u16,
    ) -> Result<()> {
        self.push_packet_run(ts_ns, ts_ns, 1, flow, len, dir, segs, 0)
    }

    /// Add a run of `count` packets of one flow and direction, each `len`
    /// bytes and `segs` segments, the first at `ts_ns` and the last at
    /// `last_ns` (a `last_ns` before `ts_ns` is taken as `ts_ns`; a count
    /// of 0 as 1), its TCP flags OR-ed in `tcp_flags`.
    #[allow(clippy::too_many_arguments)]
    pub fn push_packet_run(
        &mut self,
        ts_ns: u64,
        last_ns: u64,
        count: u32,
        flow: &Flow,
        len: u32,
        dir: Direction,
        segs: u16,
        tcp_flags: u8,
    ) -> Result<()> {
        let b = &mut self.builders[slot(Table::Packets)];
        b.flags.push(tcp_flags);
        b.count.push(count.max(1));
        b.span.push(last_ns.saturating_sub(ts_ns));
        b.ts.push(ts_ns);
        let i = b.dict.get(flow);
        b.flow.push(i);
        b.a32.push(len);
        b.a8.push(dir as u8);
        b.a16.push(segs);
        self.after_push(Table::Packets)
    }

    /// Add one TCP state change (its outcome columns zero: see
    /// [`TraceWriter::push_conn_outcome`]).
    pub fn push_conn(
        &mut self,
        ts_ns: u64,
        flow: &Flow,
        old_state: u8,
        new_state: u8,
        bytes_acked: u64,
        bytes_received: u64,
    ) -> Result<()> {
        self.push_conn_outcome(
            ts_ns,
            flow,
            old_state,
            new_state,
            bytes_acked,
            bytes_received,
            &TcpOutcome::default(),
        )
    }

    /// Add one TCP state change with the socket's outcome counters (read
    /// at CLOSE, and for connections already open at the start).
    #[allow(clippy::too_many_arguments)]
    pub fn push_conn_outcome(
        &mut self,
        ts_ns: u64,
        flow: &Flow,
        old_state: u8,
        new_state: u8,
        bytes_acked: u64,
        bytes_received: u64,
        outcome: &TcpOutcome,
    ) -> Result<()> {
        let b = &mut self.builders[slot(Table::Connections)];
        b.outcomes.push(*outcome);
        b.ts.push(ts_ns);
        let i = b.dict.get(flow);
        b.flow.push(i);
        b.a8.push(old_state);
        b.b8.push(new_state);
        b.a64.push(bytes_acked);
        b.b64.push(bytes_received);
        self.after_push(Table::Connections)
    }

    /// Add one process lifecycle event.
    pub fn push_process(&mut self, row: &ProcessRow) -> Result<()> {
        let b = &mut self.builders[slot(Table::Processes)];
        b.ts.push(row.ts_ns);
        b.procs.push(row.clone());
        self.after_push(Table::Processes)
    }

    /// Add one recorder statistics row: in the interval ending at `ts_ns`,
    /// `events` records of `source` were kept and `dropped` were lost.
    pub fn push_stats(&mut self, ts_ns: u64, source: u8, dropped: u64, events: u64) -> Result<()> {
        let b = &mut self.builders[slot(Table::Stats)];
        b.ts.push(ts_ns);
        b.a8.push(source);
        b.a64.push(dropped);
        b.b64.push(events);
        self.after_push(Table::Stats)
    }

    fn seal(&mut self, t: Table) -> Result<()> {
        if self.builders[slot(t)].len() == 0 {
            return Ok(());
        }
        let level = self.opts.zstd_level;
        let seq = self.seq;
        self.seq += 1;
        if self
            .sealer
            .as_ref()
            .is_some_and(|s| s.in_flight >= SEALS_IN_FLIGHT)
        {
            self.collect(true)?; // bounded memory: wait for the oldest
        }
        let Some(sealer) = self.sealer.as_mut() else {
            let (meta, cols) = self.builders[slot(t)].seal(t, seq, level)?;
            return self.write_chunk(t, meta, &cols);
        };
        // A new builder starts with the flow room the last chunk needed:
        // growing a dictionary rehashes every flow in it.
        let flows = self.builders[slot(t)].dict.flows.len();
        let fresh = sealer.spare[slot(t)].pop().unwrap_or_else(|| Builder {
            dict: FlowDict::with_capacity(flows),
            ..Builder::default()
        });
        let builder = std::mem::replace(&mut self.builders[slot(t)], fresh);
        sealer.submit(SealJob {
            table: t,
            seq,
            level,
            builder,
        })?;
        self.collect_ready()
    }

    /// Write the oldest chunk the sealing thread has finished (waiting for
    /// it if `wait`). Returns whether one was written.
    fn collect(&mut self, wait: bool) -> Result<bool> {
        match self.sealer.as_mut().and_then(|s| s.next(wait)) {
            Some(r) => self.write_sealed(r).map(|()| true),
            None => Ok(false),
        }
    }

    /// Write every chunk the sealing thread has finished, without waiting
    /// (cheap when there is none: callers may ask often, so a sealed chunk
    /// reaches the file soon instead of at the next flush).
    pub fn collect_ready(&mut self) -> Result<()> {
        while self.collect(false)? {}
        Ok(())
    }

    fn write_sealed(&mut self, r: Result<Sealed>) -> Result<()> {
        let s = r?;
        if let Some(sealer) = self.sealer.as_mut() {
            sealer.spare[slot(s.table)].push(s.builder);
        }
        self.write_chunk(s.table, s.meta, &s.cols)
    }

    /// Lay out and append one sealed chunk, and index it.
    fn write_chunk(&mut self, t: Table, mut meta: ChunkMeta, cols: &[EncodedColumn]) -> Result<()> {
        let mut off = 0u64;
        let mut metas = Vec::with_capacity(cols.len());
        for c in cols {
            let mut m = c.meta.clone();
            m.offset = off;
            off += m.len;
            metas.push(m);
        }
        meta.columns = metas;
        let meta_bytes = meta::to_bytes(&meta)?;
        let body: Vec<&[u8]> = cols.iter().map(|c| c.data.as_slice()).collect();
        let bytes = block(kind::CHUNK, t as u8, &meta_bytes, &body);
        let entry = ChunkEntry {
            offset: self.offset,
            len: bytes.len() as u64,
            table: t as u8,
            rows: meta.rows,
            t_min: meta.t_min,
            t_max: meta.t_max,
            pid_min: meta.pid_min,
            pid_max: meta.pid_max,
        };
        // Indexed only once written whole: after a failed write the
        // index says what the file really holds.
        self.write(&bytes)?;
        self.entries.push(entry);
        Ok(())
    }

    /// Chunks written whole so far, and the rows they hold (what a reader
    /// recovers if the writer stops now).
    pub fn written(&self) -> (usize, u64) {
        let rows = self
            .entries
            .iter()
            .fold(0u64, |a, e| a.saturating_add(u64::from(e.rows)));
        (self.entries.len(), rows)
    }

    /// Seal every open chunk now and flush the output. With
    /// [`TraceWriter::seal_in_background`], chunks still being sealed are
    /// written by a later flush (or by [`TraceWriter::finish`]).
    pub fn flush(&mut self) -> Result<()> {
        for t in Table::ALL {
            self.seal(t)?;
        }
        self.collect_ready()?;
        self.out
            .flush()
            .map_err(|e| FormatError::io(format!("flushing at offset {}", self.offset), e))
    }

    /// Bytes written so far (sealed chunks only).
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    /// Rows pushed so far, all tables.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Seal what is open, write the footer index and trailer; the file is
    /// then complete. Returns the output.
    pub fn finish(mut self, end_ns: u64) -> Result<W> {
        self.flush()?;
        while self.collect(true)? {}
        self.sealer = None;
        let footer = Footer {
            chunks: std::mem::take(&mut self.entries),
            end_ns,
        };
        let meta = meta::to_bytes(&footer)?;
        let bytes = block(kind::FOOTER, 0, &meta, &[]);
        let trailer = Trailer {
            footer_offset: self.offset,
            footer_len: bytes.len() as u64,
        };
        self.write(&bytes)?;
        self.write(&trailer.encode())?;
        self.out
            .flush()
            .map_err(|e| FormatError::io("flushing the footer", e))?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_are_numbered_by_first_row() {
        let f = |pid| Flow {
            pid,
            ..Flow::default()
        };
        let pids = |v: &[Flow]| v.iter().map(|x| x.pid).collect::<Vec<_>>();
        let mut flows = vec![f(10), f(11), f(12), f(13)];
        let mut rows = vec![2, 0, 2, 3, 0, 1];
        number_by_first_row(&mut rows, &mut flows);
        assert_eq!(rows, [0, 1, 0, 2, 1, 3]);
        assert_eq!(pids(&flows), [12, 10, 13, 11]);
        // Already in order: nothing moves.
        let mut rows = vec![0, 0, 1, 2, 1];
        let mut flows = vec![f(1), f(2), f(3)];
        number_by_first_row(&mut rows, &mut flows);
        assert_eq!(rows, [0, 0, 1, 2, 1]);
        assert_eq!(pids(&flows), [1, 2, 3]);
        // A flow no row names goes last.
        let mut rows = vec![1, 1];
        let mut flows = vec![f(5), f(6)];
        number_by_first_row(&mut rows, &mut flows);
        assert_eq!(rows, [0, 0]);
        assert_eq!(pids(&flows), [6, 5]);
    }
}

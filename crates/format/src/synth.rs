//! The reference synthetic workload: a deterministic, seeded generator of
//! realistic traffic (a few thousand flows with Zipf-like popularity, bursts,
//! TCP/UDP over IPv4/IPv6, sizes from tiny to 64 KiB, ~1 µs gaps). Tests,
//! benches and fixtures all use it, so "bytes per event" and "events per
//! second" always refer to the same traffic.

use std::io::Write;

use crate::error::Result;
use crate::schema::{
    addr_bytes, comm_bytes, Direction, Flow, ProcessKind, ProcessRow, AF_INET, AF_INET6,
};
use crate::writer::TraceWriter;

/// SplitMix64: tiny, fast, good enough for workloads, identical everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Shape of the synthetic workload.
#[derive(Clone, Debug)]
pub struct SynthConfig {
    /// Seed.
    pub seed: u64,
    /// Number of flows.
    pub flows: usize,
    /// Number of processes the flows belong to.
    pub processes: usize,
    /// Zipf exponent of flow popularity.
    pub zipf_s: f64,
    /// Mean gap between events, ns.
    pub mean_gap_ns: u64,
    /// First timestamp (CLOCK_BOOTTIME ns).
    pub start_ns: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            seed: 42,
            flows: 3000,
            processes: 200,
            zipf_s: 1.1,
            mean_gap_ns: 1000,
            start_ns: 1_000_000_000,
        }
    }
}

/// One generated message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynthMessage {
    /// Time.
    pub ts_ns: u64,
    /// Index of the flow in [`Synth::flows`].
    pub flow: usize,
    /// Payload bytes.
    pub bytes: u32,
    /// Direction.
    pub dir: Direction,
}

/// The generator.
pub struct Synth {
    rng: Rng,
    cfg: SynthConfig,
    flows: Vec<Flow>,
    cdf: Vec<f64>,
    now: u64,
    burst: Option<(usize, u32)>,
}

impl Synth {
    /// A generator for `cfg`.
    pub fn new(cfg: SynthConfig) -> Synth {
        let mut rng = Rng::new(cfg.seed);
        let processes = cfg.processes.max(1);
        let flows: Vec<Flow> = (0..cfg.flows.max(1))
            .map(|i| {
                let p = rng.below(processes as u64) as u32;
                let pid = 1000 + p;
                let v6 = rng.below(10) < 3;
                let tcp = rng.below(10) < 8;
                let remote = |r: &mut Rng| -> std::net::IpAddr {
                    if v6 {
                        std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, (r.below(64)) as u16, 1)
                            .into()
                    } else {
                        std::net::Ipv4Addr::new(10, 1, (r.below(4)) as u8, (r.below(64)) as u8 + 1)
                            .into()
                    }
                };
                let local: std::net::IpAddr = if v6 {
                    std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).into()
                } else {
                    std::net::Ipv4Addr::new(10, 0, 0, 1).into()
                };
                Flow {
                    pid,
                    tid: pid + (rng.below(4) as u32) * 100_000,
                    comm: comm_bytes(&format!("proc-{p}")),
                    cgroup: 1 + (p % 7) as u64,
                    cookie: 1 + i as u64,
                    ifindex: 0,
                    family: if v6 { AF_INET6 } else { AF_INET },
                    proto: if tcp { 6 } else { 17 },
                    laddr: addr_bytes(local),
                    lport: 30000 + (i % 30000) as u16,
                    raddr: addr_bytes(remote(&mut rng)),
                    rport: [443, 80, 53, 5432, 6379, 8080][rng.below(6) as usize],
                }
            })
            .collect();
        let mut acc = 0.0;
        let cdf = (0..flows.len())
            .map(|i| {
                acc += 1.0 / ((i + 1) as f64).powf(cfg.zipf_s);
                acc
            })
            .collect::<Vec<_>>();
        let now = cfg.start_ns;
        Synth {
            rng,
            cfg,
            flows,
            cdf,
            now,
            burst: None,
        }
    }

    /// The flows, indexed by [`SynthMessage::flow`].
    pub fn flows(&self) -> &[Flow] {
        &self.flows
    }

    fn pick_flow(&mut self) -> usize {
        let total = self.cdf.last().copied().unwrap_or(1.0);
        let x = self.rng.unit() * total;
        self.cdf
            .partition_point(|&c| c < x)
            .min(self.flows.len() - 1)
    }

    fn size(&mut self) -> u32 {
        match self.rng.below(100) {
            0..=49 => 1 + self.rng.below(128) as u32,
            50..=79 => 512 + self.rng.below(3584) as u32,
            80..=94 => 4096 + self.rng.below(28672) as u32,
            _ => 65536,
        }
    }

    /// The next message.
    pub fn next_message(&mut self) -> SynthMessage {
        if let Some((flow, left)) = self.burst {
            self.now += 20 + self.rng.below(60);
            self.burst = (left > 1).then_some((flow, left - 1));
            return SynthMessage {
                ts_ns: self.now,
                flow,
                bytes: 65536,
                dir: Direction::Tx,
            };
        }
        // Exponential gaps around the mean.
        let gap = -(1.0 - self.rng.unit()).ln() * self.cfg.mean_gap_ns as f64;
        self.now += gap as u64 + 1;
        let flow = self.pick_flow();
        if self.rng.below(1000) == 0 {
            self.burst = Some((flow, 8 + self.rng.below(56) as u32));
        }
        let dir = if self.rng.below(2) == 0 {
            Direction::Tx
        } else {
            Direction::Rx
        };
        SynthMessage {
            ts_ns: self.now,
            flow,
            bytes: self.size(),
            dir,
        }
    }
}

/// What [`write_synthetic`] wrote, for tests to check reports against.
#[derive(Clone, Debug, Default)]
pub struct SynthTotals {
    /// Messages written.
    pub messages: u64,
    /// Per pid: (tx bytes, rx bytes, tx msgs, rx msgs).
    pub per_pid: std::collections::BTreeMap<u32, (u64, u64, u64, u64)>,
    /// Last timestamp written.
    pub end_ns: u64,
}

/// Write `n` synthetic messages, plus an exec event for each process (at
/// start), open (SYN_SENT -> ESTABLISHED) and close state changes
/// for every TCP flow used, and one stats row.
pub fn write_synthetic<W: Write>(
    w: &mut TraceWriter<W>,
    cfg: SynthConfig,
    n: u64,
) -> Result<SynthTotals> {
    let mut s = Synth::new(cfg.clone());
    let mut totals = SynthTotals::default();
    let mut seen_pid = std::collections::BTreeSet::new();
    for f in s.flows().to_vec() {
        if seen_pid.insert(f.pid) {
            w.push_process(&ProcessRow {
                ts_ns: cfg.start_ns,
                kind: ProcessKind::Exec,
                pid: f.pid,
                tid: f.pid,
                ppid: 1,
                comm: f.comm,
                exit_code: 0,
                filename: format!("/usr/bin/{}", crate::schema::comm_str(&f.comm)),
            })?;
        }
    }
    let mut opened = vec![false; s.flows().len()];
    for _ in 0..n {
        let m = s.next_message();
        let flow = s.flows[m.flow];
        if flow.proto == 6 && !opened[m.flow] {
            opened[m.flow] = true;
            w.push_conn(m.ts_ns, &flow, 2, 1, 0, 0)?;
        }
        w.push_message(m.ts_ns, &flow, m.bytes, m.dir)?;
        let e = totals.per_pid.entry(flow.pid).or_default();
        match m.dir {
            Direction::Tx => {
                e.0 += m.bytes as u64;
                e.2 += 1;
            }
            Direction::Rx => {
                e.1 += m.bytes as u64;
                e.3 += 1;
            }
        }
        totals.messages += 1;
        totals.end_ns = m.ts_ns;
    }
    for (i, was) in opened.iter().enumerate() {
        if *was {
            w.push_conn(totals.end_ns + 1, &s.flows[i], 1, 7, 0, 0)?;
        }
    }
    w.push_stats(
        totals.end_ns,
        crate::schema::source::MESSAGES,
        0,
        totals.messages,
    )?;
    Ok(totals)
}

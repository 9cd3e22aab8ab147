//! Event filters (`--since/--until/--pid/--comm/--proto/--port/--remote`),
//! resolved once per trace file: times become CLOCK_BOOTTIME bounds of that
//! file (so chunks outside them are skipped unread) and the rest becomes a
//! predicate on flows, evaluated once per flow dictionary row, not per event.

use std::net::IpAddr;

use snoop_format::{addr, comm_bytes, ChunkEntry, FileInfo, Flow, Table};

use crate::cli::FilterArgs;
use crate::units::{parse_time, TimeSpec};
use crate::usage;

/// An address block: `10.0.0.0/8`, `fd00::/8` or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: [u8; 16],
    /// Prefix length in IPv6 bits (IPv4 blocks are v4-mapped: +96).
    bits: u32,
}

impl Cidr {
    /// Parse a CIDR or a single address.
    pub fn parse(s: &str) -> anyhow::Result<Cidr> {
        let bad = || {
            usage(format!(
                "bad --remote {s:?} (use an address or CIDR: 10.0.0.0/8, fd00::/8, 1.2.3.4)"
            ))
        };
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u32>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let ip: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let (net, bits) = match ip {
            IpAddr::V4(v4) => {
                let l = len.unwrap_or(32);
                if l > 32 {
                    return Err(bad());
                }
                (v4.to_ipv6_mapped().octets(), 96 + l)
            }
            IpAddr::V6(v6) => {
                let l = len.unwrap_or(128);
                if l > 128 {
                    return Err(bad());
                }
                (v6.octets(), l)
            }
        };
        Ok(Cidr { net, bits })
    }

    /// Whether an address column value lies in the block.
    pub fn contains(&self, a: &[u8; 16]) -> bool {
        let x = u128::from_be_bytes(*a);
        let n = u128::from_be_bytes(self.net);
        let mask = if self.bits == 0 {
            0
        } else {
            u128::MAX << (128 - self.bits)
        };
        x & mask == n & mask
    }
}

/// Parsed filters, not yet tied to a file.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    since: Option<TimeSpec>,
    until: Option<TimeSpec>,
    pids: Vec<u32>,
    comms: Vec<[u8; 16]>,
    proto: Option<u8>,
    port: Option<u16>,
    remote: Option<Cidr>,
}

/// A filter resolved for one file.
#[derive(Clone, Debug)]
pub struct FileFilter {
    /// First time kept (CLOCK_BOOTTIME ns of this file).
    pub t_lo: u64,
    /// First time no longer kept.
    pub t_hi: u64,
    f: Filter,
}

impl Filter {
    /// Parse the command-line filters.
    pub fn parse(a: &FilterArgs) -> anyhow::Result<Filter> {
        let proto = match a.proto.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None => None,
            Some("tcp") => Some(6),
            Some("udp") => Some(17),
            Some(other) => match other.parse::<u8>() {
                Ok(n) => Some(n),
                Err(_) => return Err(usage(format!("bad --proto {other:?} (use tcp or udp)"))),
            },
        };
        Ok(Filter {
            since: a.since.as_deref().map(parse_time).transpose()?,
            until: a.until.as_deref().map(parse_time).transpose()?,
            pids: a.pid.clone(),
            comms: a.comm.iter().map(|c| comm_bytes(c)).collect(),
            proto,
            port: a.port,
            remote: a.remote.as_deref().map(Cidr::parse).transpose()?,
        })
    }

    /// The same filter with its time bounds widened by `ns` on both sides.
    pub fn widened(mut self, ns: u64) -> Filter {
        let w = |t: TimeSpec, sign: i64| match t {
            TimeSpec::Relative(d) => TimeSpec::Relative(if sign < 0 {
                d.saturating_sub(ns)
            } else {
                d.saturating_add(ns)
            }),
            TimeSpec::Wall(x) => TimeSpec::Wall(x.saturating_add(sign * ns as i64)),
        };
        self.since = self.since.map(|t| w(t, -1));
        self.until = self.until.map(|t| w(t, 1));
        self
    }

    /// Whether a filter restricts the owning process.
    pub fn has_process(&self) -> bool {
        !self.pids.is_empty() || !self.comms.is_empty()
    }

    /// Resolve times against a file's clock.
    pub fn for_file(&self, info: &FileInfo) -> FileFilter {
        let to_boot = |t: TimeSpec| -> u64 {
            match t {
                TimeSpec::Relative(d) => info.start_ns.saturating_add(d),
                TimeSpec::Wall(w) => {
                    let b = w.saturating_sub(info.boot_to_wall_ns);
                    b.max(0) as u64
                }
            }
        };
        FileFilter {
            t_lo: self.since.map(to_boot).unwrap_or(0),
            t_hi: self.until.map(to_boot).unwrap_or(u64::MAX),
            f: self.clone(),
        }
    }
}

impl FileFilter {
    /// Whether event time `ts` is kept.
    #[inline]
    pub fn time_ok(&self, ts: u64) -> bool {
        ts >= self.t_lo && ts < self.t_hi
    }

    /// Whether every one of a chunk's times (sorted) is in the window, so
    /// its rows need no per-row time test.
    pub fn all_in_window(&self, sorted_ts: &[u64]) -> bool {
        sorted_ts.first().is_some_and(|&t| self.time_ok(t))
            && sorted_ts.last().is_some_and(|&t| self.time_ok(t))
    }

    /// The part of a run of `count` packets evenly spread from `first` to
    /// `last` that lies in the time window: its first and last packet's
    /// times and how many packets (0 when none).
    pub fn clip_run(&self, first: u64, last: u64, count: u64) -> (u64, u64, u64) {
        if count <= 1 || last <= first {
            return if self.time_ok(first) {
                (first, first, count.max(1))
            } else {
                (first, first, 0)
            };
        }
        let span = (last - first) as u128;
        let steps = (count - 1) as u128;
        let at = |k: u64| first + ((span * k as u128) / steps) as u64;
        // The first packet at or after t.
        let from = |t: u64| -> u64 {
            if t <= first {
                0
            } else if t > last {
                count
            } else {
                (((t - first) as u128 * steps).div_ceil(span) as u64).min(count)
            }
        };
        let (lo, hi) = (from(self.t_lo), from(self.t_hi));
        if hi <= lo {
            return (first, first, 0);
        }
        (at(lo), at(hi - 1), hi - lo)
    }

    /// Whether a chunk can hold kept rows (time always; pid only for
    /// messages, whose pid is authoritative).
    pub fn chunk_ok(&self, c: &ChunkEntry) -> bool {
        if c.rows == 0 {
            return false;
        }
        let timed = Table::from_id(c.table).is_some_and(|t| t != Table::Stats);
        if timed && (c.t_max < self.t_lo || c.t_min >= self.t_hi) {
            return false;
        }
        if c.table == Table::Messages as u8 && !self.f.pids.is_empty() {
            return self
                .f
                .pids
                .iter()
                .any(|&p| p >= c.pid_min && p <= c.pid_max);
        }
        true
    }

    /// Whether a process (pid, comm) is kept.
    pub fn process_ok(&self, pid: u32, comm: &[u8; 16]) -> bool {
        (self.f.pids.is_empty() || self.f.pids.contains(&pid))
            && (self.f.comms.is_empty() || self.f.comms.contains(comm))
    }

    /// Whether a flow (with trustworthy pid/comm) is kept.
    pub fn flow_ok(&self, f: &Flow) -> bool {
        self.process_ok(f.pid, &f.comm) && self.net_ok(f)
    }

    /// The address/port/protocol part of the filter only.
    pub fn net_ok(&self, f: &Flow) -> bool {
        self.f.proto.is_none_or(|p| p == f.proto)
            && self.f.port.is_none_or(|p| p == f.lport || p == f.rport)
            && self.f.remote.is_none_or(|c| c.contains(&f.raddr))
    }

    /// Whether a DNS answer received at `ts` by `pid` for `addr` is kept
    /// (time, `--pid` and `--remote`; the answer carries no comm, port or
    /// protocol of the traffic).
    pub fn dns_ok(&self, ts: u64, pid: u32, addr: &[u8; 16]) -> bool {
        self.time_ok(ts)
            && (self.f.pids.is_empty() || self.f.pids.contains(&pid))
            && self.f.remote.is_none_or(|c| c.contains(addr))
    }

    /// Whether any address/port/protocol filter is set.
    pub fn has_net(&self) -> bool {
        self.f.proto.is_some() || self.f.port.is_some() || self.f.remote.is_some()
    }
}

/// Format an address column value for output (`10.0.0.1`, `fd00::1`).
pub fn addr_str(a: &[u8; 16]) -> String {
    addr(a).to_string()
}

/// An address and port as `10.0.0.1:80` or `[fd00::1]:80`.
pub fn sock_str(a: &[u8; 16], port: u16) -> String {
    match addr(a) {
        std::net::IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        v4 => format!("{v4}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        let a = snoop_format::addr_bytes("10.1.2.3".parse().unwrap());
        let b = snoop_format::addr_bytes("10.2.2.3".parse().unwrap());
        assert!(c.contains(&a));
        assert!(!c.contains(&b));
        assert!(Cidr::parse("fd00::/8")
            .unwrap()
            .contains(&snoop_format::addr_bytes("fd00::1".parse().unwrap())));
        assert!(Cidr::parse("nope").is_err());
        assert!(Cidr::parse("10.0.0.0/33").is_err());
    }
}

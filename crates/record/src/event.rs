//! Decoding of raw ring-buffer records into typed events.
//!
//! The kernel writes the structs of `bpf/snoop.h`; this module turns their
//! bytes into [`Event`]s built from `snoop_format` types (so the writer
//! thread can push them as rows) and rejects anything malformed with an
//! error instead of panicking: bytes from the kernel are data, not trust.

use snoop_format::{Direction, Flow, ProcessKind, ProcessRow, TcpOutcome, AF_INET, AF_INET6};

use crate::skel::types::{snoop_conn, snoop_dns, snoop_msg, snoop_pkt, snoop_pktset, snoop_proc};
use crate::skel::{kind, read};

/// One decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An application-level send or receive.
    Message {
        /// CLOCK_BOOTTIME ns.
        ts_ns: u64,
        /// Who and which socket.
        flow: Flow,
        /// Bytes the call returned.
        bytes: u32,
        /// Send or receive.
        dir: Direction,
    },
    /// A packet on the wire, or a run of packets (`--packets=runs`).
    Packet {
        /// CLOCK_BOOTTIME ns (of the run's first packet).
        ts_ns: u64,
        /// Time of the run's last packet (`ts_ns` for a single packet).
        last_ns: u64,
        /// Packets in the run, at least 1.
        count: u32,
        /// TCP flags of the run's packets, OR-ed (0 when not TCP).
        tcp_flags: u8,
        /// Owner (if known), device and 5-tuple.
        flow: Flow,
        /// IP length (L3 header + payload).
        len: u32,
        /// Transmit or receive.
        dir: Direction,
        /// GSO segments (1 when not GSO).
        segs: u16,
    },
    /// A TCP state change (old_state 0: already open when recording began).
    Conn {
        /// CLOCK_BOOTTIME ns.
        ts_ns: u64,
        /// Owner and 5-tuple.
        flow: Flow,
        /// Previous TCP state, 0 for a synthetic "already open" record.
        old_state: u8,
        /// New TCP state.
        new_state: u8,
        /// tcp_sock bytes_acked (at close / for already open connections).
        bytes_acked: u64,
        /// tcp_sock bytes_received (at close / for already open connections).
        bytes_received: u64,
        /// sk_err, retransmissions, RTTs and segments (at close / for
        /// already open connections; zero otherwise).
        outcome: TcpOutcome,
    },
    /// exec / fork / exit.
    Process(ProcessRow),
    /// The first bytes of a packet from port 53 delivered to a local
    /// socket (a DNS answer, not yet parsed; never written as a row).
    Dns(DnsPayload),
    /// A socket's packets in one direction as runs of a few lengths
    /// (`--packets=runs`): one packet row per run.
    PacketSet {
        /// Owner (if known), device and 5-tuple.
        flow: Flow,
        /// Transmit or receive.
        dir: Direction,
        /// Runs in `runs` (1..=SET_LENS).
        n: u8,
        /// The runs, `runs[..n]`.
        runs: [PacketRun; SET_LENS],
    },
}

/// Most runs in one [`Event::PacketSet`] (`SNOOP_SET_LENS`).
pub const SET_LENS: usize = 4;

/// One length's packets in a packet set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketRun {
    /// CLOCK_BOOTTIME ns of its first packet.
    pub ts_ns: u64,
    /// Time of its last packet.
    pub last_ns: u64,
    /// IP length (L3 header + payload).
    pub len: u32,
    /// Packets, at least 1.
    pub count: u32,
    /// GSO segments (1 when not GSO).
    pub segs: u16,
    /// TCP flags of its packets, OR-ed (0 when not TCP).
    pub tcp_flags: u8,
}

/// The payload bytes of one DNS packet and who received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsPayload {
    /// CLOCK_BOOTTIME ns.
    pub ts_ns: u64,
    /// Owner of the receiving socket (0 unknown).
    pub pid: u32,
    /// The receiving socket.
    pub cookie: u64,
    /// TCP: the sequence number of `data[0]`; UDP: `None`.
    pub tcp_seq: Option<u32>,
    /// The payload's first bytes (at most 512).
    pub data: Vec<u8>,
}

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The record is empty.
    #[error("empty record")]
    Empty,
    /// The record is shorter than its kind's struct.
    #[error("record of kind {kind} is {len} bytes, expected at least {need}")]
    Short {
        /// Record kind byte.
        kind: u8,
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The first byte is not a known kind.
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    /// A field holds a value outside its domain.
    #[error("record of kind {kind}: bad {field} value {value}")]
    BadField {
        /// Record kind byte.
        kind: u8,
        /// Field name.
        field: &'static str,
        /// The value found.
        value: u64,
    },
}

impl Event {
    /// The rows this event becomes in the trace.
    pub fn rows(&self) -> u64 {
        match self {
            Event::PacketSet { n, .. } => u64::from(*n),
            Event::Dns(_) => 0,
            _ => 1,
        }
    }

    /// The record kind (index into the drop counters / stats source).
    pub fn kind(&self) -> u8 {
        match self {
            Event::Message { .. } => kind::MSG,
            Event::Packet { .. } | Event::PacketSet { .. } => kind::PKT,
            Event::Conn { .. } => kind::CONN,
            Event::Process(_) => kind::PROC,
            Event::Dns(_) => kind::DNS,
        }
    }
}

/// A comm as the kernel's helper returns it: bytes up to the first NUL,
/// zero after it. The BPF side copies `task->comm` with plain loads, so a
/// name that was never NUL-padded (or changed mid-copy) cannot leave
/// stray bytes in the dictionary.
fn comm(raw: &[i8; 16]) -> [u8; 16] {
    // Branch-free on one u128 (a byte loop plus memset here stalled on
    // store forwarding and cost ~15% of the recorder's CPU): the lowest
    // set bit of the classic "has a zero byte" mask marks the first NUL.
    const LO: u128 = u128::from_le_bytes([0x01; 16]);
    const HI: u128 = u128::from_le_bytes([0x80; 16]);
    let x = u128::from_le_bytes(raw.map(|c| c as u8));
    let z = x.wrapping_sub(LO) & !x & HI;
    if z == 0 {
        return x.to_le_bytes();
    }
    let keep = z.trailing_zeros() / 8 * 8; // bits before the first NUL
    let mask = if keep == 0 {
        0
    } else {
        u128::MAX >> (128 - keep)
    };
    (x & mask).to_le_bytes()
}

/// The flow of a packet record (`snoop_pkt` or `snoop_pktset`: the same
/// header fields).
macro_rules! packet_flow {
    ($p:expr) => {
        Flow {
            pid: $p.pid,
            tid: $p.tid,
            comm: comm(&$p.comm),
            cgroup: 0,
            cookie: $p.cookie,
            ifindex: $p.ifindex,
            family: $p.family,
            proto: $p.proto,
            laddr: $p.laddr,
            lport: $p.lport,
            raddr: $p.raddr,
            rport: $p.rport,
        }
    };
}

fn direction(k: u8, d: u8) -> Result<Direction, DecodeError> {
    match d {
        0 => Ok(Direction::Tx),
        1 => Ok(Direction::Rx),
        v => Err(DecodeError::BadField {
            kind: k,
            field: "dir",
            value: v.into(),
        }),
    }
}

fn is_v4mapped(a: &[u8; 16]) -> bool {
    a[..10].iter().all(|&b| b == 0) && a[10] == 0xff && a[11] == 0xff
}

/// AF_INET6 sockets talking IPv4 (v4-mapped addresses) are recorded as
/// AF_INET, so the family column always says which IP version was used.
fn ip_family(family: u8, laddr: &[u8; 16], raddr: &[u8; 16]) -> u8 {
    if family == AF_INET6 && (is_v4mapped(raddr) || (raddr == &[0; 16] && is_v4mapped(laddr))) {
        AF_INET
    } else {
        family
    }
}

fn size_check(k: u8, rec: &[u8], need: usize) -> Result<(), DecodeError> {
    if rec.len() < need {
        return Err(DecodeError::Short {
            kind: k,
            len: rec.len(),
            need,
        });
    }
    Ok(())
}

fn decode_typed<T: plain::Plain + Copy>(k: u8, rec: &[u8]) -> Result<T, DecodeError> {
    size_check(k, rec, std::mem::size_of::<T>())?;
    read::<T>(rec).ok_or(DecodeError::Short {
        kind: k,
        len: rec.len(),
        need: std::mem::size_of::<T>(),
    })
}

/// Decode one raw ring-buffer record.
pub fn decode(rec: &[u8]) -> Result<Event, DecodeError> {
    let k = *rec.first().ok_or(DecodeError::Empty)?;
    match k {
        kind::MSG => {
            let m: snoop_msg = decode_typed(k, rec)?;
            Ok(Event::Message {
                ts_ns: m.ts_ns,
                flow: Flow {
                    pid: m.pid,
                    tid: m.tid,
                    comm: comm(&m.comm),
                    cgroup: m.cgroup,
                    cookie: m.cookie,
                    ifindex: 0,
                    family: ip_family(m.family, &m.laddr, &m.raddr),
                    proto: m.proto,
                    laddr: m.laddr,
                    lport: m.lport,
                    raddr: m.raddr,
                    rport: m.rport,
                },
                bytes: m.bytes,
                dir: direction(k, m.dir)?,
            })
        }
        kind::PKT => {
            let p: snoop_pkt = decode_typed(k, rec)?;
            Ok(Event::Packet {
                ts_ns: p.ts_ns,
                last_ns: p.last_ns.max(p.ts_ns),
                count: p.count.max(1),
                tcp_flags: p.tcp_flags,
                flow: packet_flow!(p),
                len: p.len,
                dir: direction(k, p.dir)?,
                segs: p.segs,
            })
        }
        kind::PKTSET => {
            let p: snoop_pktset = decode_typed(k, rec)?;
            let n = p.n;
            if n == 0 || usize::from(n) > SET_LENS {
                return Err(DecodeError::BadField {
                    kind: k,
                    field: "n",
                    value: n.into(),
                });
            }
            let mut runs = [PacketRun::default(); SET_LENS];
            for (r, e) in runs.iter_mut().zip(&p.e).take(usize::from(n)) {
                *r = PacketRun {
                    ts_ns: e.first_ns,
                    last_ns: e.last_ns.max(e.first_ns),
                    len: e.len,
                    count: e.count.max(1),
                    segs: e.segs,
                    tcp_flags: e.tcp_flags,
                };
            }
            Ok(Event::PacketSet {
                flow: packet_flow!(p),
                dir: direction(k, p.dir)?,
                n,
                runs,
            })
        }
        kind::CONN => {
            let c: snoop_conn = decode_typed(k, rec)?;
            Ok(Event::Conn {
                ts_ns: c.ts_ns,
                flow: Flow {
                    pid: c.pid,
                    tid: c.tid,
                    comm: comm(&c.comm),
                    cgroup: 0,
                    cookie: c.cookie,
                    ifindex: 0,
                    family: ip_family(c.family, &c.laddr, &c.raddr),
                    proto: 6,
                    laddr: c.laddr,
                    lport: c.lport,
                    raddr: c.raddr,
                    rport: c.rport,
                },
                old_state: c.old_state,
                new_state: c.new_state,
                bytes_acked: c.bytes_acked,
                bytes_received: c.bytes_received,
                outcome: TcpOutcome {
                    sk_err: c.sk_err,
                    retrans_segs: c.retrans_segs,
                    srtt_us: c.srtt_us,
                    min_rtt_us: c.min_rtt_us,
                    segs_out: c.segs_out,
                    segs_in: c.segs_in,
                },
            })
        }
        kind::PROC => {
            let p: snoop_proc = decode_typed(k, rec)?;
            let pk = ProcessKind::from_u8(p.pkind).ok_or(DecodeError::BadField {
                kind: k,
                field: "pkind",
                value: p.pkind.into(),
            })?;
            let name: Vec<u8> = p
                .filename
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8)
                .collect();
            Ok(Event::Process(ProcessRow {
                ts_ns: p.ts_ns,
                kind: pk,
                pid: p.pid,
                tid: p.tid,
                ppid: p.ppid,
                comm: comm(&p.comm),
                exit_code: p.exit_code,
                filename: snoop_format::name_text(&name),
            }))
        }
        kind::DNS => {
            let d: snoop_dns = decode_typed(k, rec)?;
            let len = usize::from(d.len);
            let data = d.data.get(..len).ok_or(DecodeError::BadField {
                kind: k,
                field: "len",
                value: len as u64,
            })?;
            Ok(Event::Dns(DnsPayload {
                ts_ns: d.ts_ns,
                pid: d.pid,
                cookie: d.cookie,
                tcp_seq: (d.proto == 6).then_some(d.seq),
                data: data.to_vec(),
            }))
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skel::bytes_of;

    #[test]
    fn message_round_trip() {
        let m = snoop_msg {
            kind: kind::MSG,
            dir: 1,
            family: 10,
            proto: 17,
            pid: 7,
            tid: 8,
            bytes: 123,
            ts_ns: 99,
            cookie: 5,
            cgroup: 1,
            laddr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1],
            raddr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 2],
            lport: 1,
            rport: 2,
            _pad0: 0,
            comm: [b'a' as i8; 16],
        };
        let e = decode(bytes_of(&m)).expect("decodes");
        match e {
            Event::Message {
                flow, bytes, dir, ..
            } => {
                assert_eq!(bytes, 123);
                assert_eq!(dir, Direction::Rx);
                assert_eq!(
                    flow.family, AF_INET,
                    "v4-mapped on an AF_INET6 socket is IPv4"
                );
                assert_eq!(flow.pid, 7);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn packet_set_is_one_run_per_length() {
        let mut p = snoop_pktset {
            kind: kind::PKTSET,
            dir: 0,
            family: 2,
            proto: 6,
            ifindex: 1,
            cookie: 5,
            pid: 7,
            n: 2,
            ..Default::default()
        };
        p.e[0].first_ns = 10;
        p.e[0].last_ns = 30;
        p.e[0].len = 52;
        p.e[0].count = 3;
        p.e[0].segs = 1;
        p.e[0].tcp_flags = 0x11;
        p.e[1].first_ns = 20;
        p.e[1].last_ns = 20;
        p.e[1].len = 116;
        p.e[1].count = 1;
        p.e[1].segs = 1;
        p.e[2].len = 999; // beyond n: not a run
        let e = decode(bytes_of(&p)).expect("decodes");
        assert_eq!((e.kind(), e.rows()), (kind::PKT, 2));
        let Event::PacketSet { flow, dir, n, runs } = e else {
            panic!("unexpected {e:?}");
        };
        assert_eq!(
            (flow.pid, flow.cookie, flow.ifindex, dir, n),
            (7, 5, 1, Direction::Tx, 2)
        );
        assert_eq!(
            runs[..2],
            [
                PacketRun {
                    ts_ns: 10,
                    last_ns: 30,
                    len: 52,
                    count: 3,
                    segs: 1,
                    tcp_flags: 0x11
                },
                PacketRun {
                    ts_ns: 20,
                    last_ns: 20,
                    len: 116,
                    count: 1,
                    segs: 1,
                    tcp_flags: 0
                },
            ]
        );
        for bad in [0u8, 5] {
            p.n = bad;
            assert!(
                matches!(
                    decode(bytes_of(&p)),
                    Err(DecodeError::BadField { field: "n", .. })
                ),
                "n = {bad}"
            );
        }
    }

    #[test]
    fn conn_outcome_round_trip() {
        let c = snoop_conn {
            kind: kind::CONN,
            family: 2,
            old_state: 2,
            new_state: 7,
            pid: 7,
            tid: 8,
            retrans_segs: 3,
            ts_ns: 99,
            cookie: 5,
            bytes_acked: 1,
            bytes_received: 0,
            laddr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1],
            raddr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 2],
            lport: 1,
            rport: 2,
            sk_err: 111,
            _pad1: 0,
            comm: [b'a' as i8; 16],
            srtt_us: 250,
            min_rtt_us: 40,
            segs_out: 6,
            segs_in: 5,
        };
        match decode(bytes_of(&c)).expect("decodes") {
            Event::Conn {
                old_state,
                new_state,
                outcome,
                ..
            } => {
                assert_eq!((old_state, new_state), (2, 7));
                assert_eq!(
                    outcome,
                    TcpOutcome {
                        sk_err: 111,
                        retrans_segs: 3,
                        srtt_us: 250,
                        min_rtt_us: 40,
                        segs_out: 6,
                        segs_in: 5,
                    }
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn comm_is_zeroed_after_the_first_nul() {
        // "b" over an older, longer name that was not padded.
        let mut raw = [b'a' as i8; 16];
        raw[1] = 0;
        raw[0] = b'b' as i8;
        assert_eq!(comm(&raw), snoop_format::comm_bytes("b"));
        assert_eq!(comm(&[b'x' as i8; 16]), [b'x'; 16], "no NUL: kept as is");
        // Every NUL position, with bytes that borrow (0x01, 0x80, 0xff)
        // around it: same as the obvious byte loop.
        for end in 0..16 {
            for fill in [1u8, 0x80, 0xff, b'a'] {
                let mut raw = [fill as i8; 16];
                raw[end] = 0;
                let mut want = [fill; 16];
                want[end..].fill(0);
                assert_eq!(comm(&raw), want, "NUL at {end}, fill {fill:#x}");
            }
        }
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        assert_eq!(decode(&[9, 0, 0]), Err(DecodeError::UnknownKind(9)));
        assert!(matches!(
            decode(&[0; 10]),
            Err(DecodeError::Short { kind: 0, .. })
        ));
        let mut b = [0u8; 96];
        b[1] = 7; // dir
        assert!(matches!(
            decode(&b),
            Err(DecodeError::BadField { field: "dir", .. })
        ));
    }

    #[test]
    fn dns_payload_length_is_checked() {
        let mut d = snoop_dns {
            kind: kind::DNS,
            proto: 17,
            len: 3,
            pid: 9,
            ..Default::default()
        };
        d.data[..3].copy_from_slice(&[1, 2, 3]);
        match decode(bytes_of(&d)).unwrap() {
            Event::Dns(p) => {
                assert_eq!((p.pid, p.tcp_seq, p.data), (9, None, vec![1, 2, 3]));
            }
            other => panic!("{other:?}"),
        }
        d.len = 513;
        assert!(matches!(
            decode(bytes_of(&d)),
            Err(DecodeError::BadField { field: "len", .. })
        ));
    }
}

//! `snoop export --table packets -o out.pcapng`: the recorded wire packets as
//! a pcapng file for Wireshark and tshark. snoop records packet metadata,
//! never payload, so each packet gets synthesized headers (Ethernet on
//! devices that have it, IPv4/IPv6, TCP/UDP with the recorded ports): the
//! captured length is those headers, the original length the packet's real
//! length, so Wireshark's statistics (conversations, I/O graphs) count the
//! real bytes. The owning process, as `analyze` attributes it, is in each
//! packet's comment (`pid=1234 comm=curl`) and per-process totals are
//! comments of the section header. Packets are written in time order (a
//! k-way merge over the chunks, each decoded when its first packet is due).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use snoop_format::{comm_str, shown, Flow, Table, Trace, AF_INET};

use crate::attrib::{AttribIndex, PktResolver};
use crate::cli::ExportArgs;
use crate::decode::{all_columns, batch_flows};
use crate::filter::Filter;
use crate::load::{open_all, Dataset, FileMeta, LoadPlan};

/// pcapng block types.
const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
const EPB: u32 = 6;
/// Option codes.
const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_OS: u16 = 3;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;
const EPB_FLAGS: u16 = 2;
/// Link types.
const LINKTYPE_ETHERNET: u16 = 1;
const LINKTYPE_RAW: u16 = 101;
/// Ethernet header length.
const ETH_LEN: usize = 14;

/// The link layer snoop synthesizes for a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// An Ethernet header (zero MAC addresses, the IP ethertype); the
    /// frame's original length is the IP length plus 14.
    Ethernet,
    /// IP straight away (`LINKTYPE_RAW`): the devices without a link
    /// header (tunnels, WireGuard, PPP) and packets of an unknown device.
    Raw,
}

impl Link {
    /// The link layer of a device, from its name (a trace records device
    /// names, not their types): tunnels and point-to-point devices have
    /// none; every other device — Ethernet, Wi-Fi, loopback, veth, bridges
    /// — has an Ethernet header, the way tcpdump captures them.
    pub fn of(name: Option<&str>) -> Link {
        let Some(n) = name else {
            return Link::Raw;
        };
        const L3: [&str; 13] = [
            "tun", "wg", "ppp", "sit", "ip6tnl", "ip6gre", "tunl", "ipip", "gre", "vti", "ip_vti",
            "wwan", "rmnet",
        ];
        if n.starts_with("gretap") || n.starts_with("ip6gretap") {
            return Link::Ethernet;
        }
        if L3.iter().any(|p| n.starts_with(p)) {
            Link::Raw
        } else {
            Link::Ethernet
        }
    }

    fn linktype(self) -> u16 {
        match self {
            Link::Ethernet => LINKTYPE_ETHERNET,
            Link::Raw => LINKTYPE_RAW,
        }
    }

    fn header_len(self) -> usize {
        match self {
            Link::Ethernet => ETH_LEN,
            Link::Raw => 0,
        }
    }
}

/// The times of the packets one packets row stands for: `count` packets
/// evenly spread from `first` to `last` (both included), `first` alone for
/// a row of one packet. Every packets row goes through here, so a row that
/// stands for a run of packets expands like a single one.
pub fn spread(first: u64, last: u64, count: u64) -> impl Iterator<Item = u64> {
    let count = count.max(1);
    let span = last.saturating_sub(first) as u128;
    (0..count).map(move |i| {
        if count == 1 {
            first
        } else {
            first + (span * i as u128 / (count - 1) as u128) as u64
        }
    })
}

fn push_opt(out: &mut Vec<u8>, code: u16, val: &[u8]) {
    // An option's value is at most 65535 bytes; longer text is cut.
    let val = &val[..val.len().min(u16::MAX as usize - 3)];
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(val.len() as u16).to_le_bytes());
    out.extend_from_slice(val);
    out.resize(out.len().next_multiple_of(4), 0);
}

fn push_end(out: &mut Vec<u8>) {
    out.extend_from_slice(&OPT_END.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
}

/// A block: type, total length, the body padded to 4 bytes, total length.
fn block(kind: u32, mut body: Vec<u8>) -> Vec<u8> {
    body.resize(body.len().next_multiple_of(4), 0);
    let total = (body.len() + 12) as u32;
    let mut b = Vec::with_capacity(total as usize);
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&total.to_le_bytes());
    b.extend_from_slice(&body);
    b.extend_from_slice(&total.to_le_bytes());
    b
}

/// A Section Header Block with one comment per line of `comments`.
pub fn section_header(comments: &[String], os: &str, app: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&(-1i64).to_le_bytes()); // section length unknown
    for c in comments {
        push_opt(&mut body, OPT_COMMENT, c.as_bytes());
    }
    if !os.is_empty() {
        push_opt(&mut body, SHB_OS, os.as_bytes());
    }
    push_opt(&mut body, SHB_USERAPPL, app.as_bytes());
    push_end(&mut body);
    block(SHB, body)
}

/// An Interface Description Block with nanosecond timestamps.
pub fn interface(link: Link, name: &str, description: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&link.linktype().to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes()); // snaplen: no limit
    push_opt(&mut body, IF_NAME, name.as_bytes());
    if !description.is_empty() {
        push_opt(&mut body, IF_DESCRIPTION, description.as_bytes());
    }
    push_opt(&mut body, IF_TSRESOL, &[9]);
    push_end(&mut body);
    block(IDB, body)
}

/// An Enhanced Packet Block: `data` captured of `orig_len` bytes, at
/// `ts_ns` since the Unix epoch, inbound (`dir` 1) or outbound (0).
pub fn enhanced_packet(
    iface: u32,
    ts_ns: u64,
    data: &[u8],
    orig_len: u32,
    dir: u8,
    comment: Option<&str>,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(data.len() + 64);
    body.extend_from_slice(&iface.to_le_bytes());
    body.extend_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
    body.extend_from_slice(&(ts_ns as u32).to_le_bytes());
    body.extend_from_slice(&(data.len() as u32).to_le_bytes());
    body.extend_from_slice(&orig_len.to_le_bytes());
    body.extend_from_slice(data);
    body.resize(body.len().next_multiple_of(4), 0);
    if let Some(c) = comment {
        push_opt(&mut body, OPT_COMMENT, c.as_bytes());
    }
    let flags: u32 = if dir == 0 { 0b10 } else { 0b01 };
    push_opt(&mut body, EPB_FLAGS, &flags.to_le_bytes());
    push_end(&mut body);
    block(EPB, body)
}

fn ip_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The synthesized headers of one packet of `len` IP bytes (as recorded)
/// on flow `f` in direction `dir` (0 sent, 1 received), TCP sequence
/// number `seq`, TCP flags `flags` (0 where the trace has none); returns
/// the headers and the frame's original length.
pub fn headers(link: Link, f: &Flow, dir: u8, len: u32, seq: u32, flags: u8) -> (Vec<u8>, u32) {
    let (src, sport, dst, dport) = if dir == 0 {
        (&f.laddr, f.lport, &f.raddr, f.rport)
    } else {
        (&f.raddr, f.rport, &f.laddr, f.lport)
    };
    let v4 = f.family == AF_INET;
    let ip_len = if v4 { 20 } else { 40 };
    let l4_len = match f.proto {
        6 => 20,
        17 => 8,
        _ => 0,
    };
    let len = len as usize;
    let mut h = Vec::with_capacity(ETH_LEN + ip_len + l4_len);
    if link == Link::Ethernet {
        h.extend_from_slice(&[0; 12]);
        h.extend_from_slice(&(if v4 { 0x0800u16 } else { 0x86DD }).to_be_bytes());
    }
    let clamp16 = |n: usize| n.min(u16::MAX as usize) as u16;
    if v4 {
        let start = h.len();
        h.extend_from_slice(&[0x45, 0]);
        h.extend_from_slice(&clamp16(len).to_be_bytes());
        h.extend_from_slice(&[0, 0, 0x40, 0, 64, f.proto, 0, 0]);
        h.extend_from_slice(&src[12..]);
        h.extend_from_slice(&dst[12..]);
        let sum = ip_checksum(&h[start..]);
        h[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
    } else {
        h.extend_from_slice(&[0x60, 0, 0, 0]);
        h.extend_from_slice(&clamp16(len.saturating_sub(40)).to_be_bytes());
        h.extend_from_slice(&[f.proto, 64]);
        h.extend_from_slice(src);
        h.extend_from_slice(dst);
    }
    // A transport header only where the packet is long enough to hold one
    // (a fragment's ports are 0 and it may be shorter).
    if l4_len > 0 && len >= ip_len + l4_len {
        h.extend_from_slice(&sport.to_be_bytes());
        h.extend_from_slice(&dport.to_be_bytes());
        if f.proto == 6 {
            h.extend_from_slice(&seq.to_be_bytes());
            h.extend_from_slice(&0u32.to_be_bytes()); // ack
            h.extend_from_slice(&[5 << 4, flags]); // data offset 5
            h.extend_from_slice(&u16::MAX.to_be_bytes()); // window
            h.extend_from_slice(&[0; 4]); // checksum, urgent
        } else {
            h.extend_from_slice(&clamp16(len - ip_len).to_be_bytes());
            h.extend_from_slice(&[0; 2]);
        }
    }
    let orig = (link.header_len() + len).min(u32::MAX as usize);
    h.truncate(orig);
    (h, orig as u32)
}

/// Per-process packet totals for the section header.
#[derive(Default, Clone, Copy)]
struct Totals {
    tx_n: u64,
    tx_b: u64,
    rx_n: u64,
    rx_b: u64,
}

/// The section header's comments: what the file is, then one line per
/// process with its packets and IP bytes each way (as `analyze` counts
/// them), busiest first, then the unattributed packets.
fn stats_comments(ds: &Dataset, files: &[FileMeta]) -> Vec<String> {
    let multi = files.len() > 1;
    let mut per: HashMap<(u16, u32, [u8; 16]), Totals> = HashMap::new();
    let mut none = Totals::default();
    for (g, row) in ds.flows.iter().enumerate() {
        if !row.origin.is_packet() {
            continue;
        }
        let a = &ds.agg[g];
        let t = if row.origin.attributed() && row.flow.pid != 0 {
            per.entry((row.file, row.flow.pid, row.flow.comm))
                .or_default()
        } else {
            &mut none
        };
        t.tx_n += a.tx_n;
        t.tx_b += a.tx_bytes;
        t.rx_n += a.rx_n;
        t.rx_b += a.rx_bytes;
    }
    let mut rows: Vec<_> = per.into_iter().collect();
    rows.sort_by_key(|(k, t)| (Reverse(t.tx_b + t.rx_b), *k));
    let mut out = vec![format!(
        "snoop export of {}: synthesized headers (the captured length), real lengths; \
         per process: packets and IP bytes sent (tx) and received (rx)",
        files
            .iter()
            .map(|f| shown(&f.path.display().to_string()).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    )];
    let host = |fi: u16| {
        if multi {
            format!("host={} ", shown(&files[fi as usize].host))
        } else {
            String::new()
        }
    };
    for ((fi, pid, comm), t) in rows {
        out.push(format!(
            "{}pid={pid} tx_packets={} tx_bytes={} rx_packets={} rx_bytes={} comm={}",
            host(fi),
            t.tx_n,
            t.tx_b,
            t.rx_n,
            t.rx_b,
            shown(&comm_str(&comm))
        ));
    }
    if none.tx_n + none.rx_n > 0 {
        out.push(format!(
            "unattributed tx_packets={} tx_bytes={} rx_packets={} rx_bytes={}",
            none.tx_n, none.tx_b, none.rx_n, none.rx_b
        ));
    }
    out
}

/// One decoded packets chunk being merged.
struct Cursor {
    file: u16,
    ci: usize,
    flows: Vec<Flow>,
    b: Box<snoop_format::EventBatch>,
    next: usize,
}

fn decode(tr: &Trace, file: u16, ci: usize) -> anyhow::Result<Cursor> {
    let b = tr
        .read_chunk(ci, all_columns(Table::Packets))
        .and_then(|c| c.into_events())
        .with_context(|| format!("decoding packets chunk {ci}"))?;
    let flows = batch_flows(&b, &format!("packets chunk {ci}"))?;
    if b.ts.len() != b.rows
        || b.flow.len() != b.rows
        || b.bytes.len() != b.rows
        || b.dir.len() != b.rows
    {
        anyhow::bail!("packets chunk {ci}: columns have different lengths");
    }
    if b.flow.iter().any(|&f| f as usize >= flows.len()) {
        anyhow::bail!("packets chunk {ci}: flow index out of range");
    }
    Ok(Cursor {
        file,
        ci,
        flows,
        b: Box::new(b),
        next: 0,
    })
}

type ConvKey = (u16, u8, u8, [u8; 16], u16, [u8; 16], u16);

/// The pcapng writer's state: interfaces and TCP sequence numbers.
struct Out<'a> {
    w: BufWriter<File>,
    files: &'a [FileMeta],
    ifaces: BTreeMap<(u16, u32), (u32, Link)>,
    seq: HashMap<ConvKey, u32>,
    packets: u64,
}

impl Out<'_> {
    fn packet(
        &mut self,
        file: u16,
        ts: u64,
        eff: &Flow,
        dir: u8,
        len: u32,
        flags: u8,
    ) -> anyhow::Result<()> {
        let Some(&(id, link)) = self.ifaces.get(&(file, eff.ifindex)) else {
            anyhow::bail!("packet on interface {} not described", eff.ifindex);
        };
        let key = (
            file, dir, eff.proto, eff.laddr, eff.lport, eff.raddr, eff.rport,
        );
        let seq = self.seq.entry(key).or_insert(1);
        let ip_hdr = if eff.family == AF_INET { 20 } else { 40 };
        let wall = self.files[file as usize].info.wall_ns(ts).max(0) as u64;
        let (data, orig) = headers(link, eff, dir, len, *seq, flags);
        if eff.proto == 6 {
            *seq = seq.wrapping_add(len.saturating_sub(ip_hdr + 20));
        }
        let comment =
            (eff.pid != 0).then(|| format!("pid={} comm={}", eff.pid, shown(&comm_str(&eff.comm))));
        self.w.write_all(&enhanced_packet(
            id,
            wall,
            &data,
            orig,
            dir,
            comment.as_deref(),
        ))?;
        self.packets += 1;
        Ok(())
    }
}

/// Run `snoop export --table packets -o FILE.pcapng`.
pub fn run_pcapng(args: &ExportArgs, output: &Path) -> anyhow::Result<()> {
    let filter = Filter::parse(&args.filter)?;
    // The same load as `analyze` (so the attribution and the totals are
    // the ones it reports), without per-event columns.
    let plan = LoadPlan {
        messages: true,
        packets: true,
        events: false,
        connections: false,
        processes: false,
        stats: false,
        behaviour: false,
        udp_conns: false,
        interval_ns: 1_000_000_000,
    };
    let ds = Dataset::load(&args.files, &filter, plan)?;
    let index = AttribIndex::build(&ds);
    let (traces, files) = open_all(&args.files, &filter)?;

    let mut ifaces = BTreeMap::new();
    for row in ds.flows.iter().filter(|r| r.origin.is_packet()) {
        ifaces
            .entry((row.file, row.flow.ifindex))
            .or_insert((0, Link::Raw));
    }
    let file =
        File::create(output).with_context(|| format!("cannot create {}", output.display()))?;
    let mut out = Out {
        w: BufWriter::new(file),
        files: &files,
        ifaces,
        seq: HashMap::new(),
        packets: 0,
    };
    let kernels: Vec<&str> = files.iter().map(|f| f.info.kernel.as_str()).collect();
    out.w.write_all(&section_header(
        &stats_comments(&ds, &files),
        &format!("Linux {}", kernels.first().copied().unwrap_or_default()),
        &format!("snoop {}", env!("CARGO_PKG_VERSION")),
    ))?;
    for (next_id, (&(fi, ifindex), slot)) in (0u32..).zip(out.ifaces.iter_mut()) {
        let m = &files[fi as usize];
        let name = m.info.iface_name(ifindex);
        let link = Link::of(name);
        let label = match name {
            Some(n) => shown(n).into_owned(),
            None if ifindex == 0 => "unknown".to_string(),
            None => format!("if{ifindex}"),
        };
        *slot = (next_id, link);
        out.w.write_all(&interface(
            link,
            &label,
            &format!("host {}, ifindex {ifindex}", shown(&m.host)),
        ))?;
    }

    // Chunks in order of first wall-clock time; a chunk is decoded when its
    // first packet is due and dropped when done.
    let mut pending: Vec<(i64, u16, usize)> = Vec::new();
    for (fi, tr) in traces.iter().enumerate() {
        let ff = &files[fi].filter;
        for ci in tr.chunks_of(Table::Packets) {
            let c = &tr.chunks()[ci];
            if ff.chunk_ok(c) {
                pending.push((files[fi].info.wall_ns(c.t_min), fi as u16, ci));
            }
        }
    }
    pending.sort();
    pending.reverse();
    let mut active: Vec<Option<Cursor>> = Vec::new();
    let mut heap: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
    let wall = |fi: u16, ts: u64| files[fi as usize].info.wall_ns(ts);
    loop {
        let next_active = heap.peek().map(|Reverse((k, _))| *k);
        match (next_active, pending.last().map(|p| p.0)) {
            (None, None) => break,
            (a, Some(p)) if a.is_none_or(|a| p <= a) => {
                let Some((_, fi, ci)) = pending.pop() else {
                    break;
                };
                let tr = &traces[fi as usize];
                let c = decode(tr, fi, ci)
                    .with_context(|| files[fi as usize].path.display().to_string())?;
                tr.release_chunk(ci);
                if let Some(&ts) = c.b.ts.first() {
                    heap.push(Reverse((wall(fi, ts), active.len())));
                    active.push(Some(c));
                }
            }
            _ => {
                let Some(Reverse((_, slot))) = heap.pop() else {
                    break;
                };
                let Some(c) = active[slot].as_mut() else {
                    continue;
                };
                let i = c.next;
                c.next += 1;
                let (fi, ts) = (c.file, c.b.ts[i]);
                let ff = &files[fi as usize].filter;
                if ff.time_ok(ts) {
                    let row = c.b.flow[i] as usize;
                    let mut r = PktResolver::new(&index, fi, std::slice::from_ref(&c.flows[row]));
                    let (eff, _) = r.resolve(0, ts);
                    if ff.flow_ok(&eff) {
                        // A packets row stands for a run of `count` equal
                        // packets (1 before format 1.4), spread evenly over
                        // its time span. A single packet's TCP flags are
                        // its own; a run's are OR-ed over its packets, so
                        // only ACK, which every packet of it then carries
                        // bar a first SYN, is given to each.
                        let count = c.b.count(i);
                        let flags =
                            c.b.tcp_flags.get(i).map_or(
                                0,
                                |&f| {
                                    if count == 1 {
                                        f
                                    } else {
                                        f & 0x10
                                    }
                                },
                            );
                        for t in spread(ts, c.b.last_ns(i), u64::from(count)) {
                            out.packet(fi, t, &eff, c.b.dir[i], c.b.bytes[i], flags)
                                .with_context(|| {
                                    format!("writing {} (chunk {})", output.display(), c.ci)
                                })?;
                        }
                    }
                }
                match c.b.ts.get(c.next) {
                    Some(&ts) => heap.push(Reverse((wall(fi, ts), slot))),
                    None => active[slot] = None,
                }
            }
        }
    }
    out.w
        .flush()
        .with_context(|| format!("writing {}", output.display()))?;
    let file = out
        .w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("writing {}: {}", output.display(), e.error()))?;
    file.sync_all()
        .with_context(|| format!("writing {}", output.display()))?;
    eprintln!(
        "snoop: wrote {} packets to {}",
        out.packets,
        shown(&output.display().to_string())
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_covers_the_run_evenly() {
        assert_eq!(spread(10, 10, 1).collect::<Vec<_>>(), vec![10]);
        assert_eq!(spread(10, 99, 0).collect::<Vec<_>>(), vec![10]);
        assert_eq!(spread(0, 90, 4).collect::<Vec<_>>(), vec![0, 30, 60, 90]);
        let v: Vec<u64> = spread(u64::MAX - 10, u64::MAX, 3).collect();
        assert_eq!(v, vec![u64::MAX - 10, u64::MAX - 5, u64::MAX]);
    }

    #[test]
    fn ipv4_header_checksum_verifies() {
        let f = Flow {
            family: AF_INET,
            proto: 17,
            laddr: snoop_format::addr_bytes("10.0.0.1".parse().unwrap()),
            raddr: snoop_format::addr_bytes("10.0.0.2".parse().unwrap()),
            lport: 1000,
            rport: 53,
            ..Flow::default()
        };
        let (h, orig) = headers(Link::Raw, &f, 0, 100, 0, 0);
        assert_eq!(orig, 100);
        assert_eq!(h.len(), 28);
        // Summing a header with its checksum gives all ones.
        assert_eq!(ip_checksum(&h[..20]), 0);
        assert_eq!(&h[12..16], &[10, 0, 0, 1]);
        assert_eq!(u16::from_be_bytes([h[20], h[21]]), 1000);
        assert_eq!(u16::from_be_bytes([h[24], h[25]]), 80);
    }

    #[test]
    fn a_short_packet_keeps_captured_within_original() {
        let f = Flow {
            family: snoop_format::AF_INET6,
            proto: 6,
            ..Flow::default()
        };
        let (h, orig) = headers(Link::Ethernet, &f, 1, 30, 0, 0);
        assert_eq!(orig, 44);
        assert!(h.len() <= orig as usize);
    }
}

//! Names for remote addresses, from the DNS answers local processes
//! receive. The kernel side copies the first bytes of each packet from
//! port 53 to a local socket; this module turns them into `(name asked,
//! CNAME chain, address, TTL)` and nothing else, so the trace never holds
//! other payload. The bytes come from the network, so the parser treats
//! them as hostile: every read is bounded, compression pointers must
//! point backwards and are followed a bounded number of times, and a
//! truncated or malformed message yields the complete records before the
//! damage, never a panic.
//!
//! DNS over TCP carries each message behind a 2-byte length; the kernel
//! side hands over each segment's first bytes with its sequence number,
//! and [`TcpStreams`] finds where messages start so that continuation
//! segments are never parsed as messages.

use std::collections::HashMap;

use snoop_format::DnsAnswer;

/// Largest name in presentation form we keep (255 wire bytes, escaped).
const MAX_NAME_WIRE: usize = 255;
/// Compression pointers followed in one name before giving up.
const MAX_POINTERS: usize = 32;
/// Answer records read from one message.
const MAX_ANSWERS: usize = 128;
/// CNAME links followed from the question to an address record.
const MAX_CHAIN: usize = 16;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// One address a DNS answer gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The question's name (lowercase, no final dot).
    pub name: String,
    /// CNAMEs followed from the question to the address record's owner.
    pub cnames: Vec<String>,
    /// IPv4 as v4-mapped IPv6, or IPv6.
    pub addr: [u8; 16],
    /// TTL in seconds.
    pub ttl: u32,
}

impl Answer {
    /// The trace's form of this answer, received at `ts_ns` by `pid`.
    pub fn into_trace(self, ts_ns: u64, pid: u32) -> DnsAnswer {
        DnsAnswer {
            ts_ns,
            pid,
            name: self.name,
            cnames: self.cnames,
            addr: self.addr,
            ttl: self.ttl,
        }
    }
}

fn u16_at(m: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*m.get(at)?, *m.get(at + 1)?]))
}

fn u32_at(m: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *m.get(at)?,
        *m.get(at + 1)?,
        *m.get(at + 2)?,
        *m.get(at + 3)?,
    ]))
}

/// Read the (possibly compressed) name at `at`: its presentation form
/// (lowercase, labels joined by dots, bytes outside printable ASCII and
/// `.`/`\` in labels escaped as `\DDD`/`\.`/`\\`, the root as `.`) and the
/// offset just after it in the message.
fn read_name(m: &[u8], at: usize) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut pos = at;
    let mut end = None;
    let mut pointers = 0;
    let mut wire = 0usize;
    loop {
        let len = *m.get(pos)? as usize;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    let after = end.unwrap_or(pos + 1);
                    if out.is_empty() {
                        out.push('.');
                    }
                    return Some((out, after));
                }
                let label = m.get(pos + 1..pos + 1 + len)?;
                wire += len + 1;
                if wire > MAX_NAME_WIRE {
                    return None;
                }
                if !out.is_empty() {
                    out.push('.');
                }
                for &b in label {
                    match b {
                        b'.' | b'\\' => {
                            out.push('\\');
                            out.push(b as char);
                        }
                        0x21..=0x7e => out.push(b.to_ascii_lowercase() as char),
                        _ => out.push_str(&format!("\\{b:03}")),
                    }
                }
                pos += 1 + len;
            }
            0xc0 => {
                let target = (u16_at(m, pos)? & 0x3fff) as usize;
                pointers += 1;
                // Only backwards, and a bounded number of times: no loops.
                if target >= pos || pointers > MAX_POINTERS {
                    return None;
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            _ => return None, // 0x40 / 0x80: extended or reserved label types
        }
    }
}

/// The address records of a DNS response `m` (a whole message, perhaps
/// cut short), each with the question it answers and the CNAME chain
/// leading to it. Queries, errors, non-IN classes and records not reached
/// from the question give nothing.
pub fn parse_response(m: &[u8]) -> Vec<Answer> {
    let mut out = Vec::new();
    let Some(flags) = u16_at(m, 2) else {
        return out;
    };
    let (qd, an) = match (u16_at(m, 4), u16_at(m, 6)) {
        (Some(q), Some(a)) => (q, a),
        _ => return out,
    };
    // A response (QR), standard query (opcode 0), no error (rcode 0), one
    // question.
    if flags & 0x8000 == 0 || (flags >> 11) & 0xf != 0 || flags & 0xf != 0 || qd != 1 {
        return out;
    }
    let Some((question, mut pos)) = read_name(m, 12) else {
        return out;
    };
    pos += 4; // qtype, qclass
    let mut cnames: Vec<(String, String)> = Vec::new();
    let mut addrs: Vec<(String, [u8; 16], u32)> = Vec::new();
    for _ in 0..usize::from(an).min(MAX_ANSWERS) {
        let Some((owner, p)) = read_name(m, pos) else {
            break;
        };
        let (Some(ty), Some(class), Some(ttl), Some(rdlen)) = (
            u16_at(m, p),
            u16_at(m, p + 2),
            u32_at(m, p + 4),
            u16_at(m, p + 8),
        ) else {
            break;
        };
        let rdata_at = p + 10;
        let Some(rdata) = m.get(rdata_at..rdata_at + usize::from(rdlen)) else {
            break;
        };
        pos = rdata_at + usize::from(rdlen);
        if class != CLASS_IN {
            continue;
        }
        match (ty, rdata.len()) {
            (TYPE_A, 4) => {
                let v4 = std::net::Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]);
                addrs.push((owner, v4.to_ipv6_mapped().octets(), ttl));
            }
            (TYPE_AAAA, 16) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(rdata);
                addrs.push((owner, a, ttl));
            }
            (TYPE_CNAME, _) => {
                if let Some((target, _)) = read_name(m, rdata_at) {
                    cnames.push((owner, target));
                }
            }
            _ => {}
        }
    }
    // The names the question leads to, each with the chain that reaches it.
    let mut chain: Vec<String> = Vec::new();
    let mut reach: Vec<(String, Vec<String>)> = vec![(question.clone(), Vec::new())];
    let mut at = question.clone();
    for _ in 0..MAX_CHAIN {
        let Some((_, next)) = cnames.iter().find(|(o, _)| *o == at) else {
            break;
        };
        if next == &question || chain.contains(next) {
            break;
        }
        chain.push(next.clone());
        reach.push((next.clone(), chain.clone()));
        at = next.clone();
    }
    for (owner, addr, ttl) in addrs {
        if let Some((_, via)) = reach.iter().find(|(n, _)| *n == owner) {
            out.push(Answer {
                name: question.clone(),
                cnames: via.clone(),
                addr,
                ttl,
            });
        }
    }
    out
}

/// Where DNS messages start in TCP streams from port 53, per socket.
#[derive(Debug, Default)]
pub struct TcpStreams {
    /// Socket cookie -> sequence number where the next message starts.
    next: HashMap<u64, u32>,
}

/// Sockets whose stream position is remembered at once; beyond this the
/// oldest knowledge is dropped (a message then starts at the next segment
/// that parses as one).
const MAX_STREAMS: usize = 4096;

impl TcpStreams {
    /// The answers of a segment of socket `cookie` starting at sequence
    /// number `seq` whose first bytes are `data`: the DNS message starting
    /// there, if one does (the first segment a socket shows, or the one
    /// after the previous message's end).
    pub fn segment(&mut self, cookie: u64, seq: u32, data: &[u8]) -> Vec<Answer> {
        if let Some(&want) = self.next.get(&cookie) {
            if want != seq {
                return Vec::new(); // a continuation
            }
        }
        let Some(len) = u16_at(data, 0) else {
            return Vec::new();
        };
        if self.next.len() >= MAX_STREAMS && !self.next.contains_key(&cookie) {
            self.next.clear();
        }
        self.next
            .insert(cookie, seq.wrapping_add(2).wrapping_add(u32::from(len)));
        let body = &data[2..];
        parse_response(&body[..body.len().min(usize::from(len))])
    }
}

/// The same UDP answer seen again for the same socket: with packets
/// recorded the kernel side reads answers where packets arrive on a
/// device, and a host that routes to a container's or VM's address sees
/// one answer arrive twice (on its own device, then on the guest's), where
/// the socket received it once.
#[derive(Debug, Default)]
pub struct UdpRepeats {
    /// Socket cookie -> (hash of the last payload, when it came).
    last: HashMap<u64, (u64, u64)>,
}

/// How close a repeat must follow to be one answer seen twice on its way
/// in (the two arrivals are microseconds apart).
const REPEAT_NS: u64 = 1_000_000_000;

impl UdpRepeats {
    /// Whether `data`, received by socket `cookie` at `ts_ns`, repeats the
    /// answer that socket got just before; remembers it otherwise.
    pub fn repeat(&mut self, cookie: u64, ts_ns: u64, data: &[u8]) -> bool {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(data);
        if let Some(&(last, at)) = self.last.get(&cookie) {
            if last == h && ts_ns.saturating_sub(at) < REPEAT_NS {
                return true;
            }
        }
        if self.last.len() >= MAX_STREAMS && !self.last.contains_key(&cookie) {
            self.last.clear();
        }
        self.last.insert(cookie, (h, ts_ns));
        false
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A name in wire form.
    pub fn wire_name(name: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for l in name.split('.').filter(|l| !l.is_empty()) {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v
    }

    /// A response to `q` (type `qtype`) with `answers` (owner, type, rdata).
    pub fn response(q: &str, qtype: u16, answers: &[(&str, u16, Vec<u8>)]) -> Vec<u8> {
        let mut m = vec![
            0x12,
            0x34,
            0x81,
            0x80,
            0,
            1,
            0,
            answers.len() as u8,
            0,
            0,
            0,
            0,
        ];
        m.extend(wire_name(q));
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        for (owner, ty, rdata) in answers {
            if *owner == q {
                m.extend_from_slice(&[0xc0, 12]); // compressed: the question
            } else {
                m.extend(wire_name(owner));
            }
            m.extend_from_slice(&ty.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0x01, 0x2c]); // IN, TTL 300
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(rdata);
        }
        m
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        std::net::Ipv4Addr::from(a).to_ipv6_mapped().octets()
    }

    #[test]
    fn a_records_name_their_addresses() {
        let m = response(
            "Www.Example.COM",
            1,
            &[
                ("Www.Example.COM", 1, vec![10, 0, 0, 1]),
                ("Www.Example.COM", 1, vec![10, 0, 0, 2]),
            ],
        );
        let got = parse_response(&m);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "www.example.com");
        assert_eq!(got[0].addr, v4([10, 0, 0, 1]));
        assert_eq!(got[1].addr, v4([10, 0, 0, 2]));
        assert_eq!(got[0].ttl, 300);
        assert!(got[0].cnames.is_empty());
    }

    #[test]
    fn cname_chains_are_followed_from_the_question() {
        let six: std::net::Ipv6Addr = "fd00::5".parse().unwrap();
        let m = response(
            "app.test",
            28,
            &[
                ("app.test", 5, wire_name("lb.test")),
                ("lb.test", 5, wire_name("edge.cdn.test")),
                ("edge.cdn.test", 28, six.octets().to_vec()),
                // Not reached from the question: ignored.
                ("other.test", 28, six.octets().to_vec()),
            ],
        );
        let got = parse_response(&m);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].name, "app.test");
        assert_eq!(got[0].cnames, vec!["lb.test", "edge.cdn.test"]);
        assert_eq!(got[0].addr, six.octets());
    }

    #[test]
    fn queries_errors_and_odd_names_give_nothing_or_escaped_text() {
        let mut q = response("a.test", 1, &[("a.test", 1, vec![1, 2, 3, 4])]);
        q[2] &= 0x7f; // a query, not a response
        assert!(parse_response(&q).is_empty());
        let mut nx = response("a.test", 1, &[("a.test", 1, vec![1, 2, 3, 4])]);
        nx[3] |= 3; // NXDOMAIN
        assert!(parse_response(&nx).is_empty());
        let m = response(
            "a\u{1b}b.x\\y.test",
            1,
            &[("a\u{1b}b.x\\y.test", 1, vec![1, 2, 3, 4])],
        );
        assert_eq!(parse_response(&m)[0].name, "a\\027b.x\\\\y.test");
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_refused() {
        // A name that points at itself.
        let mut m = vec![
            0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1,
        ];
        assert!(parse_response(&m).is_empty());
        m[13] = 40; // forward
        assert!(parse_response(&m).is_empty());
    }

    #[test]
    fn truncated_messages_keep_the_complete_records() {
        let m = response(
            "a.test",
            1,
            &[
                ("a.test", 1, vec![1, 2, 3, 4]),
                ("a.test", 1, vec![5, 6, 7, 8]),
            ],
        );
        for cut in 0..m.len() {
            let got = parse_response(&m[..cut]);
            assert!(got.len() <= 1, "cut at {cut}: {got:?}");
        }
        assert_eq!(parse_response(&m[..m.len() - 1]).len(), 1);
        assert_eq!(parse_response(&m).len(), 2);
    }

    /// Random and mutated messages never panic, and whatever they yield
    /// is bounded and well-formed.
    #[test]
    fn random_and_mutated_bytes_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let base = response(
            "svc.test",
            1,
            &[
                ("svc.test", 5, wire_name("x.test")),
                ("x.test", 1, vec![9, 9, 9, 9]),
            ],
        );
        let mut streams = TcpStreams::default();
        for i in 0..200_000u64 {
            let mut m = if i % 2 == 0 {
                base.clone()
            } else {
                (0..(rnd() % 600) as usize).map(|_| rnd() as u8).collect()
            };
            if !m.is_empty() {
                for _ in 0..=(rnd() % 6) {
                    let at = (rnd() as usize) % m.len();
                    m[at] = rnd() as u8;
                }
                if rnd() % 4 == 0 {
                    m.truncate((rnd() as usize) % m.len());
                }
            }
            for a in parse_response(&m) {
                assert!(a.name.len() <= 4 * MAX_NAME_WIRE && a.cnames.len() <= MAX_CHAIN);
            }
            let _ = streams.segment(i % 7, rnd() as u32, &m);
        }
    }

    #[test]
    fn tcp_messages_start_after_the_previous_one() {
        let one = response("t.test", 1, &[("t.test", 1, vec![1, 1, 1, 1])]);
        let two = response("u.test", 1, &[("u.test", 1, vec![2, 2, 2, 2])]);
        let framed = |m: &[u8]| {
            let mut v = (m.len() as u16).to_be_bytes().to_vec();
            v.extend_from_slice(m);
            v
        };
        let mut s = TcpStreams::default();
        let a = framed(&one);
        assert_eq!(s.segment(5, 1000, &a)[0].name, "t.test");
        // A continuation segment (not where a message starts) is skipped
        // even when its bytes look like a message.
        assert!(s.segment(5, 1001, &framed(&two)).is_empty());
        let next = 1000 + a.len() as u32;
        assert_eq!(s.segment(5, next, &framed(&two))[0].name, "u.test");
    }

    #[test]
    fn an_answer_seen_twice_on_its_way_in_counts_once() {
        let one = response("t.test", 1, &[("t.test", 1, vec![1, 1, 1, 1])]);
        let two = response("t.test", 1, &[("t.test", 1, vec![2, 2, 2, 2])]);
        let mut r = UdpRepeats::default();
        assert!(!r.repeat(7, 1_000, &one));
        assert!(r.repeat(7, 1_500, &one), "the same answer 500 ns later");
        assert!(!r.repeat(8, 1_600, &one), "another socket's");
        assert!(!r.repeat(7, 2_000, &two), "another answer");
        assert!(!r.repeat(7, 3_000, &one), "the first again after another");
        assert!(
            !r.repeat(7, 3_000 + REPEAT_NS, &one),
            "asked again a second later"
        );
    }
}

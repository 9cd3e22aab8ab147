//! Names for remote addresses, from the DNS answers a trace holds (format
//! 1.3). A connection is named by what its process asked for: the latest
//! answer it received for that address before the connection started;
//! failing that, the latest answer any process received for the address
//! before then. Reports without a single start time (remotes, `--by
//! remote`) take the whole trace. Traces without DNS answers name nothing,
//! so every `remote_name` stays null.

use std::collections::HashMap;

use snoop_format::DnsAnswer;

/// One file's address -> name index.
#[derive(Debug, Default)]
pub struct RemoteNames {
    /// Address -> (time, pid, index into `names`), by time.
    by_addr: HashMap<[u8; 16], Vec<(u64, u32, u32)>>,
    /// Distinct names.
    names: Vec<String>,
}

impl RemoteNames {
    /// Index the answers of one trace.
    pub fn new(answers: &[DnsAnswer]) -> RemoteNames {
        let mut out = RemoteNames::default();
        let mut index: HashMap<&str, u32> = HashMap::new();
        for a in answers {
            let n = out.names.len() as u32;
            let id = *index.entry(a.name.as_str()).or_insert_with(|| {
                out.names.push(a.name.clone());
                n
            });
            out.by_addr
                .entry(a.addr)
                .or_default()
                .push((a.ts_ns, a.pid, id));
        }
        for v in out.by_addr.values_mut() {
            v.sort_by_key(|e| e.0);
        }
        out
    }

    /// Whether the trace holds any name.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The name of a connection of `pid` to `addr` that started at `at`:
    /// the process's own latest lookup before then, else anyone's.
    pub fn at(&self, pid: u32, addr: &[u8; 16], at: u64) -> Option<&str> {
        let seen = self.by_addr.get(addr)?;
        let before = &seen[..seen.partition_point(|e| e.0 <= at)];
        let own = before.iter().rev().find(|e| e.1 == pid && pid != 0);
        own.or(before.last())
            .map(|e| self.names[e.2 as usize].as_str())
    }

    /// The name of `addr` for `pid` over the whole trace.
    pub fn any(&self, pid: u32, addr: &[u8; 16]) -> Option<&str> {
        self.at(pid, addr, u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(ts_ns: u64, pid: u32, name: &str, last: u8) -> DnsAnswer {
        DnsAnswer {
            ts_ns,
            pid,
            name: name.into(),
            cnames: Vec::new(),
            addr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, last],
            ttl: 60,
        }
    }

    #[test]
    fn own_lookups_come_first_then_anyones_before_the_connection() {
        let n = RemoteNames::new(&[
            a(10, 1, "shared.test", 1),
            a(20, 2, "mine.test", 1),
            a(30, 1, "later.test", 1),
        ]);
        let addr = a(0, 0, "", 1).addr;
        assert_eq!(n.at(2, &addr, 5), None, "nothing before");
        assert_eq!(n.at(2, &addr, 15), Some("shared.test"));
        assert_eq!(n.at(2, &addr, 40), Some("mine.test"), "its own");
        assert_eq!(n.at(3, &addr, 40), Some("later.test"), "the latest");
        assert_eq!(n.any(1, &addr), Some("later.test"));
        assert_eq!(n.any(1, &a(0, 0, "", 9).addr), None);
    }
}

//! Grouping for `--by KEY`: every flow of the dataset maps to a small integer
//! group id through the key's value (pid, tid, comm, connection 5-tuple,
//! remote address, service port, protocol, interface, cgroup, container or
//! service (from the cgroup's recorded path); remote addresses with a name
//! from the trace's DNS answers group by that name; plus the host
//! when several traces are analysed), and each group gets its key columns.
//! Reports aggregate on the integer ids and join the key columns at the end.
//! The name shown for a process is the latest one seen for its pid, as `ps`
//! shows it ([`names_over_time`]), not the first.

use std::collections::HashMap;

use polars::prelude::Column;
use snoop_format::comm_str;

use crate::cli::Key;
use crate::filter::addr_str;
use crate::frame::{opt_strc, strc, u32c, u64c};
use crate::load::{Dataset, FlowRow, Origin};
use crate::protos::proto_name;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum KeyVal {
    Pid(u32),
    Tid(u32, u32),
    Comm([u8; 16]),
    Conn(u32, u8, [u8; 16], u16, [u8; 16], u16),
    Remote([u8; 16]),
    /// A remote name, interned by [`Groups::new`].
    RemoteName(u32),
    Port(u16),
    Proto(u8),
    Iface(u32),
    Cgroup(u64),
    /// Index into [`Groups::containers`].
    Container(u32),
}

/// The service side of a flow's ports: the lower non-zero one.
pub fn service_port(lport: u16, rport: u16) -> u16 {
    match (lport, rport) {
        (0, r) => r,
        (l, 0) => l,
        (l, r) => l.min(r),
    }
}

fn key_val(key: Key, r: &FlowRow) -> KeyVal {
    let f = &r.flow;
    match key {
        Key::Pid => KeyVal::Pid(f.pid),
        Key::Tid => KeyVal::Tid(f.pid, f.tid),
        Key::Comm => KeyVal::Comm(f.comm),
        Key::Conn => KeyVal::Conn(f.pid, f.proto, f.laddr, f.lport, f.raddr, f.rport),
        Key::Remote => KeyVal::Remote(f.raddr),
        Key::Port => KeyVal::Port(service_port(f.lport, f.rport)),
        Key::Proto => KeyVal::Proto(f.proto),
        Key::Iface => KeyVal::Iface(f.ifindex),
        Key::Cgroup => KeyVal::Cgroup(f.cgroup),
        // Interned by the caller (Groups::new).
        Key::Container => KeyVal::Container(0),
    }
}

/// Flows mapped to groups.
#[derive(Clone, Debug)]
pub struct Groups {
    /// Key.
    pub key: Key,
    /// Group id per global flow (`u32::MAX`: not in any group).
    pub of_flow: Vec<u32>,
    /// A representative flow row per group.
    pub reps: Vec<FlowRow>,
    /// Most active comm per group, with its weight.
    best_comm: Vec<([u8; 16], u64)>,
    /// Whether every flow of the group is an unattributed packet flow.
    unattributed: Vec<bool>,
    multi: bool,
    /// `--by container`: each group's container name.
    containers: Vec<String>,
    /// `--by remote`: each group's name (if known) and addresses.
    remotes: Vec<(Option<String>, Vec<[u8; 16]>)>,
}

impl Groups {
    /// Group the flows of `ds` accepted by `include` by `key`.
    pub fn new(ds: &Dataset, key: Key, include: impl Fn(&FlowRow) -> bool) -> Groups {
        let multi = ds.multi_host();
        let mut index: HashMap<(u16, KeyVal), u32> = HashMap::new();
        let mut g = Groups {
            key,
            of_flow: vec![u32::MAX; ds.flows.len()],
            reps: Vec::new(),
            best_comm: Vec::new(),
            unattributed: Vec::new(),
            multi,
            containers: Vec::new(),
            remotes: Vec::new(),
        };
        let mut cindex: HashMap<String, u32> = HashMap::new();
        let mut rindex: HashMap<String, u32> = HashMap::new();
        for (i, r) in ds.flows.iter().enumerate() {
            if !include(r) {
                continue;
            }
            let mut cname = String::new();
            let mut rname = None;
            let kv = if key == Key::Remote {
                rname = ds.files[r.file as usize]
                    .names
                    .any(r.flow.pid, &r.flow.raddr)
                    .map(str::to_string);
                match &rname {
                    Some(n) => {
                        let next = rindex.len() as u32;
                        KeyVal::RemoteName(*rindex.entry(n.clone()).or_insert(next))
                    }
                    None => key_val(key, r),
                }
            } else if key == Key::Container {
                // "-": not in a container or service, or not named.
                cname = ds.files[r.file as usize]
                    .container(r.flow.cgroup)
                    .unwrap_or_else(|| "-".into());
                let n = cindex.len() as u32;
                KeyVal::Container(*cindex.entry(cname.clone()).or_insert(n))
            } else {
                key_val(key, r)
            };
            let k = (if multi { r.file } else { 0 }, kv);
            let id = *index.entry(k).or_insert_with(|| {
                g.containers.push(cname);
                g.remotes.push((rname, Vec::new()));
                g.reps.push(*r);
                g.best_comm.push(([0; 16], 0));
                g.unattributed.push(true);
                (g.reps.len() - 1) as u32
            });
            g.of_flow[i] = id;
            if key == Key::Remote {
                let addrs = &mut g.remotes[id as usize].1;
                if !addrs.contains(&r.flow.raddr) {
                    addrs.push(r.flow.raddr);
                }
            }
            // The latest name seen: message flows (the calling thread's
            // name at the time) before packet and connection flows (the
            // owner's name when the socket was learned).
            let a = &ds.agg[i];
            let w = (u64::from(is_msg(r)) << 63) | (a.last.min(u64::MAX >> 1) + 1);
            let b = &mut g.best_comm[id as usize];
            if r.flow.pid != 0 && w > b.1 {
                *b = (r.flow.comm, w);
            }
            if !r.origin.is_packet() || r.origin.attributed() {
                g.unattributed[id as usize] = false;
            }
        }
        if matches!(key, Key::Pid | Key::Conn) {
            let names = latest_comms(ds);
            for (id, rep) in g.reps.iter().enumerate() {
                if let Some(c) = names.get(&(rep.file, rep.flow.pid)) {
                    g.best_comm[id].0 = *c;
                }
            }
        }
        g
    }

    /// Number of groups.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.reps.len()
    }

    /// Display comm of group `g`.
    pub fn comm(&self, g: usize) -> String {
        if self.unattributed[g] && self.reps[g].flow.pid == 0 {
            return "[unattributed]".into();
        }
        comm_str(&self.best_comm[g].0)
    }

    /// The key columns, one row per group in group order.
    pub fn columns(&self, ds: &Dataset) -> Vec<Column> {
        let n = self.len();
        let mut cols = Vec::new();
        if self.multi {
            cols.push(strc(
                "host",
                self.reps
                    .iter()
                    .map(|r| ds.files[r.file as usize].host.clone())
                    .collect(),
            ));
        }
        let pid = || u32c("pid", self.reps.iter().map(|r| r.flow.pid).collect());
        let comm = || strc("comm", (0..n).map(|g| self.comm(g)).collect());
        match self.key {
            Key::Pid => cols.extend([pid(), comm()]),
            Key::Tid => cols.extend([
                pid(),
                u32c("tid", self.reps.iter().map(|r| r.flow.tid).collect()),
                comm(),
            ]),
            Key::Comm => cols.push(comm()),
            Key::Conn => {
                cols.extend([pid(), comm()]);
                cols.push(strc(
                    "proto",
                    self.reps
                        .iter()
                        .map(|r| proto_name(r.flow.proto).to_string())
                        .collect(),
                ));
                cols.push(strc(
                    "src",
                    self.reps.iter().map(|r| addr_str(&r.flow.laddr)).collect(),
                ));
                cols.push(u32c(
                    "sport",
                    self.reps.iter().map(|r| r.flow.lport as u32).collect(),
                ));
                cols.push(strc(
                    "dst",
                    self.reps.iter().map(|r| addr_str(&r.flow.raddr)).collect(),
                ));
                cols.push(u32c(
                    "dport",
                    self.reps.iter().map(|r| r.flow.rport as u32).collect(),
                ));
            }
            Key::Remote => {
                cols.push(strc(
                    "remote",
                    self.remotes
                        .iter()
                        .map(|(_, addrs)| {
                            let mut a: Vec<String> = addrs.iter().map(addr_str).collect();
                            a.sort();
                            a.join(",")
                        })
                        .collect(),
                ));
                cols.push(opt_strc(
                    "remote_name",
                    self.remotes.iter().map(|(n, _)| n.clone()).collect(),
                ));
            }
            Key::Port => cols.push(u32c(
                "port",
                self.reps
                    .iter()
                    .map(|r| service_port(r.flow.lport, r.flow.rport) as u32)
                    .collect(),
            )),
            Key::Proto => cols.push(strc(
                "proto",
                self.reps
                    .iter()
                    .map(|r| proto_name(r.flow.proto).to_string())
                    .collect(),
            )),
            Key::Iface => cols.push(strc(
                "iface",
                self.reps
                    .iter()
                    .map(|r| iface_name(ds, r.file, r.flow.ifindex))
                    .collect(),
            )),
            Key::Cgroup => {
                cols.push(u64c(
                    "cgroup",
                    self.reps.iter().map(|r| r.flow.cgroup).collect(),
                ));
                let file = |r: &FlowRow| &ds.files[r.file as usize];
                cols.push(opt_strc(
                    "cgroup_path",
                    self.reps
                        .iter()
                        .map(|r| file(r).cgroup_path(r.flow.cgroup).map(str::to_string))
                        .collect(),
                ));
                cols.push(opt_strc(
                    "container",
                    self.reps
                        .iter()
                        .map(|r| file(r).container(r.flow.cgroup))
                        .collect(),
                ));
            }
            Key::Container => cols.push(strc("container", self.containers.clone())),
        }
        cols
    }
}

/// Interface name of `ifindex` in file `file` (`-` for none, the number if unknown).
pub fn iface_name(ds: &Dataset, file: u16, ifindex: u32) -> String {
    if ifindex == 0 {
        return "-".into();
    }
    ds.files
        .get(file as usize)
        .and_then(|f| f.info.iface_name(ifindex))
        .map(str::to_string)
        .unwrap_or_else(|| format!("if{ifindex}"))
}

/// Whether a flow row counts as application traffic (messages).
pub fn is_msg(r: &FlowRow) -> bool {
    r.origin == Origin::Message
}

/// The names a process had over time, per (file, pid), oldest first, each
/// name once per stretch it was held. A name is seen in the process events
/// (fork, exec, exit) and on the process's message flows (at their first and
/// last message). Threads have names of their own; like `ps`, a process is
/// named after its main thread (tid == pid) when that thread was seen, else
/// after whichever thread was.
pub fn names_over_time(ds: &Dataset) -> HashMap<(u16, u32), Vec<[u8; 16]>> {
    /// (time, seen on the main thread, name).
    type Seen = (u64, bool, [u8; 16]);
    let mut seen: HashMap<(u16, u32), Vec<Seen>> = HashMap::new();
    for e in &ds.procs {
        let r = &e.row;
        if r.pid == 0 || r.comm[0] == 0 {
            continue;
        }
        let main = r.tid == r.pid || r.tid == 0;
        seen.entry((e.file, r.pid))
            .or_default()
            .push((r.ts_ns, main, r.comm));
    }
    for (i, r) in ds.flows.iter().enumerate() {
        let a = &ds.agg[i];
        if !is_msg(r) || a.events() == 0 || r.flow.pid == 0 || r.flow.comm[0] == 0 {
            continue;
        }
        let main = r.flow.tid == r.flow.pid;
        let v = seen.entry((r.file, r.flow.pid)).or_default();
        v.push((a.first, main, r.flow.comm));
        v.push((a.last, main, r.flow.comm));
    }
    seen.into_iter()
        .map(|(k, mut v)| {
            if v.iter().any(|x| x.1) {
                v.retain(|x| x.1);
            }
            v.sort_by_key(|x| x.0);
            let mut names: Vec<[u8; 16]> = Vec::new();
            for (_, _, c) in v {
                if names.last() != Some(&c) {
                    names.push(c);
                }
            }
            (k, names)
        })
        .collect()
}

/// The latest name of every process, per (file, pid) (see [`names_over_time`]).
pub fn latest_comms(ds: &Dataset) -> HashMap<(u16, u32), [u8; 16]> {
    names_over_time(ds)
        .into_iter()
        .filter_map(|(k, v)| v.last().map(|c| (k, *c)))
        .collect()
}

//! Hook groups: the BPF programs grouped by what they give, so that a
//! kernel which refuses one optional program (a verifier that reads a
//! pointer walk more strictly, a missing tracepoint or attach type, no
//! cgroup v2) loses that group only, says so in one line, and writes it
//! into the trace — instead of the whole recording failing at load.
//!
//! `messages` is the essential group: without the `sock_send_length` /
//! `sock_recv_length` tracepoints there is nothing to record, and the
//! recorder stops with one line naming the missing feature and the
//! minimum kernel. Every other group is optional.
//!
//! The verifier's reason is read from libbpf's log (`prog 'NAME': failed
//! to load`, the last line before `processed N insns`), because libbpf's
//! skeleton load reports only an errno for the whole object.

use std::fmt;

/// A group of BPF programs that stands or falls together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// Application-level sends and receives (essential).
    Messages,
    /// cgroup socket hooks: owners at socket creation, unconnected UDP peers,
    /// bound UDP tuples, owner release.
    Sockets,
    /// Wire packets (net_dev_queue / netif_receive_skb).
    Packets,
    /// TCP state changes (inet_sock_set_state).
    TcpState,
    /// Process lifecycle (exec / fork / exit).
    Processes,
    /// Sockets open before recording (iterators).
    ExistingSockets,
    /// Interface capture (`--iface`, socket filter).
    Iface,
    /// Processes running before recording, with their start times (iterator).
    ExistingProcesses,
    /// DNS answers delivered to local sockets: read in the `packets`
    /// group's receive program when that group runs, else by its own
    /// cgroup_skb ingress program (the one listed in [`Group::programs`]).
    Dns,
    /// Messages staged per CPU and written to the ring 16 at a time, with
    /// a flush program user space runs on each CPU so that none waits
    /// long (`snoop record` only).
    MsgBatch,
}

impl Group {
    /// Every group, in the order they are reported.
    pub const ALL: [Group; 10] = [
        Group::Messages,
        Group::Sockets,
        Group::Packets,
        Group::TcpState,
        Group::Processes,
        Group::ExistingSockets,
        Group::Iface,
        Group::ExistingProcesses,
        Group::Dns,
        Group::MsgBatch,
    ];

    /// The group's name in warnings, `snoop info`, `snoop doctor` and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Group::Messages => "messages",
            Group::Sockets => "sockets",
            Group::Packets => "packets",
            Group::TcpState => "tcp_state",
            Group::Processes => "processes",
            Group::ExistingSockets => "existing_sockets",
            Group::Iface => "iface",
            Group::ExistingProcesses => "existing_processes",
            Group::Dns => "dns",
            Group::MsgBatch => "msg_batch",
        }
    }

    /// The group named `name`.
    pub fn from_name(name: &str) -> Option<Group> {
        Group::ALL.into_iter().find(|g| g.name() == name)
    }

    /// What a trace lacks when this group does not run.
    pub fn loses(self) -> &'static str {
        match self {
            Group::Messages => "no sends or receives can be recorded",
            Group::Sockets => {
                "sockets get their owner at their first send or receive instead of at \
                 creation, unconnected UDP messages have no peer address, a UDP server's \
                 packets before its first receive are unattributed, and UDP owners are \
                 not forgotten at close"
            }
            Group::Packets => {
                "no wire packets (wire sizes, packet counts); per-process bytes stay exact"
            }
            Group::TcpState => {
                "no TCP connection lifecycle (open/close times, durations) or outcomes \
                 (status, retransmissions, RTTs)"
            }
            Group::Processes => {
                "no process lifecycle (exec, fork, exit, start times); --comm misses \
                 processes renamed by exec and --follow misses children"
            }
            Group::ExistingSockets => {
                "sockets open before recording get their owner only at their next send \
                 or receive, and their connections are not listed as already open"
            }
            Group::Iface => "no --iface capture",
            Group::ExistingProcesses => {
                "processes running before recording have no start time (lifecycle's \
                 start_ns, first_net_after_ns and conn_after_ns stay empty for them)"
            }
            Group::Dns => {
                "no names for remote addresses from DNS answers (remote_name stays empty)"
            }
            Group::MsgBatch => {
                "messages go to the ring one at a time (about 60 ns more of kernel time \
                 per message); nothing is lost"
            }
        }
    }

    /// The BPF programs of the group (names as in bpf/*.h).
    pub fn programs(self) -> &'static [&'static str] {
        match self {
            Group::Messages => &["snoop_send_length", "snoop_recv_length"],
            Group::Sockets => &[
                "snoop_sock_create",
                "snoop_sock_release",
                "snoop_sendmsg4",
                "snoop_sendmsg6",
                "snoop_recvmsg4",
                "snoop_recvmsg6",
                "snoop_post_bind4",
                "snoop_post_bind6",
            ],
            Group::Packets => &["snoop_dev_queue", "snoop_netif_receive"],
            Group::TcpState => &["snoop_set_state"],
            Group::Processes => &["snoop_exec", "snoop_fork", "snoop_exit"],
            Group::ExistingSockets => &["snoop_iter_task_file", "snoop_iter_tcp", "snoop_iter_udp"],
            Group::Iface => &["snoop_iface_filter"],
            Group::ExistingProcesses => &["snoop_iter_task"],
            Group::Dns => &["snoop_dns_ingress"],
            Group::MsgBatch => &["snoop_msg_flush"],
        }
    }

    /// The group a BPF program belongs to.
    pub fn of_program(prog: &str) -> Option<Group> {
        Group::ALL
            .into_iter()
            .find(|g| g.programs().contains(&prog))
    }

    /// Whether recording can go on without this group.
    pub fn optional(self) -> bool {
        self != Group::Messages
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where one group stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Wanted and not (yet) refused.
    Wanted,
    /// Loaded and attached.
    Active,
    /// Not asked for (e.g. `--no-packets`): why.
    Off(String),
    /// Refused by the kernel: its reason.
    Refused(String),
}

impl State {
    /// The text stored in the trace and shown by `snoop info`: `active`,
    /// `off: WHY` or `refused: REASON`.
    pub fn describe(&self) -> String {
        match self {
            State::Wanted => "not attached".to_string(),
            State::Active => "active".to_string(),
            State::Off(why) => format!("off: {why}"),
            State::Refused(why) => format!("refused: {why}"),
        }
    }
}

/// The state of every group for one recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookPlan {
    states: Vec<(Group, State)>,
}

impl HookPlan {
    /// Every group `Wanted`, except those `off` says are not asked for.
    pub fn new(off: impl Fn(Group) -> Option<String>) -> HookPlan {
        HookPlan {
            states: Group::ALL
                .into_iter()
                .map(|g| (g, off(g).map_or(State::Wanted, State::Off)))
                .collect(),
        }
    }

    /// The state of `g`.
    pub fn state(&self, g: Group) -> &State {
        self.states
            .iter()
            .find(|(x, _)| *x == g)
            .map(|(_, s)| s)
            .unwrap_or(&State::Wanted)
    }

    fn set(&mut self, g: Group, s: State) {
        if let Some(slot) = self.states.iter_mut().find(|(x, _)| *x == g) {
            slot.1 = s;
        }
    }

    /// Is `g` to be loaded (wanted, not refused)?
    pub fn wanted(&self, g: Group) -> bool {
        matches!(self.state(g), State::Wanted | State::Active)
    }

    /// Mark `g` refused by the kernel for `reason`.
    pub fn refuse(&mut self, g: Group, reason: impl Into<String>) {
        self.set(g, State::Refused(reason.into()));
    }

    /// Mark every wanted group active (all attached).
    pub fn activate_wanted(&mut self) {
        for (_, s) in &mut self.states {
            if *s == State::Wanted {
                *s = State::Active;
            }
        }
    }

    /// The groups the kernel refused, with their reasons.
    pub fn refused(&self) -> impl Iterator<Item = (Group, &str)> {
        self.states.iter().filter_map(|(g, s)| match s {
            State::Refused(r) => Some((*g, r.as_str())),
            _ => None,
        })
    }

    /// `(group name, described state)` for every group, as stored in the
    /// trace.
    pub fn describe(&self) -> Vec<(String, String)> {
        self.states
            .iter()
            .map(|(g, s)| (g.name().to_string(), s.describe()))
            .collect()
    }

    /// The one warning line for a refused group.
    pub fn warning(g: Group, reason: &str) -> String {
        format!(
            "snoop: warning: hook group {g} disabled: {} (kernel: {reason})",
            g.loses()
        )
    }
}

/// The minimum kernel and features of the essential group, for the error
/// when it cannot load.
pub const ESSENTIAL_NEEDS: &str = "the sock_send_length/sock_recv_length tracepoints as \
     tp_btf programs (Linux 6.3 or later, with BTF at /sys/kernel/btf/vmlinux)";

/// The program libbpf's log says failed, and the kernel's reason: the
/// verifier's complaint (the last line of its log before the statistics),
/// or libbpf's own line (e.g. a tracepoint missing from the kernel's BTF).
pub fn failed_program(log: &str) -> Option<(String, String)> {
    let lines: Vec<&str> = log.lines().collect();
    // The last "prog 'X': failed to load" (libbpf stops at the first
    // program that fails, so there is one).
    let (idx, prog) = lines.iter().enumerate().rev().find_map(|(i, l)| {
        let rest = l.split("prog '").nth(1)?;
        let (name, tail) = rest.split_once("': ")?;
        (tail.starts_with("failed to load") || tail.starts_with("BPF program load failed"))
            .then(|| (i, name.to_string()))
    })?;
    let prefix = format!("prog '{prog}': ");
    // The verifier's log of that program, if libbpf printed one.
    let end = lines[..idx]
        .iter()
        .rposition(|l| l.contains("-- END PROG LOAD LOG --"));
    let begin = lines[..idx]
        .iter()
        .rposition(|l| l.contains(&prefix) && l.contains("-- BEGIN PROG LOAD LOG --"));
    let complaint = match (begin, end) {
        (Some(b), Some(e)) if b < e => lines[b + 1..e]
            .iter()
            .rev()
            .map(|l| l.trim())
            .find(|l| {
                !l.is_empty()
                    && !l.starts_with("processed ")
                    && !l.starts_with("verification time")
                    && !l.starts_with("stack depth")
                    && !l.starts_with(';')
                    && !is_insn_line(l)
            })
            .map(str::to_string),
        _ => None,
    };
    let generic = |t: &str| {
        t.starts_with("failed to load")
            || t.starts_with("BPF program load failed")
            || t.starts_with("failed to prepare load attributes")
            || t.contains("PROG LOAD LOG")
    };
    let reason = complaint.unwrap_or_else(|| {
        // No verifier log: libbpf's own first explanation for this
        // program (e.g. a tracepoint missing from the kernel's BTF), else
        // its "failed to load" line.
        let tail = |l: &'_ str| -> Option<String> {
            l.split_once(prefix.as_str())
                .map(|(_, t)| t.trim().to_string())
        };
        lines[..idx]
            .iter()
            .filter_map(|l| tail(l))
            .find(|t| !generic(t))
            .or_else(|| tail(lines[idx]))
            .unwrap_or_else(|| "refused".to_string())
    });
    Some((prog, reason))
}

/// `12: (85) call bpf_get_socket_cookie#46` and the like.
fn is_insn_line(l: &str) -> bool {
    let digits = l.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && l[digits..].starts_with(": (")
}

/// Groups forced off by `SNOOP_FORCE_REFUSE=group[,group…]` (a test switch:
/// each named group's programs are made to fail the way a kernel refuses
/// them — a tracepoint that does not exist at load, or a bad descriptor at
/// attach — so the degradation path runs for real).
pub fn forced_refusals() -> Vec<Group> {
    std::env::var("SNOOP_FORCE_REFUSE")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|n| Group::from_name(n.trim()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER_LOG: &str = "\
libbpf: prog 'snoop_iter_task_file': BPF program load failed: Permission denied
libbpf: prog 'snoop_iter_task_file': -- BEGIN PROG LOAD LOG --
7: (79) r1 = *(u64 *)(r0 +24)         ; R0=ptr_socket() R1=untrusted_ptr_sock()
; __u64 cookie = bpf_get_socket_cookie(sk); @ iter.bpf.h:31
12: (85) call bpf_get_socket_cookie#46
R1 type=untrusted_ptr_ expected=sock_common, sock, tcp_sock, xdp_sock, ptr_, trusted_ptr_
processed 13 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 0
-- END PROG LOAD LOG --
libbpf: prog 'snoop_iter_task_file': failed to load: -13
libbpf: failed to load object 'snoop_bpf'
";

    #[test]
    fn the_verifiers_complaint_is_found() {
        let (prog, why) = failed_program(VERIFIER_LOG).unwrap();
        assert_eq!(prog, "snoop_iter_task_file");
        assert_eq!(
            why,
            "R1 type=untrusted_ptr_ expected=sock_common, sock, tcp_sock, xdp_sock, ptr_, trusted_ptr_"
        );
        assert_eq!(Group::of_program(&prog), Some(Group::ExistingSockets));
    }

    #[test]
    fn a_missing_tracepoint_names_libbpfs_reason() {
        let log = "libbpf: prog 'snoop_set_state': failed to find kernel BTF type ID of 'inet_sock_set_state': -3\n\
                   libbpf: prog 'snoop_set_state': failed to prepare load attributes: -3\n\
                   libbpf: prog 'snoop_set_state': failed to load: -3\n";
        let (prog, why) = failed_program(log).unwrap();
        assert_eq!(prog, "snoop_set_state");
        assert_eq!(
            why,
            "failed to find kernel BTF type ID of 'inet_sock_set_state': -3"
        );
    }

    #[test]
    fn no_program_named_means_no_answer() {
        assert_eq!(failed_program("libbpf: failed to load object\n"), None);
    }

    #[test]
    fn every_program_has_one_group() {
        let mut all: Vec<&str> = Group::ALL
            .iter()
            .flat_map(|g| g.programs())
            .copied()
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
        for p in all {
            assert!(Group::of_program(p).is_some());
        }
    }

    #[test]
    fn plan_reports_each_group() {
        let mut plan = HookPlan::new(|g| (g == Group::Iface).then(|| "no --iface".into()));
        plan.refuse(Group::Packets, "R1 invalid");
        plan.activate_wanted();
        let d = plan.describe();
        assert_eq!(d[0], ("messages".into(), "active".into()));
        assert_eq!(d[2], ("packets".into(), "refused: R1 invalid".into()));
        assert_eq!(d[6], ("iface".into(), "off: no --iface".into()));
    }
}

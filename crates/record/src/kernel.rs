//! Loading, configuring and attaching the BPF object, and the ring-buffer
//! [`EventSource`] on top of it.
//!
//! Everything kernel-bound (skeleton, links, ring buffer) lives on the
//! thread that calls [`with_kernel`]: libbpf objects are not `Send`, and
//! keeping them on the drain thread means the drain loop never shares them.

use std::cell::RefCell;
use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Iter, IterOpts, Link, MapCore, MapFlags, RingBuffer, RingBufferBuilder};

use crate::hooks::{Group, HookPlan, ESSENTIAL_NEEDS};
use crate::perm;
use crate::skel::types::{snoop_counter, snoop_msgs, snoop_pktset};
use crate::skel::{kind, read, SnoopSkel, SnoopSkelBuilder};
use crate::source::{Counters, EventSource, KindCounters, Pressure, RawBatch};

/// What to load and how to filter, decided before load.
#[derive(Clone, Debug, Default)]
pub struct KernelOptions {
    /// Record only these processes (tgids) …
    pub pids: Vec<u32>,
    /// … and processes with these comms (now or after a later exec).
    pub comms: Vec<String>,
    /// Children of tracked processes are tracked too.
    pub follow: bool,
    /// cgroup v2 id to restrict to (0 = any).
    pub cgroup: u64,
    /// Port to restrict to (0 = any), local or remote.
    pub port: u16,
    /// IP protocol to restrict to (0 = any, 6, 17).
    pub proto: u8,
    /// Address family to restrict to (0 = any, 2, 10).
    pub family: u8,
    /// Attach net_dev_queue / netif_receive_skb.
    pub packets: bool,
    /// Fold each socket's packets into runs in the kernel (`--packets=runs`)
    /// instead of one record per packet (`each`).
    pub pkt_runs: bool,
    /// Stage messages per CPU and write them to the ring in batches
    /// (`snoop record`; `top` shows each message as it happens).
    pub msg_batch: bool,
    /// Attach TCP state and process lifecycle hooks.
    pub lifecycle: bool,
    /// Learn sockets that existed before start (iterators).
    pub existing: bool,
    /// Attach the DNS answer hook (names for remote addresses).
    pub dns: bool,
    /// Capture every IP packet on these interfaces (socket filter).
    pub ifaces: Vec<String>,
    /// Ring buffer size in bytes (rounded up to a power of two, >= 4 KiB).
    pub ring_bytes: u64,
    /// Entries of the socket-owner and flow maps (0: the default, 262144):
    /// how many sockets the kernel side remembers at once.
    pub owner_entries: u32,
}

/// Bytes of each CPU's ring when `total` is shared by `cpus` rings: a power
/// of two (the kernel's rule), at least one page.
pub fn per_cpu_ring_bytes(total: u64, cpus: usize) -> u64 {
    let each = (total.clamp(4096, 1 << 30) / (cpus.max(1) as u64)).max(4096);
    1 << each.ilog2()
}

/// The records (minus one) between two checks of a ring's fill level: up
/// to 64, and few enough that the records in between (at most 256 bytes
/// each, but for the rare 560-byte DNS records) fill at most a sixteenth
/// of the ring.
pub fn wakeup_check_mask(ring: u64) -> u64 {
    let every = (ring / 16 / 256).clamp(1, 64);
    (1u64 << every.ilog2()) - 1
}

/// Default size of the socket-owner and flow maps.
pub const DEFAULT_OWNER_ENTRIES: u32 = 262_144;

/// The ring-buffer source of a loaded, attached BPF object.
pub struct BpfSource<'a, 'obj> {
    rb: RingBuffer<'a>,
    pending: Rc<RefCell<RawBatch>>,
    skel: &'a SnoopSkel<'obj>,
    links: Option<Attached>,
    hooks: Vec<(String, String)>,
    /// Packets asked for, and folded into runs.
    packets: bool,
    pkt_runs: bool,
    /// Runs read out of the kernel's slots at the end (not through a ring).
    runs_at_stop: u64,
    /// Staged messages read out of the kernel at the end.
    msgs_at_stop: u64,
    /// With messages staged: the CPUs to run the flush program on.
    flush: Option<usize>,
    last_flush: std::time::Instant,
}

impl EventSource for BpfSource<'_, '_> {
    fn poll(&mut self, timeout: Duration, out: &mut RawBatch, max: usize) -> Result<()> {
        if !timeout.is_zero() {
            // Wait for a ring to become readable without consuming it
            // (libbpf's poll would consume every ring to the end).
            let mut ev = libc::epoll_event { events: 0, u64: 0 };
            let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
            // SAFETY: epoll_fd is the ring buffer's live epoll instance and
            // ev is one writable epoll_event.
            let rc = unsafe { libc::epoll_wait(self.rb.epoll_fd(), &mut ev, 1, ms) };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                // EINTR (a signal) is not an error: the caller checks its flags.
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e).context("ring buffer wait");
                }
            }
        }
        // A CPU that went quiet gives up its staged messages now.
        if let Some(cpus) = self.flush {
            if self.last_flush.elapsed() >= FLUSH_EVERY {
                self.last_flush = std::time::Instant::now();
                // A CPU gone offline cannot run it; its batch is read out
                // at the end.
                let _ = flush_staged(self.skel, cpus);
            }
        }
        // Producers submit with BPF_RB_NO_WAKEUP, so the wait may time out
        // while records wait: always consume after it.
        let n = self.rb.consume_raw_n(max.max(1));
        if n < 0 {
            return Err(std::io::Error::from_raw_os_error(-n)).context("ring buffer consume");
        }
        let mut p = self.pending.borrow_mut();
        if !p.is_empty() {
            if out.is_empty() {
                std::mem::swap(out, &mut *p);
            } else {
                for r in p.iter() {
                    out.push(r);
                }
                p.clear();
            }
        }
        Ok(())
    }

    fn counters(&mut self) -> Result<Counters> {
        // The runs read out at the end never went through a ring: count
        // them with the packet records the kernel wrote, so the trace's
        // packet count and its stats agree.
        let mut c = read_counters(self.skel)?;
        let pkt = &mut c[kind::PKT as usize].events;
        *pkt = pkt.saturating_add(self.runs_at_stop);
        let msg = &mut c[kind::MSG as usize].events;
        *msg = msg.saturating_add(self.msgs_at_stop);
        Ok(c)
    }

    fn detach(&mut self) {
        // Dropping the links detaches every program: no record is emitted
        // after this, so the drain that follows reaches the true end.
        self.links = None;
        // Runs still open in the kernel go out with the last drain: none
        // outlives the recording.
        match take_open_runs(self.skel, &mut self.pending.borrow_mut()) {
            Ok(n) => self.runs_at_stop = n,
            Err(e) => {
                eprintln!("snoop: warning: packet runs still open at the end were lost: {e:#}")
            }
        }
        // So do messages still staged on a CPU that went quiet.
        match take_staged_msgs(self.skel, &mut self.pending.borrow_mut()) {
            Ok(n) => self.msgs_at_stop = n,
            Err(e) => {
                eprintln!("snoop: warning: messages still staged at the end were lost: {e:#}")
            }
        }
    }

    fn hooks(&self) -> Vec<(String, String)> {
        self.hooks.clone()
    }

    fn settings(&self) -> Vec<(String, String)> {
        let mode = match (self.packets, self.pkt_runs) {
            (false, _) => "off",
            (true, true) => "runs",
            (true, false) => "each",
        };
        vec![(snoop_format::PACKET_MODE.to_string(), mode.to_string())]
    }

    fn pressure(&mut self) -> Result<Pressure> {
        let mut out = [0u64; 2];
        for (k, slot) in out.iter_mut().enumerate() {
            let key = (k as u32).to_ne_bytes();
            let per_cpu = self
                .skel
                .maps
                .snoop_pressure
                .lookup_percpu(&key, MapFlags::ANY)
                .context("read snoop_pressure")?
                .unwrap_or_default();
            for v in per_cpu {
                if let Some(b) = v.first_chunk::<8>() {
                    *slot += u64::from_ne_bytes(*b);
                }
            }
        }
        Ok(Pressure {
            owner_map_full: out[0],
            tracked_full: out[1],
        })
    }
}

/// Append the packet sets still open in the kernel (every CPU's slots of
/// `snoop_runs`, read after the programs are detached) to `out` as
/// records, and empty their slots; returns how many runs they hold.
fn take_open_runs(skel: &SnoopSkel<'_>, out: &mut RawBatch) -> Result<u64> {
    let mut taken = 0;
    let slots = skel.maps.snoop_runs.max_entries();
    for i in 0..slots {
        let key = i.to_ne_bytes();
        let per_cpu = skel
            .maps
            .snoop_runs
            .lookup_percpu(&key, MapFlags::ANY)
            .context("read snoop_runs")?
            .unwrap_or_default();
        let mut any = false;
        for v in &per_cpu {
            if let Some(p) = read::<snoop_pktset>(v) {
                if p.n > 0 && p.kind == kind::PKTSET {
                    out.push(&v[..size_of::<snoop_pktset>()]);
                    taken += u64::from(p.n);
                    any = true;
                }
            }
        }
        if any {
            let empty: Vec<Vec<u8>> = per_cpu.iter().map(|v| vec![0u8; v.len()]).collect();
            skel.maps
                .snoop_runs
                .update_percpu(&key, &empty, MapFlags::ANY)
                .context("empty snoop_runs")?;
        }
    }
    Ok(taken)
}

/// How often a CPU's staged messages are flushed at the latest: a message
/// waits at most this long (plus a poll) before the recorder sees it, so
/// its cgroup (named once a second) still exists.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Run the flush program on every online CPU (`BPF_F_TEST_RUN_ON_CPU`):
/// each sends its staged messages to its ring. An offline CPU runs no
/// programs, so it stages nothing new (what it held is read out at stop).
/// Fails on the first CPU that cannot run it.
fn flush_staged(skel: &SnoopSkel<'_>, cpus: usize) -> Result<()> {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| cpu_list(&s))
        .unwrap_or_else(|| (0..cpus as u32).collect());
    for cpu in online.into_iter().filter(|&c| (c as usize) < cpus) {
        let input = libbpf_rs::ProgramInput {
            cpu,
            flags: libbpf_rs::libbpf_sys::BPF_F_TEST_RUN_ON_CPU,
            ..Default::default()
        };
        skel.progs
            .snoop_msg_flush
            .test_run(input)
            .with_context(|| format!("run snoop_msg_flush on CPU {cpu}"))?;
    }
    Ok(())
}

/// The CPUs of a kernel CPU list such as `0-3,6,8-9`; `None` if malformed.
fn cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
        if a > b || b - a > 65536 {
            return None;
        }
        out.extend(a..=b);
    }
    Some(out)
}

/// Append the messages still staged in the kernel (every CPU's batch in
/// `snoop_msg_stage`, read after the programs are detached) to `out`, and
/// empty the batches; returns how many messages they held.
fn take_staged_msgs(skel: &SnoopSkel<'_>, out: &mut RawBatch) -> Result<u64> {
    let key = 0u32.to_ne_bytes();
    let per_cpu = skel
        .maps
        .snoop_msg_stage
        .lookup_percpu(&key, MapFlags::ANY)
        .context("read snoop_msg_stage")?
        .unwrap_or_default();
    let mut taken = 0u64;
    for v in &per_cpu {
        let Some(b) = read::<snoop_msgs>(v) else {
            continue;
        };
        if b.n == 0 {
            continue;
        }
        // The stage's kind byte is only set when a batch goes out.
        let mut rec = v[..size_of::<snoop_msgs>()].to_vec();
        rec[0] = kind::MSGS;
        taken += out.push_ring_record(&rec) as u64;
    }
    if taken > 0 {
        let empty: Vec<Vec<u8>> = per_cpu.iter().map(|v| vec![0u8; v.len()]).collect();
        skel.maps
            .snoop_msg_stage
            .update_percpu(&key, &empty, MapFlags::ANY)
            .context("empty snoop_msg_stage")?;
    }
    Ok(taken)
}

fn read_counters(skel: &SnoopSkel<'_>) -> Result<Counters> {
    let mut out = Counters::default();
    for (k, slot) in out.iter_mut().enumerate() {
        let key = (k as u32).to_ne_bytes();
        let per_cpu = skel
            .maps
            .snoop_counters
            .lookup_percpu(&key, MapFlags::ANY)
            .context("read snoop_counters")?
            .unwrap_or_default();
        for v in per_cpu {
            if let Some(c) = read::<snoop_counter>(&v) {
                slot.events += c.events;
                slot.drops += c.drops;
            }
        }
    }
    Ok(out)
}

/// Where cgroup v2 is mounted, from /proc/mounts.
pub fn cgroup2_root() -> Result<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("read /proc/mounts")?;
    cgroup2_in(&mounts)
}

/// The first cgroup2 mount point in a /proc/mounts text.
fn cgroup2_in(mounts: &str) -> Result<String> {
    mounts
        .lines()
        .find_map(|line| {
            let mut f = line.split_whitespace();
            let (_dev, dir, ty) = (f.next(), f.next(), f.next());
            (ty == Some("cgroup2"))
                .then(|| dir.map(str::to_string))
                .flatten()
        })
        .context("cgroup v2 not mounted (looked for a cgroup2 entry in /proc/mounts)")
}

/// The cgroup v2 id of a cgroup directory (its inode number).
pub fn cgroup_id(path: &str) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let p = if path.starts_with('/') && std::path::Path::new(path).exists() {
        path.to_string()
    } else {
        format!("{}/{}", cgroup2_root()?, path.trim_start_matches('/'))
    };
    let md = std::fs::metadata(&p).with_context(|| format!("cgroup {p}"))?;
    if !md.is_dir() {
        bail!("cgroup {p} is not a directory");
    }
    Ok(md.ino())
}

/// Which hook groups `opts` asks for; the others are off, with why.
pub fn plan_for(opts: &KernelOptions) -> HookPlan {
    HookPlan::new(|g| match g {
        Group::Messages | Group::Sockets => None,
        Group::Packets => (!opts.packets).then(|| "not requested (--packets=off)".into()),
        Group::TcpState => (!opts.lifecycle).then(|| "not requested".into()),
        Group::Processes | Group::ExistingProcesses => {
            (!(opts.lifecycle || !opts.comms.is_empty() || opts.follow))
                .then(|| "not requested".into())
        }
        Group::ExistingSockets => (!opts.existing).then(|| "not requested".into()),
        Group::Iface => opts
            .ifaces
            .is_empty()
            .then(|| "not requested (no --iface)".into()),
        Group::Dns => (!opts.dns).then(|| "not requested (--no-dns)".into()),
        Group::MsgBatch => (!opts.msg_batch).then(|| "not requested (live view)".into()),
    })
}

/// How many times loading may start over after a group was refused: once
/// per optional group, once for DNS moving out of the packets group's
/// receive program, plus the first try.
const LOAD_ATTEMPTS: usize = Group::ALL.len() + 2;

/// Where the `dns` group reads DNS answers in one load attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DnsHook {
    /// Not at all (the group is off or refused).
    None,
    /// In the packets group's receive program (`tp_btf/netif_receive_skb`),
    /// which runs per received packet anyway: other packets pay one port
    /// compare.
    Packets,
    /// In its own `cgroup_skb/ingress` program on the cgroup v2 root, which
    /// runs for every packet a local socket receives.
    CgroupSkb,
}

impl DnsHook {
    /// The place for `plan`: the packets group's receive program when that
    /// group is wanted and has not refused the DNS part (`in_packets_ok`).
    fn for_plan(plan: &HookPlan, in_packets_ok: bool) -> DnsHook {
        if !plan.wanted(Group::Dns) {
            DnsHook::None
        } else if in_packets_ok && plan.wanted(Group::Packets) {
            DnsHook::Packets
        } else {
            DnsHook::CgroupSkb
        }
    }
}

/// Load and attach everything `opts` asks for, then run `body` with the
/// ring-buffer source. A hook group the kernel refuses (at load or attach)
/// is left out with a warning and the rest loads again without it; only
/// the essential `messages` group failing stops recording. `on_ready` is
/// called once every program is attached and pre-existing sockets are
/// learned. Links detach when the source's [`EventSource::detach`] is
/// called (the drain loop does, before its last drain) or when this returns.
pub fn with_kernel<R>(
    opts: &KernelOptions,
    body: impl FnOnce(&mut dyn EventSource) -> Result<R>,
) -> Result<R> {
    load_and_attach(opts, true, body)
}

/// Load and attach as `record` would (warnings silenced), and report each
/// hook group's state (`snoop doctor`). Errors when the essential group
/// cannot load.
pub fn probe_hooks(opts: &KernelOptions) -> Result<Vec<(String, String)>> {
    load_and_attach(opts, false, |src| Ok(src.hooks()))
}

fn load_and_attach<R>(
    opts: &KernelOptions,
    warn: bool,
    body: impl FnOnce(&mut dyn EventSource) -> Result<R>,
) -> Result<R> {
    check_btf()?;
    perm::capture_libbpf_log();
    let cpus = libbpf_rs::num_possible_cpus().context("count possible CPUs")?;
    let ring = per_cpu_ring_bytes(opts.ring_bytes, cpus);
    let forced = crate::hooks::forced_refusals();
    let mut plan = plan_for(opts);
    // Cleared when the verifier refuses the receive program with the DNS
    // part in it: DNS then moves to its own program, and packets load
    // again without it (neither group is lost for that).
    let mut dns_in_packets_ok = true;
    // The staging path refused with the message programs: said once they
    // load without it.
    let mut batch_refused: Option<String> = None;
    let mut storages: [MaybeUninit<libbpf_rs::OpenObject>; LOAD_ATTEMPTS] =
        std::array::from_fn(|_| MaybeUninit::uninit());
    for storage in storages.iter_mut() {
        perm::discard_libbpf_log();
        // Fresh rings for every attempt: records of an attempt given up
        // (emitted by groups attached before another group's attach
        // failed, and counted in that attempt's counters) leave with it.
        let rings = create_rings(cpus, ring)?;
        let dns = DnsHook::for_plan(&plan, dns_in_packets_ok);
        let open = open_configured(storage, opts, &plan, dns, &forced, &rings, ring)?;
        let skel = match open.load() {
            Ok(skel) => skel,
            Err(e) => {
                let log = perm::take_libbpf_log();
                // A program the verifier refused is named in libbpf's log
                // (EACCES too, so check that first); privileges are to
                // blame only when a capability is missing.
                let Some((prog, reason)) = crate::hooks::failed_program(&log) else {
                    if e.kind() == libbpf_rs::ErrorKind::PermissionDenied
                        && perm::lacks_privileges()
                    {
                        return Err(perm::map_bpf_error(e)).context("load BPF programs");
                    }
                    eprint!("{log}");
                    return Err(anyhow::Error::new(e)).context("load BPF programs (verifier)");
                };
                if prog == "snoop_netif_receive" && dns == DnsHook::Packets {
                    dns_in_packets_ok = false;
                    continue;
                }
                // The message programs with their staging path refused:
                // record messages one at a time instead (the staging path
                // is gone from them when msg_batch is off). Quietly: if the
                // kernel refuses them without it too, the one line to print
                // is that messages cannot be recorded.
                if Group::of_program(&prog) == Some(Group::Messages) && plan.wanted(Group::MsgBatch)
                {
                    refuse(&mut plan, Group::MsgBatch, &reason, false);
                    batch_refused = Some(reason);
                    continue;
                }
                match Group::of_program(&prog) {
                    Some(g) if g.optional() => {
                        refuse(&mut plan, g, &reason, warn);
                        continue;
                    }
                    Some(_) => bail!(
                        "this kernel cannot record messages: it refused BPF program {prog} \
                         ({reason}); snoop record needs {ESSENTIAL_NEEDS} (run `snoop doctor`)"
                    ),
                    None => bail!("the kernel refused BPF program {prog}: {reason}"),
                }
            }
        };
        perm::discard_libbpf_log();
        if let (Some(reason), true) = (batch_refused.take(), warn) {
            eprintln!("{}", HookPlan::warning(Group::MsgBatch, &reason));
        }
        if !plan.wanted(Group::Iface) {
            // Refused at load: a mistyped --iface is still the user's error.
            for name in &opts.ifaces {
                ifindex_of(name)?;
            }
        }
        fill_maps(&skel, opts, &rings)?;
        let links = match attach_groups(&skel, opts, &plan, dns, &forced) {
            Ok(l) => l,
            Err(AttachFail::Fatal(e)) => return Err(e),
            Err(AttachFail::Refused(g, reason)) if g.optional() => {
                refuse(&mut plan, g, &reason, warn);
                continue;
            }
            Err(AttachFail::Refused(_, reason)) => bail!(
                "this kernel cannot record messages: attaching failed ({reason}); snoop \
                 record needs {ESSENTIAL_NEEDS} (run `snoop doctor`)"
            ),
        };
        if plan.wanted(Group::ExistingSockets) {
            if let Err(reason) = run_iterators(&skel) {
                refuse(&mut plan, Group::ExistingSockets, &reason, warn);
            }
        }
        if plan.wanted(Group::ExistingProcesses) {
            let r = run_iter(&skel.progs.snoop_iter_task, "iter/task");
            if let Err(e) = r {
                refuse(&mut plan, Group::ExistingProcesses, &format!("{e:#}"), warn);
            }
        }
        // The flush must run on every CPU, or a quiet CPU's messages
        // would wait until the end: a kernel that cannot do that records
        // them one at a time.
        if plan.wanted(Group::MsgBatch) {
            if let Err(e) = flush_staged(&skel, cpus) {
                refuse(&mut plan, Group::MsgBatch, &format!("{e:#}"), warn);
                continue;
            }
        }
        plan.activate_wanted();

        let pending = Rc::new(RefCell::new(RawBatch::default()));
        let mut builder = RingBufferBuilder::new();
        for r in &rings {
            let sink = Rc::clone(&pending);
            builder
                .add(r, move |rec: &[u8]| {
                    sink.borrow_mut().push_ring_record(rec);
                    0
                })
                .context("ring buffer")?;
        }
        let rb = builder.build().context("ring buffer")?;
        let mut src = BpfSource {
            rb,
            pending,
            skel: &skel,
            links: Some(links),
            hooks: plan.describe(),
            packets: opts.packets,
            pkt_runs: opts.pkt_runs,
            runs_at_stop: 0,
            msgs_at_stop: 0,
            flush: plan.wanted(Group::MsgBatch).then_some(cpus),
            last_flush: std::time::Instant::now(),
        };
        return body(&mut src);
    }
    bail!("could not load the BPF programs after {LOAD_ATTEMPTS} attempts")
}

/// One ring buffer per CPU, `ring` bytes each.
fn create_rings(cpus: usize, ring: u64) -> Result<Vec<libbpf_rs::MapHandle>> {
    (0..cpus)
        .map(|cpu| {
            libbpf_rs::MapHandle::create(
                libbpf_rs::MapType::RingBuf,
                Some(format!("snoop_ring{cpu}")),
                0,
                0,
                ring as u32,
                &libbpf_rs::libbpf_sys::bpf_map_create_opts {
                    sz: size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
                    ..Default::default()
                },
            )
            .map_err(perm::map_bpf_error)
            .with_context(|| format!("create the ring buffer of CPU {cpu} ({ring} bytes)"))
        })
        .collect()
}

/// Note a refused group and warn, once.
fn refuse(plan: &mut HookPlan, g: Group, reason: &str, warn: bool) {
    if warn {
        eprintln!("{}", HookPlan::warning(g, reason));
    }
    plan.refuse(g, reason);
}

/// A kernel without BTF cannot load any tp_btf program: say so plainly.
fn check_btf() -> Result<()> {
    if std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Ok(());
    }
    bail!(
        "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing; it needs \
         CONFIG_DEBUG_INFO_BTF=y): snoop record needs {ESSENTIAL_NEEDS}"
    )
}

/// Open the BPF object into `storage` and set everything fixed before load:
/// the filters, the ring template and the ring count (one of `rings` per
/// CPU), map sizes, and which programs load.
fn open_configured<'obj>(
    storage: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
    opts: &KernelOptions,
    plan: &HookPlan,
    dns: DnsHook,
    forced: &[Group],
    rings: &[libbpf_rs::MapHandle],
    ring: u64,
) -> Result<crate::skel::OpenSnoopSkel<'obj>> {
    let mut open = SnoopSkelBuilder::default()
        .open(storage)
        .map_err(perm::map_bpf_error)
        .context("open BPF object")?;

    let Some(ro) = open.maps.rodata_data.as_deref_mut() else {
        bail!("BPF object has no rodata map (libbpf could not mmap it)");
    };
    let cfg = &mut ro.snoop_cfg;
    cfg.filter_pid = u8::from(!opts.pids.is_empty());
    cfg.filter_comm = u8::from(!opts.comms.is_empty());
    cfg.follow = u8::from(opts.follow);
    cfg.capture_pkts = u8::from(plan.wanted(Group::Packets));
    cfg.family = opts.family;
    cfg.proto = opts.proto;
    cfg.port = opts.port;
    cfg.cgroup = opts.cgroup;
    cfg.pkt_runs = u8::from(opts.pkt_runs);
    cfg.dns_pkts = u8::from(dns == DnsHook::Packets);
    cfg.msg_batch = u8::from(plan.wanted(Group::MsgBatch));
    // Wake the reader early when a quarter of a ring is full, so a burst
    // between two timed polls cannot overflow it.
    ro.snoop_wakeup_bytes = ring / 4;
    ro.snoop_wakeup_mask = wakeup_check_mask(ring);
    ro.snoop_tcp_flows_learned = u8::from(plan.wanted(Group::TcpState));
    if let Some(first) = rings.first() {
        open.maps
            .snoop_rings
            .set_inner_map_fd(first.as_fd())
            .context("ring buffer template")?;
    }
    open.maps
        .snoop_rings
        .set_max_entries(rings.len() as u32)
        .context("set ring count")?;
    let owners = match opts.owner_entries {
        0 => DEFAULT_OWNER_ENTRIES,
        n => n.max(64),
    };
    for m in [
        &mut open.maps.snoop_owners,
        &mut open.maps.snoop_flows,
        &mut open.maps.snoop_iter_owners,
    ] {
        m.set_max_entries(owners).context("set owner map size")?;
    }
    for mut prog in open.open_object_mut().progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        let Some(g) = Group::of_program(&name) else {
            continue;
        };
        // The dns group's own program loads only when DNS is not read in
        // the packets group's receive program.
        let wanted = plan.wanted(g) && (g != Group::Dns || dns == DnsHook::CgroupSkb);
        prog.set_autoload(wanted);
        // Forced refusals of tracing programs fail at load, as a kernel
        // without the tracepoint would; the others fail at attach. DNS in
        // the receive program is refused there, as a verifier that does not
        // take the skb dynptr would: the retry moves it to cgroup_skb,
        // where it is refused at attach.
        let tracing = !matches!(g, Group::Sockets | Group::Iface | Group::Dns);
        let dns_refused_here = dns == DnsHook::Packets
            && forced.contains(&Group::Dns)
            && name == "snoop_netif_receive";
        if wanted && ((tracing && forced.contains(&g)) || dns_refused_here) {
            // Loaded as a socket filter, its context reads are out of
            // bounds: the verifier refuses it, as a stricter kernel would.
            prog.set_prog_type(libbpf_rs::ProgramType::SocketFilter);
        }
    }
    Ok(open)
}

/// Put the rings in the outer map and the selected processes and names in
/// theirs.
fn fill_maps(
    skel: &SnoopSkel<'_>,
    opts: &KernelOptions,
    rings: &[libbpf_rs::MapHandle],
) -> Result<()> {
    for (cpu, r) in rings.iter().enumerate() {
        let fd = r.as_fd().as_raw_fd() as u32;
        skel.maps
            .snoop_rings
            .update(
                &(cpu as u32).to_ne_bytes(),
                &fd.to_ne_bytes(),
                MapFlags::ANY,
            )
            .with_context(|| format!("install the ring buffer of CPU {cpu}"))?;
    }
    for pid in opts
        .pids
        .iter()
        .copied()
        .chain(existing_with_comm(&opts.comms))
    {
        skel.maps
            .snoop_tracked
            .update(&pid.to_ne_bytes(), &[1u8], MapFlags::ANY)
            .with_context(|| format!("track pid {pid}"))?;
    }
    for c in &opts.comms {
        let key = snoop_format::comm_bytes(c);
        skel.maps
            .snoop_comms
            .update(&key, &[1u8], MapFlags::ANY)
            .with_context(|| format!("track comm {c}"))?;
    }
    Ok(())
}

/// What stays attached while recording: links and interface sockets.
pub(crate) struct Attached {
    _links: Vec<Link>,
    _iface_socks: Vec<OwnedFd>,
}

/// Why attaching stopped.
enum AttachFail {
    /// The kernel refused a group: which, and its reason.
    Refused(Group, String),
    /// The user's request cannot be met (e.g. `--iface` names no
    /// interface): no group to leave out, recording stops.
    Fatal(anyhow::Error),
}

impl From<(Group, String)> for AttachFail {
    fn from((g, why): (Group, String)) -> AttachFail {
        AttachFail::Refused(g, why)
    }
}

/// Attach every wanted group's programs. On failure: the group whose
/// attach failed and the kernel's reason (everything attached so far is
/// detached again when the links drop).
fn attach_groups(
    skel: &SnoopSkel<'_>,
    opts: &KernelOptions,
    plan: &HookPlan,
    dns: DnsHook,
    forced: &[Group],
) -> std::result::Result<Attached, AttachFail> {
    let mut links: Vec<Link> = Vec::new();
    let p = &skel.progs;
    let why = |e: anyhow::Error| format!("{e:#}");
    let mut tp = |g: Group,
                  progs: &[(&libbpf_rs::ProgramMut<'_>, &str)]|
     -> std::result::Result<(), (Group, String)> {
        if !plan.wanted(g) {
            return Ok(());
        }
        for (prog, name) in progs {
            let l = prog
                .attach()
                .map_err(perm::map_bpf_error_quiet)
                .with_context(|| format!("attach {name}"))
                .map_err(|e| (g, why(e)))?;
            links.push(l);
        }
        Ok(())
    };
    // Process tracking first, so a process exec'd during start-up is seen.
    tp(
        Group::Processes,
        &[
            (&p.snoop_exec, "tp_btf/sched_process_exec"),
            (&p.snoop_fork, "tp_btf/sched_process_fork"),
            (&p.snoop_exit, "tp_btf/sched_process_exit"),
        ],
    )?;
    tp(
        Group::Messages,
        &[
            (&p.snoop_send_length, "tp_btf/sock_send_length"),
            (&p.snoop_recv_length, "tp_btf/sock_recv_length"),
        ],
    )?;
    tp(
        Group::TcpState,
        &[(&p.snoop_set_state, "tp_btf/inet_sock_set_state")],
    )?;
    tp(
        Group::Packets,
        &[
            (&p.snoop_dev_queue, "tp_btf/net_dev_queue"),
            (&p.snoop_netif_receive, "tp_btf/netif_receive_skb"),
        ],
    )?;
    // Programs on the cgroup v2 root (a refused attach is the group's).
    let mut cg = |g: Group,
                  progs: &[(&libbpf_rs::ProgramMut<'_>, &str)]|
     -> std::result::Result<(), (Group, String)> {
        if !plan.wanted(g) {
            return Ok(());
        }
        let cg_path = cgroup2_root().map_err(|e| (g, why(e)))?;
        let cg = File::open(&cg_path)
            .map_err(|e| perm::map_io_error(e, "open the cgroup v2 root", false))
            .with_context(|| format!("open cgroup v2 root {cg_path}"))
            .map_err(|e| (g, why(e)))?;
        let fd = if forced.contains(&g) {
            -1
        } else {
            cg.as_raw_fd()
        };
        for (prog, name) in progs {
            let l = prog
                .attach_cgroup(fd)
                .map_err(perm::map_bpf_error_quiet)
                .with_context(|| format!("attach {name} to {cg_path}"))
                .map_err(|e| (g, why(e)))?;
            links.push(l);
        }
        Ok(())
    };
    cg(
        Group::Sockets,
        &[
            (&p.snoop_sock_create, "cgroup/sock_create"),
            (&p.snoop_sock_release, "cgroup/sock_release"),
            (&p.snoop_sendmsg4, "cgroup/sendmsg4"),
            (&p.snoop_sendmsg6, "cgroup/sendmsg6"),
            (&p.snoop_recvmsg4, "cgroup/recvmsg4"),
            (&p.snoop_recvmsg6, "cgroup/recvmsg6"),
            (&p.snoop_post_bind4, "cgroup/post_bind4"),
            (&p.snoop_post_bind6, "cgroup/post_bind6"),
        ],
    )?;
    if dns == DnsHook::CgroupSkb {
        cg(Group::Dns, &[(&p.snoop_dns_ingress, "cgroup_skb/ingress")])?;
    }
    let mut iface_socks = Vec::new();
    if plan.wanted(Group::Iface) {
        let fd = if forced.contains(&Group::Iface) {
            -1
        } else {
            p.snoop_iface_filter.as_fd().as_raw_fd()
        };
        for name in &opts.ifaces {
            // A name that is no interface is the user's mistake, not the
            // kernel's refusal.
            let ifindex = ifindex_of(name).map_err(AttachFail::Fatal)?;
            iface_socks.push(iface_socket(name, ifindex, fd).map_err(|e| (Group::Iface, why(e)))?);
        }
    }
    Ok(Attached {
        _links: links,
        _iface_socks: iface_socks,
    })
}

/// Run the pre-existing-socket iterators: task_file parks owners by socket
/// inode, tcp and udp move them to the cookie map (and tcp emits the
/// connections already open); then the parked owners are let go. The
/// first failure is the group's reason, naming what ran before it.
fn run_iterators(skel: &SnoopSkel<'_>) -> std::result::Result<(), String> {
    let p = &skel.progs;
    let mut ran: Vec<&str> = Vec::new();
    for (prog, name) in [
        (&p.snoop_iter_task_file, "iter/task_file"),
        (&p.snoop_iter_tcp, "iter/tcp"),
        (&p.snoop_iter_udp, "iter/udp"),
    ] {
        if let Err(e) = run_iter(prog, name) {
            let before = if ran.is_empty() {
                String::new()
            } else {
                format!(" ({} ran)", ran.join(", "))
            };
            return Err(format!("{e:#}{before}"));
        }
        ran.push(name);
    }
    // Only the iterators read the parked owners: free the memory.
    let parked = &skel.maps.snoop_iter_owners;
    let keys: Vec<Vec<u8>> = parked.keys().collect();
    for k in keys {
        let _ = parked.delete(&k);
    }
    Ok(())
}

/// Processes alive now whose comm is one of `comms` (so --comm also covers
/// processes that started before recording, for the hooks that see no
/// current task of theirs, like connection records from iter/tcp).
fn existing_with_comm(comms: &[String]) -> Vec<u32> {
    if comms.is_empty() {
        return Vec::new();
    }
    let want: Vec<[u8; 16]> = comms.iter().map(|c| snoop_format::comm_bytes(c)).collect();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| want.contains(&snoop_format::comm_bytes(c.trim_end_matches('\n'))))
                .unwrap_or(false)
        })
        .collect()
}

/// Run an iterator program to completion (its work is map updates and
/// ring-buffer records; its text output is empty).
fn run_iter(prog: &libbpf_rs::ProgramMut<'_>, name: &str) -> Result<()> {
    let link = prog
        .attach_iter_with_opts(IterOpts::None)
        .map_err(perm::map_bpf_error)
        .with_context(|| format!("attach {name}"))?;
    let mut it = Iter::new(&link).with_context(|| format!("create {name}"))?;
    let mut buf = Vec::new();
    it.read_to_end(&mut buf)
        .with_context(|| format!("run {name}"))?;
    Ok(())
}

/// The index of interface `name`.
fn ifindex_of(name: &str) -> Result<u32> {
    let cname = CString::new(name).with_context(|| format!("interface name {name:?}"))?;
    // SAFETY: cname is a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        bail!("no such interface: {name}");
    }
    Ok(ifindex)
}

/// An AF_PACKET raw socket bound to `name` with the interface filter
/// attached (the filter drops every packet after recording it).
fn iface_socket(name: &str, ifindex: u32, prog_fd: i32) -> Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            proto.into(),
        )
    };
    if fd < 0 {
        let what = format!("open a raw packet socket for --iface {name}");
        return Err(perm::map_io_error(
            std::io::Error::last_os_error(),
            &what,
            true,
        ))
        .with_context(|| format!("AF_PACKET socket for {name}"));
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: prog_fd is an int living on the stack for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_BPF,
            (&prog_fd as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("attach socket filter on {name}"));
    }
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a properly initialised sockaddr_ll of the given size.
    let rc = unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("bind AF_PACKET socket to {name}"));
    }
    Ok(sock)
}

/// Sum of kernel counters for one kind (helper for summaries).
pub fn total(c: &Counters, k: u8) -> KindCounters {
    c.get(k as usize).copied().unwrap_or_default()
}

const _: () = assert!(kind::COUNT == 5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_as_the_kernel_writes_them() {
        assert_eq!(cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(cpu_list("0,2-4,7"), Some(vec![0, 2, 3, 4, 7]));
        assert_eq!(cpu_list("3"), Some(vec![3]));
        assert_eq!(cpu_list(""), Some(vec![]));
        for bad in ["x", "2-1", "0-", "1,,a", "0-9999999"] {
            assert_eq!(cpu_list(bad), None, "{bad}");
        }
    }

    /// Every program in the BPF object belongs to a hook group (a program
    /// in none would never be attached, and its refusal would be blamed on
    /// the wrong group). Opening the object needs no privilege.
    #[test]
    fn every_bpf_program_has_a_group() {
        let mut storage = MaybeUninit::uninit();
        let open = SnoopSkelBuilder::default()
            .open(&mut storage)
            .expect("open the BPF object");
        let names: Vec<String> = open
            .open_object()
            .progs()
            .map(|p| p.name().to_string_lossy().into_owned())
            .collect();
        assert!(names.len() >= 20, "{names:?}");
        for n in &names {
            assert!(Group::of_program(n).is_some(), "{n} is in no hook group");
        }
        for g in Group::ALL {
            for p in g.programs() {
                assert!(
                    names.iter().any(|n| n == p),
                    "{p} of {g} is not in the object"
                );
            }
        }
    }

    #[test]
    fn cgroup2_is_found_or_named_missing() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs ro 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(cgroup2_in(hybrid).unwrap(), "/sys/fs/cgroup/unified");
        let v1 = "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n";
        let e = format!("{:#}", cgroup2_in(v1).unwrap_err());
        assert_eq!(
            e,
            "cgroup v2 not mounted (looked for a cgroup2 entry in /proc/mounts)"
        );
    }

    #[test]
    fn rings_split_the_total_in_powers_of_two() {
        assert_eq!(per_cpu_ring_bytes(32 << 20, 2), 16 << 20);
        assert_eq!(per_cpu_ring_bytes(32 << 20, 3), 8 << 20);
        assert_eq!(per_cpu_ring_bytes(32 << 20, 1), 32 << 20);
        assert_eq!(per_cpu_ring_bytes(8 << 10, 2), 4096);
        assert_eq!(per_cpu_ring_bytes(8 << 10, 64), 4096);
        assert_eq!(per_cpu_ring_bytes(0, 0), 4096);
        assert_eq!(per_cpu_ring_bytes(u64::MAX, 2), 512 << 20);
    }

    #[test]
    fn fill_checks_stay_well_inside_the_ring() {
        assert_eq!(wakeup_check_mask(16 << 20), 63);
        assert_eq!(wakeup_check_mask(4096), 0);
        assert_eq!(wakeup_check_mask(64 << 10), 15);
        for shift in 12..30 {
            let ring = 1u64 << shift;
            let every = wakeup_check_mask(ring) + 1;
            assert!(every.is_power_of_two() && every <= 64);
            assert!(every == 1 || every * 256 <= ring / 16, "ring {ring}");
        }
    }
}

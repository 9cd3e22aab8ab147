//! Turning "operation not permitted" from the kernel into an error that
//! says what is missing and how to fix it (bandwhich's `eperm_message`).
//!
//! What snoop needs (measured on Linux 6.18, as uid 65534 with file
//! capabilities): CAP_BPF (load programs, create maps), CAP_PERFMON
//! (tp_btf programs reading kernel memory), CAP_NET_ADMIN (cgroup socket
//! hooks) and, for `--iface` only, CAP_NET_RAW (the AF_PACKET socket).
//! CAP_SYS_ADMIN implies the first two. RLIMIT_MEMLOCK does not matter on
//! kernels >= 5.11 (memory-cgroup accounting), so CAP_SYS_RESOURCE is not
//! needed. The missing ones are read from the effective set in
//! /proc/self/status and named in the error.
//!
//! Once every program is attached, `snoop record` needs no privilege at all:
//! the ring buffer is mapped, map reads go through descriptors it holds, the
//! output file is open, and closing the descriptors at exit detaches
//! everything. So a recorder started as root becomes the invoking sudo user
//! (SUDO_UID/SUDO_GID), or nobody, for the rest of the run
//! ([`drop_privileges`]); that clears every capability of every thread.
//!
//! libbpf's own warnings are captured while loading: a refused load then
//! shows one clear message instead of libbpf's hints about RLIMIT_MEMLOCK,
//! and any other failure prints them (the verifier log) before the error.

use std::io;
use std::sync::{Mutex, PoisonError};

use libbpf_rs::PrintLevel;

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The capabilities of the effective set, if /proc says.
fn effective_caps() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Capability names snoop needs and the effective set lacks.
pub fn missing_caps(iface: bool) -> Vec<&'static str> {
    let eff = effective_caps().unwrap_or(0);
    let has = |c: u32| eff & (1u64 << c) != 0;
    let admin = has(CAP_SYS_ADMIN);
    let mut out = Vec::new();
    if !has(CAP_BPF) && !admin {
        out.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) && !admin {
        out.push("CAP_PERFMON");
    }
    if !has(CAP_NET_ADMIN) {
        out.push("CAP_NET_ADMIN");
    }
    if iface && !has(CAP_NET_RAW) {
        out.push("CAP_NET_RAW");
    }
    out
}

/// The message shown when loading, attaching or opening is refused.
pub fn eperm_help(what: &str, iface: bool) -> String {
    let missing = missing_caps(iface);
    let lacking = if missing.is_empty() {
        // Capabilities are there; something else refused (LSM, sysctl
        // kernel.unprivileged_bpf_disabled does not apply to CAP_BPF).
        "the kernel refused although CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN are \
         effective (a security module or a container policy?)"
            .to_string()
    } else {
        format!("missing {}", missing.join(", "))
    };
    format!(
        "insufficient privileges to {what}: {lacking}. snoop record needs CAP_BPF, \
         CAP_PERFMON and CAP_NET_ADMIN (plus CAP_NET_RAW for --iface). Run it with \
         sudo, or grant them once: sudo setcap \
         cap_bpf,cap_perfmon,cap_net_admin,cap_net_raw+ep \"$(command -v snoop)\""
    )
}

fn is_eperm(kind: io::ErrorKind, raw: Option<i32>) -> bool {
    kind == io::ErrorKind::PermissionDenied || matches!(raw, Some(libc::EPERM) | Some(libc::EACCES))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    (unsafe { libc::geteuid() }) == 0
}

/// Wrap a libbpf error, replacing permission failures by [`eperm_help`].
pub fn map_bpf_error(e: libbpf_rs::Error) -> anyhow::Error {
    // libbpf reports a verifier rejection as EACCES too; only blame
    // privileges when something is missing (or we are not root).
    let refused = e.kind() == libbpf_rs::ErrorKind::PermissionDenied;
    if refused && (!is_root() || !missing_caps(false).is_empty()) {
        discard_libbpf_log();
        return anyhow::Error::new(e).context(eperm_help("load eBPF programs", false));
    }
    flush_libbpf_log();
    anyhow::Error::new(e)
}

/// Like [`map_bpf_error`], but forgets libbpf's log instead of printing
/// it (for failures the caller reports in its own words, like an
/// optional hook group that could not attach).
pub fn map_bpf_error_quiet(e: libbpf_rs::Error) -> anyhow::Error {
    if e.kind() == libbpf_rs::ErrorKind::PermissionDenied && lacks_privileges() {
        discard_libbpf_log();
        return anyhow::Error::new(e).context(eperm_help("load eBPF programs", false));
    }
    discard_libbpf_log();
    anyhow::Error::new(e)
}

/// True when a capability snoop needs is not effective (root has them
/// all; a binary given them with setcap has them too): a refusal is then
/// blamed on privileges, not on the kernel.
pub fn lacks_privileges() -> bool {
    !missing_caps(false).is_empty()
}

/// Wrap an io error of `what`, replacing permission failures by
/// [`eperm_help`].
pub fn map_io_error(e: io::Error, what: &str, iface: bool) -> anyhow::Error {
    if is_eperm(e.kind(), e.raw_os_error()) && (!is_root() || !missing_caps(iface).is_empty()) {
        return anyhow::Error::new(e).context(eperm_help(what, iface));
    }
    anyhow::Error::new(e)
}

static LIBBPF_LOG: Mutex<String> = Mutex::new(String::new());

fn capture(_level: PrintLevel, msg: String) {
    let mut log = LIBBPF_LOG.lock().unwrap_or_else(PoisonError::into_inner);
    // Bounded: a verifier log can be huge; keep its end.
    if log.len() > 64 << 10 {
        let cut = log.len() - (32 << 10);
        let cut = (cut..log.len())
            .find(|&i| log.is_char_boundary(i))
            .unwrap_or(log.len());
        log.drain(..cut);
    }
    log.push_str(&msg);
}

/// Collect libbpf's warnings instead of printing them (until
/// [`flush_libbpf_log`] or [`discard_libbpf_log`]).
pub fn capture_libbpf_log() {
    libbpf_rs::set_print(Some((PrintLevel::Warn, capture)));
}

/// Print what libbpf said (to stderr) and forget it.
pub fn flush_libbpf_log() {
    let log = std::mem::take(&mut *LIBBPF_LOG.lock().unwrap_or_else(PoisonError::into_inner));
    if !log.is_empty() {
        eprint!("{log}");
    }
}

/// What libbpf said since the last take or discard (and forget it).
pub fn take_libbpf_log() -> String {
    std::mem::take(&mut *LIBBPF_LOG.lock().unwrap_or_else(PoisonError::into_inner))
}

/// Forget what libbpf said.
pub fn discard_libbpf_log() {
    LIBBPF_LOG
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
}

/// Called once every program is attached (the rest of the run needs no
/// privilege): [`drop_privileges`], with a warning on stderr if it fails
/// (recording goes on; losing the trace would be worse).
pub fn drop_privileges_or_warn() {
    if let Err(e) = drop_privileges() {
        eprintln!("snoop: warning: could not drop root privileges: {e}");
    }
}

/// Become the invoking sudo user (SUDO_UID/SUDO_GID, when set and not 0),
/// else nobody (65534), with no supplementary groups and no_new_privs, if
/// running as root. All threads change (glibc broadcasts set*id), and the
/// transition away from uid 0 empties every capability set. Returns the
/// (uid, gid) now in force, or None when not root (a binary given file
/// capabilities keeps them: capset would change only the calling thread).
pub fn drop_privileges() -> io::Result<Option<(u32, u32)>> {
    if !is_root() {
        return Ok(None);
    }
    let id = |k: &str| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|&v| v != 0)
    };
    let (uid, gid) = match (id("SUDO_UID"), id("SUDO_GID")) {
        (Some(u), Some(g)) => (u, g),
        _ => (65534, 65534),
    };
    let check = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // SAFETY: plain syscalls on our own credentials; setgroups reads no
    // memory when the count is 0.
    unsafe {
        check(libc::setgroups(0, std::ptr::null()))?;
        check(libc::setresgid(gid, gid, gid))?;
        check(libc::setresuid(uid, uid, uid))?;
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
    }
    Ok(Some((uid, gid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_names_the_fix() {
        let h = eperm_help("load eBPF programs", true);
        assert!(h.contains("setcap cap_bpf,cap_perfmon,cap_net_admin,cap_net_raw+ep"));
        assert!(h.starts_with("insufficient privileges to load eBPF programs: "));
    }
}

//! Turning "operation not permitted" from the kernel into an error that
//! says what is missing and how to fix it (bandwhich's `eperm_message`).

use std::io;

/// The message shown when loading or attaching is refused.
pub const EPERM_HELP: &str = "insufficient privileges to load eBPF programs: snoop record needs \
CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (CAP_NET_RAW for --iface). Run it with sudo, or grant \
the capabilities once: sudo setcap cap_bpf,cap_perfmon,cap_net_admin,cap_net_raw+ep $(which snoop)";

fn is_eperm(kind: io::ErrorKind, raw: Option<i32>) -> bool {
    kind == io::ErrorKind::PermissionDenied || matches!(raw, Some(libc::EPERM) | Some(libc::EACCES))
}

/// Wrap a libbpf error, replacing permission failures by [`EPERM_HELP`].
pub fn map_bpf_error(e: libbpf_rs::Error) -> anyhow::Error {
    // libbpf reports a verifier rejection as EACCES too; only blame
    // privileges when we are not root.
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root && e.kind() == libbpf_rs::ErrorKind::PermissionDenied {
        return anyhow::Error::new(e).context(EPERM_HELP);
    }
    anyhow::Error::new(e)
}

/// Wrap an io error, replacing permission failures by [`EPERM_HELP`].
pub fn map_io_error(e: io::Error) -> anyhow::Error {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root && is_eperm(e.kind(), e.raw_os_error()) {
        return anyhow::Error::new(e).context(EPERM_HELP);
    }
    anyhow::Error::new(e)
}

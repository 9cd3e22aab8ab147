//! File information about the recording host, gathered once at start:
//! names, kernel, the boot-time-to-wall-clock offset that lets every
//! CLOCK_BOOTTIME timestamp be shown as wall time, and the interface table.

use crate::meta::FileInfo;

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// CLOCK_BOOTTIME now, in ns (the clock BPF's `bpf_ktime_get_boot_ns` reads).
pub fn boottime_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME) as u64
}

/// Wall clock minus CLOCK_BOOTTIME, in ns.
pub fn boot_to_wall_ns() -> i64 {
    // Take the smallest of a few readings to bound the gap between the calls.
    (0..3)
        .map(|_| {
            let a = clock_ns(libc::CLOCK_BOOTTIME);
            let w = clock_ns(libc::CLOCK_REALTIME);
            let b = clock_ns(libc::CLOCK_BOOTTIME);
            (b - a, w - (a + (b - a) / 2))
        })
        .min_by_key(|(gap, _)| *gap)
        .map(|(_, off)| off)
        .unwrap_or(0)
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Interfaces by index, from /sys/class/net.
pub fn interfaces() -> Vec<(u32, String)> {
    let mut out: Vec<(u32, String)> = std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = crate::names::name_text(e.file_name().as_encoded_bytes());
            let idx = std::fs::read_to_string(e.path().join("ifindex"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Some((idx, name))
        })
        .collect();
    out.sort();
    out
}

impl FileInfo {
    /// Information about this host now, for a recording run as `command`.
    pub fn from_host(command: Vec<String>) -> FileInfo {
        FileInfo {
            host: read_trim("/proc/sys/kernel/hostname"),
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            snoop_version: env!("CARGO_PKG_VERSION").to_string(),
            command,
            boot_to_wall_ns: boot_to_wall_ns(),
            start_ns: boottime_ns(),
            ifaces: interfaces(),
        }
    }

    /// Name of interface `ifindex`, if it was known at start.
    pub fn iface_name(&self, ifindex: u32) -> Option<&str> {
        self.ifaces
            .iter()
            .find(|(i, _)| *i == ifindex)
            .map(|(_, n)| n.as_str())
    }

    /// A CLOCK_BOOTTIME timestamp as ns since the Unix epoch.
    pub fn wall_ns(&self, boot_ns: u64) -> i64 {
        (boot_ns as i64).saturating_add(self.boot_to_wall_ns)
    }
}

//! Command-line arguments of `snoop record` and the parsing of their
//! human-friendly values (durations like `10s`, sizes like `500M`). Every
//! value is checked here, in clap's value parsers, so a bad one is a usage
//! error (exit status 2) before anything is loaded or created, never a
//! silent default: `--port 0`, `--pid 0`, zero limits and ring sizes out of
//! range are refused.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Transport protocol filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Proto {
    /// TCP only.
    Tcp,
    /// UDP only.
    Udp,
}

impl Proto {
    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
}

/// How wire packets are recorded (`--packets`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum PacketMode {
    /// Runs: a socket's packets of one direction and length, folded in the
    /// kernel into one row with a count and a time span, up to four lengths
    /// per record (packets with no known socket stay one record each).
    #[default]
    Runs,
    /// One record per packet.
    Each,
    /// No packet records.
    Off,
}

impl PacketMode {
    /// The name recorded in the trace (`runs`, `each`, `off`).
    pub fn name(self) -> &'static str {
        match self {
            PacketMode::Runs => "runs",
            PacketMode::Each => "each",
            PacketMode::Off => "off",
        }
    }
}

/// `snoop record`: capture what every process sends and receives.
#[derive(Args, Clone, Debug)]
pub struct RecordArgs {
    /// Trace file to write.
    #[arg(short, long, value_name = "FILE", default_value = "trace.snp")]
    pub output: PathBuf,
    /// Overwrite FILE if it exists (never through a symlink).
    #[arg(long)]
    pub force: bool,
    /// Record only this process (repeatable).
    #[arg(short, long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pid: Vec<u32>,
    /// Record processes with this name, also ones started later (repeatable).
    #[arg(long, value_name = "NAME")]
    pub comm: Vec<String>,
    /// Also record children of recorded processes.
    #[arg(long)]
    pub follow: bool,
    /// Record only tasks in this cgroup v2: a path (absolute or relative to
    /// the mount), a container id prefix (docker, containerd, CRI-O,
    /// podman) or a systemd unit name (`nginx.service`).
    #[arg(long, value_name = "PATH|ID")]
    pub cgroup: Option<String>,
    /// Record only traffic with this local or remote port (1-65535).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Record only this transport protocol.
    #[arg(long, value_enum)]
    pub proto: Option<Proto>,
    /// IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// IPv6 only.
    #[arg(short = '6')]
    pub ipv6: bool,
    /// Also capture every IP packet on this interface (repeatable).
    #[arg(long, value_name = "IF")]
    pub iface: Vec<String>,
    /// Stop after this long (e.g. 10s, 5m, 1h).
    #[arg(long, value_name = "DUR", value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many events.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_events: Option<u64>,
    /// Stop once the file reaches this size (e.g. 500M, 2G).
    #[arg(long, value_name = "SIZE", value_parser = parse_positive_size)]
    pub max_size: Option<u64>,
    /// Wire packets: `runs` folds each socket's packets of one length and
    /// direction into one row with a count and a time span (in the kernel,
    /// up to four lengths per record; sizes and bytes stay exact); `each` writes one record
    /// per packet; `off` none (messages, TCP states and processes stay, and
    /// per-process bytes stay exact).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = PacketMode::Runs)]
    pub packets: PacketMode,
    /// The same as --packets=off.
    #[arg(long, conflicts_with = "packets")]
    pub no_packets: bool,
    /// Do not learn names for remote addresses from the DNS answers
    /// (port 53, UDP and TCP) that recorded processes receive; the trace
    /// then has no names and `remote_name` stays empty. With packets
    /// recorded the answers are read in the packets' receive hook (other
    /// packets cost it one port compare); with --packets=off a cgroup_skb
    /// program reads them, which runs for every received packet.
    #[arg(long)]
    pub no_dns: bool,
    /// Ring buffer memory, 4K to 1G, split evenly over one ring per CPU
    /// (each a power of two, at least 4K: a size that does not split so is
    /// rounded, and snoop says to what; e.g. 16M, 64M). Raise it when the
    /// summary reports records lost because the ring was full. [default: 32M]
    #[arg(long, value_name = "SIZE", value_parser = parse_ring_size)]
    pub ring_size: Option<u64>,
    /// How many live sockets the kernel side remembers the owner of
    /// (entries leave when a socket closes). With more live sockets than
    /// this, new sockets' owners do not fit: counted and reported, and
    /// their packets and state changes are unattributed (messages stay
    /// exact) until room frees up.
    #[arg(long, value_name = "N", default_value_t = crate::kernel::DEFAULT_OWNER_ENTRIES,
          value_parser = clap::value_parser!(u32).range(64..=16_777_216))]
    pub owner_map_entries: u32,
}

impl RecordArgs {
    /// The packet mode asked for (`--no-packets` is `off`).
    pub fn packet_mode(&self) -> PacketMode {
        if self.no_packets {
            PacketMode::Off
        } else {
            self.packets
        }
    }
}

/// Parse `10s`, `5m`, `1h`, `250ms`, `1.5s` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (e.g. 10s, 5m, 1h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => {
            return Err(format!(
                "invalid duration unit {unit:?} in {s:?} (use ms, s, m, h, d)"
            ))
        }
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// [`parse_duration`], refusing zero.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("duration {s:?} must be greater than zero"));
    }
    Ok(d)
}

/// [`parse_size`], refusing zero.
pub fn parse_positive_size(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err(format!("size {s:?} must be greater than zero")),
        n => Ok(n),
    }
}

/// The smallest and largest `--ring-size` the kernel side accepts.
pub const RING_SIZE_RANGE: (u64, u64) = (4 << 10, 1 << 30);

/// The ring buffer memory when `--ring-size` is not given.
pub const DEFAULT_RING_SIZE: u64 = 32 << 20;

/// Parse `--ring-size`: a size in [`RING_SIZE_RANGE`]. (The kernel needs
/// each CPU's ring to be a power of two; `snoop record` says what a given
/// size that does not split so becomes: [`ring_size_note`].)
pub fn parse_ring_size(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    let (lo, hi) = RING_SIZE_RANGE;
    if !(lo..=hi).contains(&n) {
        return Err(format!(
            "ring size {s:?} out of range: between 4K and 1G (all rings together)"
        ));
    }
    Ok(n)
}

/// What `--ring-size` `total` becomes on `cpus` CPUs, when that is not
/// `total` itself (each ring is a power of two, at least 4K).
pub fn ring_size_note(given: &str, total: u64, cpus: usize) -> Option<String> {
    let each = crate::kernel::per_cpu_ring_bytes(total, cpus);
    let all = each.saturating_mul(cpus.max(1) as u64);
    (all != total).then(|| {
        format!(
            "--ring-size {given}: {} rings of {} (one per CPU, each a power of two), {} in all",
            cpus.max(1),
            crate::human_bytes(each),
            crate::human_bytes(all)
        )
    })
}

/// Parse `4096`, `64K`, `500M`, `2G` (powers of 1024; `B`/`iB` suffixes accepted).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (e.g. 500M, 2G)"))?;
    let mult: u64 = match unit
        .trim_end_matches("iB")
        .trim_end_matches('B')
        .to_ascii_uppercase()
        .as_str()
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => {
            return Err(format!(
                "invalid size unit {unit:?} in {s:?} (use K, M, G, T)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1Q").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    /// Values that used to mean something else silently
    /// (`--port 0`: no filter; a ring size clamped) are usage errors.
    #[test]
    fn bad_values_are_refused() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            a: RecordArgs,
        }
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("record").chain(args.iter().copied()))
        };
        for bad in [
            &["--port", "0"][..],
            &["--pid", "0"],
            &["--max-events", "0"],
            &["--duration", "0s"],
            &["--max-size", "0"],
            &["--ring-size", "1K"],
            &["--ring-size", "2G"],
            &["--ring-size", "0"],
        ] {
            let e = parse(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
        let ok =
            parse(&["--port", "443", "--ring-size", "64M", "--iface", "lo"]).expect("good values");
        assert_eq!((ok.a.port, ok.a.ring_size), (Some(443), Some(64 << 20)));
        assert_eq!(parse(&[]).expect("defaults").a.ring_size, None);
    }

    #[test]
    fn ring_rounding_is_told() {
        assert_eq!(ring_size_note("32M", 32 << 20, 2), None);
        assert_eq!(ring_size_note("32M", 32 << 20, 1), None);
        let n = ring_size_note("32M", 32 << 20, 3).expect("3 CPUs round down");
        assert!(
            n.contains("3 rings of 8.0 MiB") && n.contains("24.0 MiB in all"),
            "{n}"
        );
        let n = ring_size_note("8K", 8 << 10, 4).expect("4K minimum per ring");
        assert!(
            n.contains("4 rings of 4.0 KiB") && n.contains("16.0 KiB in all"),
            "{n}"
        );
    }
}

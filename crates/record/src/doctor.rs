//! `snoop doctor`: what a user runs before recording on a new machine. It
//! checks the kernel's BTF, privileges, the cgroup v2 mount and, by really
//! loading and attaching them as `record` does, every hook group — and says
//! in one line per item what is missing and what that costs, instead of a
//! verifier dump in the middle of an incident.

use std::io::Write;

use anyhow::Result;
use serde_json::{json, Value};

use crate::hooks::{Group, ESSENTIAL_NEEDS};
use crate::kernel::{cgroup2_root, probe_hooks, KernelOptions};
use crate::perm;

/// Arguments of `snoop doctor`.
#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "Exit status: 0 when recording would work with every hook group, \
    1 when it cannot record (the essential messages group or a prerequisite is missing), \
    3 when it can record but some optional group is refused."
)]
pub struct DoctorArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One checked item.
struct Check {
    item: String,
    ok: bool,
    detail: String,
}

/// The verdict, as the exit status: 0 all groups, 1 cannot record, 3
/// records without some optional group.
pub fn run_doctor(args: &DoctorArgs) -> Result<u8> {
    let mut checks = Vec::new();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    checks.push(Check {
        item: "kernel".into(),
        ok: true,
        detail: kernel.clone(),
    });
    let btf = std::path::Path::new("/sys/kernel/btf/vmlinux").exists();
    checks.push(Check {
        item: "btf".into(),
        ok: btf,
        detail: if btf {
            "/sys/kernel/btf/vmlinux".into()
        } else {
            format!(
                "missing /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF=y): nothing can be \
                 recorded; snoop record needs {ESSENTIAL_NEEDS}"
            )
        },
    });
    let missing = perm::missing_caps(false);
    let privileged = missing.is_empty();
    checks.push(Check {
        item: "privileges".into(),
        ok: privileged,
        detail: if privileged {
            "CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN effective".into()
        } else {
            format!(
                "missing {}: snoop record and these checks need root (sudo) or those \
                 capabilities",
                missing.join(", ")
            )
        },
    });
    let cg = cgroup2_root();
    checks.push(Check {
        item: "cgroup v2".into(),
        ok: cg.is_ok(),
        detail: match &cg {
            Ok(p) => p.clone(),
            Err(e) => format!("{e:#}: the sockets group cannot attach"),
        },
    });
    checks.push(Check {
        item: "tracefs".into(),
        ok: true,
        detail: "not needed (snoop uses tp_btf, cgroup, iterator and socket-filter \
                 programs only)"
            .into(),
    });
    let hooks: Vec<(String, String)> = if btf && privileged {
        let opts = KernelOptions {
            packets: true,
            dns: true,
            pkt_runs: true,
            msg_batch: true,
            lifecycle: true,
            existing: true,
            ifaces: vec!["lo".into()],
            ring_bytes: 1 << 20,
            owner_entries: 4096,
            ..KernelOptions::default()
        };
        match probe_hooks(&opts) {
            Ok(h) => h,
            Err(e) => vec![(
                Group::Messages.name().to_string(),
                format!("refused: {e:#}"),
            )],
        }
    } else {
        Group::ALL
            .iter()
            .map(|g| {
                (
                    g.name().to_string(),
                    "not checked (needs BTF and the privileges above)".to_string(),
                )
            })
            .collect()
    };
    for g in Group::ALL {
        let state = hooks
            .iter()
            .find(|(n, _)| n == g.name())
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| "not checked (the essential group failed)".into());
        let ok = state == "active";
        let detail = if ok {
            "loads and attaches".to_string()
        } else if state.starts_with("not checked") {
            state
        } else if g == Group::Messages {
            format!("{state}: nothing can be recorded; snoop record needs {ESSENTIAL_NEEDS}")
        } else {
            format!("{state}: {}", g.loses())
        };
        checks.push(Check {
            item: format!("hooks {}", g.name()),
            ok,
            detail,
        });
    }
    let can_record = checks
        .iter()
        .filter(|c| matches!(c.item.as_str(), "btf" | "privileges" | "hooks messages"))
        .all(|c| c.ok);
    let all = checks.iter().all(|c| c.ok);
    let verdict = if all {
        0
    } else if !can_record {
        1
    } else {
        3
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let v: Value = json!({
            "can_record": can_record,
            "all_groups": all,
            "kernel": kernel,
            "checks": checks.iter().map(|c| json!({
                "item": c.item, "ok": c.ok, "detail": c.detail,
            })).collect::<Vec<_>>(),
            "hooks": hooks.iter().map(|(g, s)| (g.clone(), Value::String(s.clone())))
                .collect::<serde_json::Map<String, Value>>(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        for c in &checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            writeln!(out, "{mark} {:<24} {}", c.item, c.detail)?;
        }
        let line = match verdict {
            0 => "snoop record will work with every hook group",
            1 => "snoop record cannot record on this machine",
            _ => "snoop record will work, without the groups marked FAIL",
        };
        writeln!(out, "{line}")?;
    }
    Ok(verdict)
}

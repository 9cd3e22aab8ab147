//! End-to-end tests of the `snoop` binary that need no root: `snoop info` on
//! every committed fixture against the golden JSON beside it (the v1 files
//! are the compatibility check for later readers), `snoop synth`, and bad
//! input — missing, corrupt, truncated files and wrong flags — which must
//! give a clear `snoop: ...` error and a non-zero exit, never a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn snoop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snoop"))
        .args(args)
        .output()
        .expect("run snoop")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_clean_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, stderr: {err}");
    assert!(
        err.starts_with("snoop: "),
        "error not in snoop: form: {err}"
    );
    assert!(err.contains(needle), "{needle:?} not in: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
}

#[test]
fn info_json_matches_golden_for_every_fixture() {
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures()).expect("fixtures/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("snp") {
            continue;
        }
        let golden = path.with_extension("info.json");
        let want: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&golden).expect("golden info.json"))
                .expect("golden is JSON");
        let o = snoop(&["info", "--json", path.to_str().expect("utf-8 path")]);
        assert!(o.status.success(), "{}: {}", path.display(), stderr(&o));
        let got: serde_json::Value =
            serde_json::from_slice(&o.stdout).expect("info --json is JSON");
        assert_eq!(got, want, "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 3, "expected the committed fixtures, found {seen}");
}

#[test]
fn info_reports_recovery() {
    let f = fixtures().join("v1-recovered.snp");
    let o = snoop(&["info", f.to_str().expect("path")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("RECOVERED"), "{text}");
    assert!(text.contains("bytes ignored"), "{text}");
    assert!(
        stderr(&o).contains("was not closed cleanly"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn synth_then_info_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("s.snp");
    let fs = f.to_str().expect("path");
    let o = snoop(&["synth", "-o", fs, "--events", "5000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = snoop(&["info", "--json", fs]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["tables"]["messages"], 5000);
    assert_eq!(v["complete"], true);
    // Refuses to overwrite without --force.
    let o = snoop(&["synth", "-o", fs, "--events", "10"]);
    assert_clean_error(&o, "--force");
}

#[test]
fn missing_file_is_a_clear_error() {
    let o = snoop(&["info", "/nonexistent/trace.snp"]);
    assert_clean_error(&o, "/nonexistent/trace.snp");
}

#[test]
fn non_trace_and_damaged_files_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.snp");
    std::fs::write(&junk, b"this is not a trace file, just text\n").expect("write");
    assert_clean_error(
        &snoop(&["info", junk.to_str().expect("p")]),
        "not a snoop trace",
    );

    let empty = dir.path().join("empty.snp");
    std::fs::write(&empty, b"").expect("write");
    assert_clean_error(&snoop(&["info", empty.to_str().expect("p")]), "too short");

    assert_clean_error(
        &snoop(&["info", dir.path().to_str().expect("p")]),
        "directory",
    );

    // Every prefix of a real trace: opens (recovered) or errors, no panic.
    let bytes = std::fs::read(fixtures().join("v1-synthetic.snp")).expect("fixture");
    let cut = dir.path().join("cut.snp");
    for len in (0..bytes.len()).step_by(997) {
        std::fs::write(&cut, &bytes[..len]).expect("write");
        let o = snoop(&["info", "--json", cut.to_str().expect("p")]);
        assert!(
            !stderr(&o).contains("panicked"),
            "cut at {len}: {}",
            stderr(&o)
        );
        if o.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
            assert_eq!(v["complete"], false, "cut at {len}");
        } else {
            assert!(
                stderr(&o).starts_with("snoop: "),
                "cut at {len}: {}",
                stderr(&o)
            );
        }
    }
}

#[test]
fn wrong_flags_exit_2_with_usage() {
    let o = snoop(&["info", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("Usage"), "{}", stderr(&o));
    let o = snoop(&["no-such-command"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn help_teaches() {
    let o = snoop(&["--help"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    let mut cmds = vec!["info"];
    if cfg!(feature = "record") {
        cmds.extend(["record", "top"]);
    }
    if cfg!(feature = "analyze") {
        cmds.extend(["analyze", "replay", "export"]);
    }
    for cmd in cmds {
        assert!(text.contains(cmd), "{cmd} missing from --help: {text}");
    }
}

/// Traces written before hook groups were recorded (format 1.0) say so:
/// `hooks` is null in JSON and the text names the reason, rather than
/// claiming groups ran or did not.
#[test]
fn info_of_a_trace_without_hook_groups_says_so() {
    let f = fixtures().join("v1-synthetic.snp");
    let o = snoop(&["info", f.to_str().expect("utf-8 path")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("hooks:") && l.contains("not recorded")),
        "{text}"
    );
    let o = snoop(&["info", "--json", f.to_str().expect("utf-8 path")]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert!(v["hooks"].is_null(), "{v}");
    assert_eq!(v["format_version"], "1.0");
}

/// Bad values of `top` and `record` are usage
/// errors (exit 2, clap's message naming the value) before anything runs:
/// no panic on an INTERVAL that overflows the clock, no trace file created.
#[test]
#[cfg(feature = "record")]
fn bad_record_and_top_values_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("t.snp");
    let o = out.to_str().expect("path");
    for args in [
        &["top", "0"][..],
        &["top", "9999999999999999999"],
        &["top", "99999999999"],
        &["top", "1", "0"],
        &["top", "-p", "0"],
        &["top", "--from", o, "--speed", "0"],
        &["top", "--from", o, "--speed=-1"],
        &["top", "--from", o, "--speed", "nan"],
        &["top", "--from", o, "--speed", "inf"],
        &["top", "--from", o, "--speed", "1e7"],
        &["top", "--from", o, "--speed", "0.0001"],
        &["top", "--from", o, "--speed", "fast"],
        &["record", "-o", o, "--port", "0"],
        &["record", "-o", o, "--pid", "0"],
        &["record", "-o", o, "--ring-size", "2G"],
        &["record", "-o", o, "--ring-size", "100"],
        &["record", "-o", o, "--duration", "0s"],
        &["record", "-o", o, "--max-events", "0"],
    ] {
        let r = snoop(args);
        let err = stderr(&r);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("invalid value"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} created the trace");
    }
    // --speed only means something for a replay.
    let r = snoop(&["top", "--speed", "10"]);
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
    assert!(stderr(&r).contains("--from <FILE>"), "{}", stderr(&r));
}

/// `top --help` lists the full-screen view's keys and both faces' flags.
#[test]
#[cfg(feature = "record")]
fn top_help_tells_the_keys() {
    let o = snoop(&["top", "--help"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let h = String::from_utf8_lossy(&o.stdout);
    for want in [
        "Keys of the full-screen view",
        "q, Ctrl-C",
        "Tab, Shift-Tab",
        "filter by name",
        "pause",
        "--plain",
        "--speed <X>",
    ] {
        assert!(h.contains(want), "{want}: {h}");
    }
}

/// Piped, `top --from` prints the plain table whether or not `--plain` is
/// given, and `--speed` only paces it: the same bytes as without.
#[test]
#[cfg(feature = "record")]
fn top_from_piped_is_the_plain_table_at_any_speed() {
    let f = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/loopback.snp");
    let base = snoop(&["top", "--from", f]);
    assert!(base.status.success(), "{}", stderr(&base));
    let text = String::from_utf8_lossy(&base.stdout).into_owned();
    assert!(text.starts_with("\n+0s\nPID     COMM"), "{text}");
    for args in [
        &["top", "--from", f, "--plain"][..],
        &["top", "--from", f, "--speed", "1000"],
        &["top", "--from", f, "--plain", "--speed", "1000"],
    ] {
        let o = snoop(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout), text, "{args:?}");
    }
}

/// `top --from` of a trace whose end lies ten years after its start is a
/// clear error (exit 1), not one table per second until memory runs out.
#[test]
#[cfg(feature = "record")]
fn top_from_a_far_end_is_a_clear_error() {
    use snoop_format::{comm_bytes, Direction, FileInfo, Flow, TraceWriter, WriterOptions};
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("far.snp");
    let info = FileInfo {
        start_ns: 1_000_000_000,
        ..FileInfo::default()
    };
    let mut w = TraceWriter::new(
        std::fs::File::create(&p).expect("create"),
        &info,
        WriterOptions::default(),
    )
    .expect("writer");
    let f = Flow {
        pid: 7,
        tid: 7,
        comm: comm_bytes("far"),
        proto: 17,
        ..Flow::default()
    };
    w.push_message(1_000_000_001, &f, 10, Direction::Tx)
        .expect("push");
    w.finish(10 * 365 * 86_400 * 1_000_000_000).expect("finish");
    let o = snoop(&["top", "--from", p.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_clean_error(&o, "give a longer INTERVAL or a COUNT");
    let o = snoop(&["top", "--from", p.to_str().expect("path"), "1", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).matches("PID").count(), 2);
}

/// scripts/demo.sh shows a recorder that fails (here stand-ins that exit 1
/// with a disk-full error, after their ready line or before it): the
/// recorder's log and its exit status are printed and the demo fails with
/// that status, however soon the recorder ends, instead of `set -e` ending
/// it silently.
#[test]
fn demo_shows_a_failed_recording() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = dir.path().join("peer");
    std::fs::write(
        &peer,
        // Its servers exit as soon as they name their port: the demo must
        // read it all the same.
        "#!/bin/sh\ncase \"$1\" in *-server) echo 'port 1';; esac\nexit 0\n",
    )
    .expect("write stand-in peer");
    std::fs::set_permissions(&peer, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for ready in ["echo 'snoop: recording to /tmp/x.snp' >&2\n", ""] {
        let fake = dir.path().join("snoop");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\n\
                 [ \"$1\" = record ] || exit 0\n\
                 {ready}\
                 echo 'snoop: disk full writing /tmp/x.snp: kept 5 events in 1 chunks' >&2\n\
                 exit 1\n"
            ),
        )
        .expect("write stand-in");
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo.sh");
        let o = std::process::Command::new("bash")
            .arg(&script)
            .arg("1")
            .env("SNOOP_DEMO_BIN", &fake)
            .env("SNOOP_DEMO_PEER", &peer)
            .env("SNOOP_DEMO_OUT", dir.path().join("demo.snp"))
            .output()
            .expect("run demo.sh");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("snoop: disk full writing /tmp/x.snp"), "{err}");
        assert!(
            err.contains("demo: snoop record exited with status 1"),
            "{err}"
        );
    }
}

/// Completion scripts come from the clap definitions and parse in their
/// shell: bash always (`bash -n`), zsh and fish where installed (each
/// missing one prints why it was not checked). They name the subcommands
/// and a flag the test knows.
#[test]
fn completions_parse_in_each_shell() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (shell, check) in [("bash", "bash"), ("zsh", "zsh"), ("fish", "fish")] {
        let o = snoop(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let text = String::from_utf8(o.stdout).expect("utf-8");
        for word in ["record", "analyze", "doctor", "ring-size"] {
            assert!(text.contains(word), "{shell} completions lack {word}");
        }
        let f = dir.path().join(format!("snoop.{shell}"));
        std::fs::write(&f, &text).expect("write");
        match std::process::Command::new(check).arg("-n").arg(&f).output() {
            Ok(r) => assert!(
                r.status.success(),
                "{check} -n: {}",
                String::from_utf8_lossy(&r.stderr)
            ),
            Err(_) => eprintln!("{check} not installed: {shell} completions not syntax-checked"),
        }
    }
    let o = snoop(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "unknown shell: {}", stderr(&o));
}

/// `snoop man` renders with `man -l` (roff that man-db accepts) and
/// documents the commands; `snoop man record` is the record page with its
/// flags; an unknown subcommand is a usage error.
#[test]
fn man_pages_render() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, must) in [
        (&["man"][..], &["snoop", "record", "analyze", "doctor"][..]),
        (
            &["man", "record"],
            &["snoop-record", "--ring-size", "--no-packets"],
        ),
    ] {
        let o = snoop(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let f = dir.path().join("page.1");
        std::fs::write(&f, &o.stdout).expect("write");
        let r = std::process::Command::new("man")
            .arg("-l")
            .arg(&f)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .expect("man (man-db)");
        let page = String::from_utf8_lossy(&r.stdout);
        assert!(
            r.status.success(),
            "man -l: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        // man may render hyphens as U+2010: compare without them.
        let plain = page.replace(['\u{2010}', '\u{2212}'], "-");
        for word in must {
            assert!(plain.contains(word), "{args:?} page lacks {word}: {page}");
        }
    }
    let o = snoop(&["man", "nosuch"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn export_mistakes_exit_2_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = fixtures().join("loopback.snp");
    let f = f.to_str().expect("path");
    let out = dir.path().join("x.pcapng");
    let out = out.to_str().expect("path");
    // pcapng holds packets only.
    let o = snoop(&["export", f, "--table", "messages", "-o", out]);
    assert_clean_error(&o, "use --table packets");
    assert_eq!(o.status.code(), Some(2));
    let o = snoop(&[
        "export",
        f,
        "--table",
        "connections",
        "--format",
        "pcapng",
        "-o",
        "x.bin",
    ]);
    assert_clean_error(&o, "use --table packets");
    assert_eq!(o.status.code(), Some(2));
    // Neither an output nor a dataset; both; a table with a dataset.
    for args in [
        vec!["export", f],
        vec!["export", f, "-o", out, "--dataset", "d"],
        vec!["export", f, "--table", "packets", "--dataset", "d"],
    ] {
        let o = snoop(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    assert!(!dir.path().join("x.pcapng").exists());
    assert!(!Path::new("d").exists());
}

//! `snoop top`'s full-screen view on a real terminal: tmux runs it in a
//! detached session of a fixed size, the test types keys and reads the
//! screen back (`tmux capture-pane`). A trace the test wrote is replayed
//! with `--from --speed`, and (as root) live traffic the test makes shows
//! up; sorting, Tab, the name filter and q work, and after q the terminal
//! is back to normal (alternate screen left, line editing and echo on).
//!
//! tmux comes from scripts/setup.sh. The live test needs root; without it
//! it prints why and passes, unless SNOOP_REQUIRE_BPF=1.

#![cfg(feature = "record")]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use snoop_format::{addr_bytes, comm_bytes, Direction, FileInfo, Flow, TraceWriter, WriterOptions};

const SNOOP: &str = env!("CARGO_BIN_EXE_snoop");
const S: u64 = 1_000_000_000;
/// The longest wait for the screen to show something.
const DEADLINE: Duration = Duration::from_secs(60);

/// A tmux server of this test alone (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Start `shell_cmd` in a detached 140x30 session, the pane kept open
    /// after it exits so its last screen can be read.
    fn start(tag: &str, shell_cmd: &str) -> Tmux {
        let socket = format!("snoop-tui-{tag}-{}", std::process::id());
        let t = Tmux { socket };
        let out = t.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "140",
            "-y",
            "30",
            "sh",
            "-c",
            shell_cmd,
            ";",
            "set-option",
            "-t",
            "top",
            "remain-on-exit",
            "on",
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-u", "-L", &self.socket])
            .args(args)
            .env_remove("TMUX")
            .output()
            .unwrap_or_else(|e| panic!("run tmux ({e}): install it with scripts/setup.sh"))
    }

    fn capture(&self) -> String {
        // With the history: a new pane's first line can scroll into it.
        let out = self.run(&["capture-pane", "-p", "-S", "-", "-t", "top"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Type keys: tmux key names (`Tab`, `Enter`) or, with `literal`, text.
    fn keys(&self, keys: &[&str], literal: bool) {
        let mut a = vec!["send-keys", "-t", "top"];
        if literal {
            a.push("-l");
        }
        a.extend_from_slice(keys);
        let out = self.run(&a);
        assert!(out.status.success(), "send-keys {keys:?}");
    }

    /// Poll the screen until `cond` holds; the screen then, or a panic
    /// showing the last one after [`DEADLINE`].
    fn wait_for(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.capture();
            if cond(&s) {
                return s;
            }
            if t0.elapsed() > DEADLINE {
                panic!("{what}: not on the screen after {DEADLINE:?}:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn format(&self, f: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", "top", f]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The command run in the pane: snoop, then its exit status and the
/// terminal's line settings once it is gone.
fn pane_command(snoop_args: &str) -> String {
    format!(
        "{SNOOP} {snoop_args}; echo \"snoop-exit=$?\"; \
         stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo \
         | sed 's/^/tty:/'"
    )
}

/// The screen line holding `needle`.
fn line_with<'a>(screen: &'a str, needle: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}:\n{screen}"))
}

/// After q: snoop exited 0 and left the alternate screen, and the
/// terminal edits lines and echoes again.
fn assert_quits_and_restores(t: &Tmux) {
    t.keys(&["q"], false);
    let s = t.wait_for("exit after q", |s| s.contains("snoop-exit="));
    assert!(s.contains("snoop-exit=0"), "{s}");
    assert_restored(t);
}

/// snoop is gone and the terminal is as before it: alternate screen left,
/// line editing and echo on.
fn assert_restored(t: &Tmux) {
    assert_eq!(t.format("#{alternate_on}"), "0", "alternate screen left");
    let s = t.wait_for("tty settings", |s| s.matches("tty:").count() == 2);
    assert!(
        s.lines().any(|l| l == "tty:icanon") && s.lines().any(|l| l == "tty:echo"),
        "raw mode left:\n{s}"
    );
    assert!(!s.contains("Connections"), "the view is gone:\n{s}");
}

fn flow(pid: u32, comm: &str, remote: &str, rport: u16) -> Flow {
    Flow {
        pid,
        tid: pid,
        comm: comm_bytes(comm),
        family: snoop_format::AF_INET,
        proto: 6,
        laddr: addr_bytes("10.0.0.1".parse().unwrap()),
        lport: 40000,
        raddr: addr_bytes(remote.parse().unwrap()),
        rport,
        ..Flow::default()
    }
}

/// Three seconds of two processes: alpha (4242) sends 6000 B to
/// 192.0.2.1:443 and receives 125 B in the last second; beta (4343)
/// receives 1000 B, then 1000000 B in the last second, from
/// 198.51.100.7:53.
fn write_trace(path: &Path, chunk_rows: usize) {
    let start = 100 * S;
    let info = FileInfo {
        start_ns: start,
        ..FileInfo::default()
    };
    let f = std::fs::File::create(path).unwrap();
    let opts = WriterOptions {
        chunk_rows,
        ..WriterOptions::default()
    };
    let mut w = TraceWriter::new(f, &info, opts).unwrap();
    let a = flow(4242, "alpha", "192.0.2.1", 443);
    let b = flow(4343, "beta", "198.51.100.7", 53);
    for i in 0..3 {
        w.push_message(start + 10 + i, &a, 1500, Direction::Tx)
            .unwrap();
    }
    w.push_message(start + 20, &b, 1000, Direction::Rx).unwrap();
    w.push_message(start + S + 5, &a, 1500, Direction::Tx)
        .unwrap();
    w.push_message(start + 2 * S + 5, &b, 1_000_000, Direction::Rx)
        .unwrap();
    w.push_message(start + 2 * S + 6, &a, 125, Direction::Rx)
        .unwrap();
    w.finish(start + 3 * S).unwrap();
}

#[test]
fn replay_in_tmux_sorts_switches_filters_and_quits() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("two.snp");
    write_trace(&trace, 1024);
    let t = Tmux::start(
        "replay",
        &pane_command(&format!("top --from {} --speed 20", trace.display())),
    );
    let s = t.wait_for("end of the replay", |s| s.contains("end of trace"));
    assert!(s.contains("+3 s of 3 s"), "{s}");
    // The last second's rates, in bit/s, and the totals.
    let beta = line_with(&s, "4343");
    assert!(
        beta.contains("beta") && beta.contains("8.0 Mbit/s") && beta.contains("977.5 KiB"),
        "{beta}"
    );
    let alpha = line_with(&s, "4242");
    assert!(
        alpha.contains("alpha")
            && alpha.contains("1.0 kbit/s")
            && alpha.contains("125 B")
            && alpha.contains("5.9 KiB"),
        "{alpha}"
    );
    let pos = |s: &str, n: &str| s.find(n).unwrap_or_else(|| panic!("{n}:\n{s}"));
    assert!(pos(&s, "4343") < pos(&s, "4242"), "by traffic:\n{s}");
    assert!(
        s.contains("s/S sort column") && s.contains("q quit") && s.contains("sort: traffic"),
        "{s}"
    );

    // Sort by PID, then reverse it: alpha's 4242 first.
    t.keys(&["s", "r"], false);
    let s = t.wait_for("sorted by PID, reversed", |s| {
        s.contains("sort: PID (reversed)")
    });
    assert!(pos(&s, "4242") < pos(&s, "4343"), "{s}");

    // Tab: connections, then remotes.
    t.keys(&["Tab"], false);
    let s = t.wait_for("connections view", |s| s.contains("LOCAL"));
    let c = line_with(&s, "192.0.2.1:443");
    assert!(
        c.contains("alpha") && c.contains("tcp") && c.contains("10.0.0.1:40000"),
        "{c}"
    );
    t.keys(&["Tab"], false);
    let s = t.wait_for("remotes view", |s| s.contains("PROCESSES"));
    let r = line_with(&s, "198.51.100.7");
    assert!(r.contains("beta") && r.contains("977.5 KiB"), "{r}");
    t.keys(&["Tab"], false);
    t.wait_for("processes view", |s| {
        s.contains("COMM") && !s.contains("PROCESSES")
    });

    // Filter by name.
    t.keys(&["/bet"], true);
    t.keys(&["Enter"], false);
    let s = t.wait_for("filter applied", |s| s.contains("filter: bet"));
    assert!(s.contains("4343") && !s.contains("4242"), "{s}");

    assert_quits_and_restores(&t);
}

/// A trace whose last messages chunk is damaged (its metadata's CRC no
/// longer matches) opens, replays up to that chunk, then fails: snoop exits 1
/// with the error, and the terminal is restored first.
#[test]
fn an_error_mid_replay_restores_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("bad.snp");
    write_trace(&trace, 2);
    let last = {
        let t = snoop_format::Trace::open(&trace).unwrap();
        let i = t
            .chunks_of(snoop_format::Table::Messages)
            .last()
            .expect("a messages chunk");
        let c = &t.chunks()[i];
        assert!(i > 0, "more than one chunk");
        // A byte of the chunk's metadata, past the 32-byte block header.
        c.offset + 40
    };
    let mut bytes = std::fs::read(&trace).unwrap();
    bytes[last as usize] ^= 0xff;
    std::fs::write(&trace, bytes).unwrap();
    let t = Tmux::start(
        "error",
        &pane_command(&format!("top --from {} --speed 20", trace.display())),
    );
    let s = t.wait_for("the error", |s| s.contains("snoop-exit="));
    assert!(s.contains("snoop-exit=1"), "{s}");
    let e = line_with(&s, "snoop: top --from");
    assert!(e.contains("read messages chunk"), "{e}");
    assert!(!s.contains("panicked"), "{s}");
    assert_restored(&t);
}

fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("SNOOP_REQUIRE_BPF").as_deref() == Ok("1") {
        panic!("{test}: needs root for eBPF and SNOOP_REQUIRE_BPF=1");
    }
    eprintln!("{test}: skipped: not root");
    false
}

#[test]
fn live_in_tmux_shows_the_tests_own_traffic() {
    if !root_or_skip("live_in_tmux_shows_the_tests_own_traffic") {
        return;
    }
    let me = std::process::id();
    let t = Tmux::start("live", &pane_command(&format!("top -p {me}")));
    t.wait_for("the view", |s| s.contains("live, every 1 s"));

    // 200 datagrams of 1 KiB to ourselves: 200 KiB sent, 200 KiB received.
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    let mut buf = [0u8; 1024];
    for _ in 0..200 {
        a.send(&buf).unwrap();
        assert_eq!(b.recv(&mut buf).unwrap(), 1024);
    }
    let s = t.wait_for("the test's own row with its totals", |s| {
        s.lines().any(|l| {
            l.split_whitespace().next() == Some(&me.to_string())
                && l.matches("200.0 KiB").count() == 2
        })
    });
    assert!(s.contains("Processes"), "{s}");
    // Under the name of this thread, the only one of the process that sent
    // or received anything.
    let comm = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
    let row = line_with(&s, &format!("{me} "));
    assert!(row.contains(comm.trim_end()), "{comm:?}: {row}");

    // The connection to b's port, as sent from a.
    t.keys(&["Tab"], false);
    let to_b = format!("127.0.0.1:{}", b.local_addr().unwrap().port());
    let from_a = format!("127.0.0.1:{}", a.local_addr().unwrap().port());
    let s = t.wait_for("the test's connection", |s| {
        s.contains("LOCAL") && s.contains(&to_b)
    });
    let c = s
        .lines()
        .find(|l| l.contains(&from_a) && l.contains(&to_b))
        .unwrap_or_else(|| panic!("no connection {from_a} -> {to_b}:\n{s}"));
    assert!(c.contains("udp") && c.contains("200.0 KiB"), "{c}");

    assert_quits_and_restores(&t);
}

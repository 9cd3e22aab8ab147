//! What the end-to-end tests of the real recorder share: the `snoop`
//! binary, the one-recorder-at-a-time lock, skipping (or failing, with
//! SNOOP_REQUIRE_BPF=1) without root, and a recorder started as a user
//! would, waited for by its `snoop: recording to FILE` line.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const SNOOP: &str = env!("CARGO_BIN_EXE_snoop");

/// One recorder at a time.
pub static BPF: Mutex<()> = Mutex::new(());

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Take the BPF lock, or return None (test skipped) when not root.
pub fn bpf_or_skip(test: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    if !is_root() {
        if std::env::var("SNOOP_REQUIRE_BPF").as_deref() == Ok("1") {
            panic!("{test}: needs root for eBPF and SNOOP_REQUIRE_BPF=1");
        }
        eprintln!("skipping {test}: needs root (eBPF); set SNOOP_REQUIRE_BPF=1 to fail instead");
        return None;
    }
    Some(BPF.lock().unwrap_or_else(|p| p.into_inner()))
}

pub struct Recorder {
    /// The `snoop record` process.
    pub child: Child,
    stderr: mpsc::Receiver<String>,
    lines: Vec<String>,
}

/// Start `snoop record -o path ARGS` and wait (no sleep) for its
/// `snoop: recording to FILE` line.
pub fn start_recorder(path: &Path, args: &[&str], env: &[(&str, &str)]) -> Recorder {
    let mut c = Command::new(SNOOP);
    c.arg("record").arg("-o").arg(path).args(args);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // Only the sudo identity a test asks for (the recorder becomes it).
    c.env_remove("SUDO_UID").env_remove("SUDO_GID");
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("spawn snoop record");
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    let mut r = Recorder {
        child,
        stderr: rx,
        lines: Vec::new(),
    };
    let want = format!("snoop: recording to {}", path.display());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match r.stderr.recv_timeout(left) {
            Ok(l) => {
                let done = l.contains(&want);
                r.lines.push(l);
                if done {
                    return r;
                }
            }
            Err(_) => {
                let _ = r.child.kill();
                panic!("recorder never became ready: {:?}", r.lines);
            }
        }
    }
}

impl Recorder {
    /// Stop with SIGINT and return the recorder's stderr, checking it
    /// succeeded. No wait is needed before: stopping detaches the programs
    /// and then drains every record they emitted.
    pub fn stop(self) -> String {
        self.signal(libc::SIGINT);
        let (status, stderr) = self.wait(30);
        assert!(status.success(), "snoop record failed: {stderr}");
        stderr
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Wait for exit (at most `secs`), returning status and all stderr.
    pub fn wait(mut self, secs: u64) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("recorder did not exit in {secs}s: {:?}", self.lines);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            self.lines.push(l);
        }
        (status, self.lines.join("\n"))
    }
}

pub fn info_json(path: &Path) -> serde_json::Value {
    let out = Command::new(SNOOP)
        .args(["info", "--json"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "snoop info {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `snoop ARGS`' standard output, checking it succeeded.
pub fn stdout_of(args: &[&str]) -> String {
    let out = Command::new(SNOOP).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "snoop {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

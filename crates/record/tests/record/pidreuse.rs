//! Pid reuse: a process exits and a new one is created with the very same
//! pid (clone3 with `set_tid`, which root may ask for). Attribution is keyed
//! by socket cookie, never by pid, so each process keeps exactly its own
//! bytes and name: nothing of the first leaks to the second.

use std::ffi::CString;

use crate::util::{bpf_ok, name, opts, peer_bin, server, spawn, start, totals, wait_ok};
use snoop_format::Table;

/// `struct clone_args` up to `set_tid_size` (CLONE_ARGS_SIZE_VER1).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
}

/// Run snoop-peer with `args` as a new process whose pid is `pid`; returns
/// once it exited successfully.
fn run_with_pid(pid: u32, args: &[&str]) {
    let bin = CString::new(peer_bin()).unwrap();
    let argv: Vec<CString> = std::iter::once(peer_bin())
        .chain(args.iter().copied())
        .map(|a| CString::new(a).unwrap())
        .collect();
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let env: [*const libc::c_char; 1] = [std::ptr::null()];
    let tid = [libc::pid_t::try_from(pid).unwrap()];
    let ca = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: tid.as_ptr() as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 with no shared memory (a fork); the child only calls
    // execve and _exit, both async-signal-safe, on memory prepared above.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &ca as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r == 0 {
        // SAFETY: see above; argv/env are NUL-terminated pointer arrays.
        unsafe {
            libc::execve(bin.as_ptr(), ptrs.as_ptr(), env.as_ptr());
            libc::_exit(127);
        }
    }
    assert!(
        r > 0,
        "clone3 with set_tid {pid}: {}",
        std::io::Error::last_os_error()
    );
    assert_eq!(r as u32, pid, "the new process got the reused pid");
    let mut st = 0;
    // SAFETY: waiting for our own child.
    let w = unsafe { libc::waitpid(pid as libc::pid_t, &mut st, 0) };
    assert_eq!(w as u32, pid);
    assert!(
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
        "peer failed: {st}"
    );
}

#[test]
fn a_reused_pid_does_not_inherit_bytes() {
    if !bpf_ok("a_reused_pid_does_not_inherit_bytes") {
        return;
    }
    let (sn, an, bn) = (name("rs"), name("ra"), name("rb"));
    let rec = start(opts(&[&sn, &an, &bn]));
    // One echo server for both clients: 3 + 5 datagrams.
    let (srv, port) = server("udp-server", &sn, "127.0.0.1:0", 8, 0);
    let peer = format!("127.0.0.1:{port}");
    let (a, _) = spawn(&["udp-client", &an, &peer, "3", "100", "connected"]);
    let pid = a.id();
    wait_ok(a);
    run_with_pid(pid, &["udp-client", &bn, &peer, "5", "200", "connected"]);
    wait_ok(srv);
    let (t, _s, _d) = rec.stop();
    let m = totals(&t, Table::Messages);
    let (ab, apid) = m[&an];
    let (bb, bpid) = m[&bn];
    assert_eq!((apid, bpid), (pid, pid), "both ran as pid {pid}");
    assert_eq!((ab.tx, ab.rx), (300, 300), "first process: {ab:?}");
    assert_eq!((bb.tx, bb.rx), (1000, 1000), "second process: {bb:?}");
    // Wire packets follow their socket's owner too.
    let p = totals(&t, Table::Packets);
    assert_eq!(p[&an].0.n, 6, "first process's datagrams on the wire");
    assert_eq!(p[&bn].0.n, 10, "second process's datagrams on the wire");
}

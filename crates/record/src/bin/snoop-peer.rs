//! snoop-peer: a tiny traffic peer for snoop's real eBPF tests. It renames
//! itself (prctl PR_SET_NAME) so each test process has a distinct comm, then
//! sends and receives exactly the requested bytes over TCP or UDP, IPv4 or
//! IPv6, connected or not, and prints what it did. Servers print
//! `ready PORT` on stdout once bound, so tests wait on a pipe, not a sleep.
//!
//! Usage:
//!   snoop-peer tcp-server NAME BIND_ADDR RECV_BYTES SEND_BYTES
//!   snoop-peer tcp-client NAME PEER_ADDR:PORT SEND_BYTES RECV_BYTES
//!   snoop-peer udp-server NAME BIND_ADDR DATAGRAMS SIZE     (echo, unconnected)
//!   snoop-peer udp-client NAME PEER_ADDR:PORT DATAGRAMS SIZE connected|unconnected
//!   snoop-peer tcp-hold NAME PEER_ADDR:PORT SEND_BYTES      (connect, print
//!             `connected`, wait for a line on stdin, send, read the echo, exit)
//!   snoop-peer udp-blast NAME RATE MILLIS SIZE   (loopback datagrams to its
//!             own reader thread at RATE/s, 0 = flat out; for benches)

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;

/// No wait in a test may hang: a peer that hears nothing for this long fails.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

fn set_name(name: &str) {
    if let Ok(c) = std::ffi::CString::new(name) {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of <= 16 bytes
        // (the kernel truncates longer ones).
        unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) };
    }
}

fn num(s: Option<&String>, what: &str) -> Result<usize, String> {
    s.ok_or(format!("missing {what}"))?
        .parse()
        .map_err(|e| format!("bad {what}: {e}"))
}

fn addr(s: Option<&String>, what: &str) -> Result<SocketAddr, String> {
    s.ok_or(format!("missing {what}"))?
        .parse()
        .map_err(|e| format!("bad {what}: {e}"))
}

fn ready(port: u16) -> Result<(), String> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "ready {port}")
        .and_then(|_| o.flush())
        .map_err(|e| e.to_string())
}

fn read_exact_count(s: &mut TcpStream, n: usize) -> Result<(), String> {
    let mut buf = vec![0u8; 65536];
    let mut left = n;
    while left > 0 {
        let want = left.min(buf.len());
        let got = s.read(&mut buf[..want]).map_err(|e| e.to_string())?;
        if got == 0 {
            return Err(format!("eof with {left} bytes still expected"));
        }
        left -= got;
    }
    Ok(())
}

fn write_count(s: &mut TcpStream, n: usize) -> Result<(), String> {
    let buf = vec![0x5au8; n.min(65536)];
    let mut left = n;
    while left > 0 {
        let k = left.min(buf.len());
        s.write_all(&buf[..k]).map_err(|e| e.to_string())?;
        left -= k;
    }
    Ok(())
}

/// Send SIZE-byte datagrams to a receiving thread of this process over
/// loopback at RATE per second (0: as fast as possible) for MILLIS ms, then
/// print `sent N received M seconds S`. Pacing is by catching up with the
/// schedule every 50 µs, so the rate is exact over the run when the
/// sender can reach it.
fn udp_blast(rate: u64, millis: u64, size: usize) -> Result<(), String> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let rx = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let to = rx.local_addr().map_err(|e| e.to_string())?;
    rx.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let received = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (r2, d2) = (Arc::clone(&received), Arc::clone(&done));
    // The thread inherits the comm set above (clone copies it).
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        loop {
            match rx.recv(&mut buf) {
                Ok(_) => {
                    r2.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) if d2.load(Ordering::Relaxed) => return,
                Err(_) => {}
            }
        }
    });
    let tx = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    tx.connect(to).map_err(|e| e.to_string())?;
    let out = vec![0x42u8; size];
    let start = Instant::now();
    let end = Duration::from_millis(millis);
    let mut sent = 0u64;
    loop {
        let el = start.elapsed();
        if el >= end {
            break;
        }
        let due = if rate == 0 {
            sent + 256
        } else {
            (el.as_nanos() as u64).saturating_mul(rate) / 1_000_000_000
        };
        if sent >= due {
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        // At most 256 at once, so a sender that fell behind still stops on
        // time (it then reports the rate it reached).
        for _ in 0..(due - sent).min(256) {
            // A full receive buffer is the receiver's loss, not an error:
            // count what the kernel accepted.
            if tx.send(&out).is_ok() {
                sent += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    reader.join().map_err(|_| "reader thread panicked")?;
    println!(
        "sent {sent} received {} seconds {secs:.3}",
        received.load(Ordering::Relaxed)
    );
    Ok(())
}

fn run(a: &[String]) -> Result<(), String> {
    let mode = a.get(1).ok_or("missing mode")?.as_str();
    let name = a.get(2).ok_or("missing NAME")?;
    set_name(name);
    match mode {
        "tcp-server" => {
            let l = TcpListener::bind(addr(a.get(3), "BIND_ADDR")?).map_err(|e| e.to_string())?;
            ready(l.local_addr().map_err(|e| e.to_string())?.port())?;
            let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
            read_exact_count(&mut s, num(a.get(4), "RECV_BYTES")?)?;
            write_count(&mut s, num(a.get(5), "SEND_BYTES")?)?;
            s.shutdown(std::net::Shutdown::Write)
                .map_err(|e| e.to_string())?;
            // Wait for the client's close so both sides' bytes are final.
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            Ok(())
        }
        "tcp-client" => {
            let mut s = TcpStream::connect(addr(a.get(3), "PEER")?).map_err(|e| e.to_string())?;
            write_count(&mut s, num(a.get(4), "SEND_BYTES")?)?;
            read_exact_count(&mut s, num(a.get(5), "RECV_BYTES")?)?;
            Ok(())
        }
        "tcp-hold" => {
            let mut s = TcpStream::connect(addr(a.get(3), "PEER")?).map_err(|e| e.to_string())?;
            let n = num(a.get(4), "SEND_BYTES")?;
            println!("connected");
            std::io::stdout().flush().map_err(|e| e.to_string())?;
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            write_count(&mut s, n)?;
            read_exact_count(&mut s, n)?;
            Ok(())
        }
        "udp-server" => {
            let s = UdpSocket::bind(addr(a.get(3), "BIND_ADDR")?).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(TIMEOUT))
                .map_err(|e| e.to_string())?;
            ready(s.local_addr().map_err(|e| e.to_string())?.port())?;
            let count = num(a.get(4), "DATAGRAMS")?;
            let mut buf = vec![0u8; 65536];
            for _ in 0..count {
                let (n, from) = s
                    .recv_from(&mut buf)
                    .map_err(|e| format!("receive (nothing for {TIMEOUT:?}?): {e}"))?;
                s.send_to(&buf[..n], from).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        "udp-client" => {
            let peer = addr(a.get(3), "PEER")?;
            let count = num(a.get(4), "DATAGRAMS")?;
            let size = num(a.get(5), "SIZE")?;
            let connected = a.get(6).map(String::as_str) == Some("connected");
            // Loopback peers get a loopback source; others (a veth in a
            // test's network namespace) let the route pick it.
            let bind: SocketAddr = match (peer.is_ipv4(), peer.ip().is_loopback()) {
                (true, true) => "127.0.0.1:0",
                (false, true) => "[::1]:0",
                (true, false) => "0.0.0.0:0",
                (false, false) => "[::]:0",
            }
            .parse()
            .map_err(|e| format!("{e}"))?;
            let s = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(TIMEOUT))
                .map_err(|e| e.to_string())?;
            let out = vec![0xa5u8; size];
            let mut buf = vec![0u8; 65536];
            if connected {
                s.connect(peer).map_err(|e| e.to_string())?;
            }
            for _ in 0..count {
                if connected {
                    s.send(&out).map_err(|e| e.to_string())?;
                    s.recv(&mut buf)
                        .map_err(|e| format!("receive (no echo for {TIMEOUT:?}?): {e}"))?;
                } else {
                    s.send_to(&out, peer).map_err(|e| e.to_string())?;
                    s.recv_from(&mut buf)
                        .map_err(|e| format!("receive (no echo for {TIMEOUT:?}?): {e}"))?;
                }
            }
            Ok(())
        }
        "udp-blast" => udp_blast(
            num(a.get(3), "RATE")? as u64,
            num(a.get(4), "MILLIS")? as u64,
            num(a.get(5), "SIZE")?,
        ),
        other => Err(format!("unknown mode {other}")),
    }
}

fn main() -> ExitCode {
    let a: Vec<String> = std::env::args().collect();
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("snoop-peer: {e}");
            ExitCode::FAILURE
        }
    }
}

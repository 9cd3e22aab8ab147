//! snb-loadgen: workload generator for benches/compare (std only; built with
//! `rustc -O`, not part of the cargo workspace). Every process renames itself
//! (PR_SET_NAME) so a trace can be checked per comm against the exact byte
//! counts printed here (the workload's own ground truth).
//!
//!   snb-loadgen server KIND ADDR SIZE        KIND: rr | conn | udp
//!       binds ADDR (port 0 = any), prints `ready PORT`, serves until stdin is
//!       closed, then prints one JSON line with its totals and exits.
//!       rr: echo SIZE-byte messages per connection (a thread each);
//!       conn: per connection read SIZE, write SIZE, close (server closes first);
//!       udp: count datagrams.
//!       sink: read every connection to its end (bulk).
//!   snb-loadgen client KIND ADDR SECS SIZE [OPS]   KIND: rr | conn | udp | proc | bulk
//!       drives the server for SECS seconds, or until OPS operations are
//!       done (fixed work: connections, datagrams; bulk: OPS bytes written
//!       in SIZE-byte writes on one connection to a `sink` server), prints
//!       one JSON line {"ops":..,"secs":..,"tx_bytes":..,"rx_bytes":..,"failed":..}.
//!       proc: spawns `snb-loadgen oneshot ADDR SIZE` (comm snb-oneshot) one
//!       after another, each a fresh process doing one `conn` exchange.
//!   snb-loadgen oneshot ADDR SIZE

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

extern "C" {
    fn prctl(option: i32, arg2: usize, arg3: usize, arg4: usize, arg5: usize) -> i32;
}

fn set_name(name: &str) {
    let mut b = name.as_bytes().to_vec();
    b.truncate(15);
    b.push(0);
    // SAFETY: PR_SET_NAME (15) reads a NUL-terminated string of <= 16 bytes.
    unsafe { prctl(15, b.as_ptr() as usize, 0, 0, 0) };
}

#[derive(Default)]
struct Totals {
    tx: AtomicU64,
    rx: AtomicU64,
    msgs_rx: AtomicU64,
    conns: AtomicU64,
}

fn read_exact_n(s: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = s.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

fn server(kind: &str, addr: SocketAddr, size: usize) {
    set_name(&format!("snb-srv-{kind}"));
    let t = Arc::new(Totals::default());
    let port;
    if kind == "udp" {
        let s = UdpSocket::bind(addr).expect("bind");
        port = s.local_addr().unwrap().port();
        let t2 = t.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                if let Ok(n) = s.recv(&mut buf) {
                    t2.rx.fetch_add(n as u64, Relaxed);
                    t2.msgs_rx.fetch_add(1, Relaxed);
                }
            }
        });
    } else {
        let l = TcpListener::bind(addr).expect("bind");
        port = l.local_addr().unwrap().port();
        let t2 = t.clone();
        let kind = kind.to_string();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                t2.conns.fetch_add(1, Relaxed);
                let _ = c.set_nodelay(true);
                if kind == "sink" {
                    let t3 = t2.clone();
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 1 << 17];
                        while let Ok(n) = c.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            t3.rx.fetch_add(n as u64, Relaxed);
                        }
                    });
                } else if kind == "rr" {
                    let t3 = t2.clone();
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; size];
                        loop {
                            match read_exact_n(&mut c, &mut buf) {
                                Ok(n) if n > 0 => {
                                    t3.rx.fetch_add(n as u64, Relaxed);
                                    if n < size || c.write_all(&buf).is_err() {
                                        break;
                                    }
                                    t3.tx.fetch_add(size as u64, Relaxed);
                                }
                                _ => break,
                            }
                        }
                    });
                } else {
                    let mut buf = vec![0u8; size];
                    if let Ok(n) = read_exact_n(&mut c, &mut buf) {
                        t2.rx.fetch_add(n as u64, Relaxed);
                        if n == size && c.write_all(&buf).is_ok() {
                            t2.tx.fetch_add(size as u64, Relaxed);
                        }
                    }
                    drop(c);
                }
            }
        });
    }
    println!("ready {port}");
    std::io::stdout().flush().unwrap();
    // Serve until the harness closes our stdin.
    for _ in std::io::stdin().lock().lines() {}
    // Let in-flight datagrams land.
    std::thread::sleep(Duration::from_millis(200));
    println!(
        "{{\"pid\":{},\"tx_bytes\":{},\"rx_bytes\":{},\"rx_msgs\":{},\"conns\":{}}}",
        std::process::id(),
        t.tx.load(Relaxed),
        t.rx.load(Relaxed),
        t.msgs_rx.load(Relaxed),
        t.conns.load(Relaxed)
    );
    std::process::exit(0);
}

/// One `conn` exchange; returns (tx, rx) bytes.
fn one_conn(addr: SocketAddr, buf: &mut [u8]) -> std::io::Result<(u64, u64)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.write_all(buf)?;
    let mut rx = 0u64;
    loop {
        let n = s.read(buf)?;
        if n == 0 {
            break;
        }
        rx += n as u64;
    }
    Ok((buf.len() as u64, rx))
}

fn client(kind: &str, addr: SocketAddr, secs: f64, size: usize, limit: u64) {
    set_name(&format!("snb-cli-{kind}"));
    let dur = Duration::from_secs_f64(secs);
    let start = Instant::now();
    // Fixed work: stop after `limit` operations (whichever comes first).
    let more = |ops: u64| ops < limit && start.elapsed() < dur;
    let (mut ops, mut tx, mut rx, mut failed) = (0u64, 0u64, 0u64, 0u64);
    let mut buf = vec![0x5au8; size];
    match kind {
        "rr" => {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.set_nodelay(true).unwrap();
            while start.elapsed() < dur {
                for _ in 0..64 {
                    s.write_all(&buf).expect("write");
                    tx += size as u64;
                    let n = read_exact_n(&mut s, &mut buf).expect("read");
                    rx += n as u64;
                    ops += 1;
                }
            }
        }
        "conn" => {
            while more(ops) {
                match one_conn(addr, &mut buf) {
                    Ok((t, r)) => {
                        tx += t;
                        rx += r;
                        ops += 1;
                    }
                    Err(_) => failed += 1,
                }
            }
        }
        "udp" => {
            let s = UdpSocket::bind(if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })
                .expect("bind");
            s.connect(addr).expect("connect");
            while more(ops) {
                for _ in 0..256.min(limit - ops) {
                    match s.send(&buf) {
                        Ok(n) => {
                            tx += n as u64;
                            ops += 1;
                        }
                        Err(_) => failed += 1,
                    }
                }
            }
        }
        "bulk" => {
            let mut s = TcpStream::connect(addr).expect("connect");
            while more(tx) {
                let n = (size as u64).min(limit - tx) as usize;
                s.write_all(&buf[..n]).expect("write");
                tx += n as u64;
            }
            ops = tx;
            drop(s);
        }
        "proc" => {
            let me = std::env::current_exe().expect("exe");
            while start.elapsed() < dur {
                let st = std::process::Command::new(&me)
                    .args(["oneshot", &addr.to_string(), &size.to_string()])
                    .status();
                match st {
                    Ok(s) if s.success() => {
                        tx += size as u64;
                        rx += size as u64;
                        ops += 1;
                    }
                    _ => failed += 1,
                }
            }
        }
        _ => panic!("unknown kind {kind}"),
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"pid\":{},\"ops\":{ops},\"secs\":{secs:.6},\"tx_bytes\":{tx},\"rx_bytes\":{rx},\"failed\":{failed}}}",
        std::process::id()
    );
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let get = |i: usize| a.get(i).unwrap_or_else(|| panic!("missing argument {i}")).clone();
    match get(1).as_str() {
        "server" => server(&get(2), get(3).parse().expect("addr"), get(4).parse().expect("size")),
        "client" => client(
            &get(2),
            get(3).parse().expect("addr"),
            get(4).parse().expect("secs"),
            get(5).parse().expect("size"),
            a.get(6).map_or(u64::MAX, |n| n.parse().expect("ops")),
        ),
        "oneshot" => {
            set_name("snb-oneshot");
            let mut buf = vec![0x5au8; get(3).parse().expect("size")];
            match one_conn(get(2).parse().expect("addr"), &mut buf) {
                Ok((_, r)) if r as usize == buf.len() => {}
                _ => std::process::exit(1),
            }
        }
        m => panic!("unknown mode {m}"),
    }
}

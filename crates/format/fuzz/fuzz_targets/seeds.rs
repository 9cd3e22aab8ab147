//! Writes the seed corpus for the `trace` target into the directory given
//! as the first argument: small complete and unfinished traces, with and
//! without the CRC fix-up mode byte.

#[path = "../../tests/support/mod.rs"]
mod support;

fn main() {
    let dir = std::env::args().nth(1).expect("usage: seeds DIR");
    std::fs::create_dir_all(&dir).expect("create corpus dir");
    let mut n = 0;
    for (events, rows) in [(5, 4), (40, 16), (200, 64), (1, 1)] {
        for finish in [true, false] {
            let t = support::sample_trace(events, rows, finish);
            for mode in [0u8, 1] {
                let mut v = vec![mode];
                v.extend_from_slice(&t);
                let name = format!("{dir}/seed-{events}-{rows}-{finish}-{mode}");
                std::fs::write(&name, v).expect("write seed");
                n += 1;
            }
        }
    }
    eprintln!("wrote {n} seeds to {dir}");
}

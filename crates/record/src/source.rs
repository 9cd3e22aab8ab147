//! Where raw records come from: the [`EventSource`] trait, the batch type
//! that carries raw records between threads, and the kernel counters.
//!
//! The real source is the BPF ring buffer ([`crate::kernel`]); tests inject
//! a fake one (bandwhich's `OsInputOutput` idea) so the pipeline after the
//! kernel — decode, write, stats, stop conditions — runs without root.

use std::time::Duration;

use crate::skel::{kind, MSGS_HEADER};

/// Bytes of one message record (`struct snoop_msg`).
const MSG_BYTES: usize = 96;
/// Messages one staged batch holds at most (`SNOOP_MSG_BATCH`).
pub const MSGS_MAX: usize = 16;

/// Raw records copied out of the ring buffers, in order. Copying is a
/// memcpy per record into a small batch that stays in cache until the
/// same thread decodes it.
#[derive(Default, Debug)]
pub struct RawBatch {
    buf: Vec<u8>,
    count: usize,
}

impl RawBatch {
    /// An empty batch with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> RawBatch {
        RawBatch {
            buf: Vec::with_capacity(bytes),
            count: 0,
        }
    }

    /// Append one record.
    pub fn push(&mut self, rec: &[u8]) {
        // Records are a few hundred bytes at most; a u32 length is plenty.
        let len = u32::try_from(rec.len()).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(&rec[..len as usize]);
        self.count += 1;
    }

    /// Append what one ring-buffer record holds: the record itself or, for
    /// a batch of staged messages ([`kind::MSGS`]), each of its messages.
    /// Returns the records appended. A batch that does not hold what its
    /// count says is appended whole, so the decoder counts it as one bad
    /// record instead of it vanishing.
    pub fn push_ring_record(&mut self, rec: &[u8]) -> usize {
        if rec.first() != Some(&kind::MSGS) {
            self.push(rec);
            return 1;
        }
        let n = usize::from(rec.get(1).copied().unwrap_or(0));
        let msg = MSG_BYTES;
        let body = rec.get(MSGS_HEADER..).unwrap_or_default();
        if n == 0 || n > MSGS_MAX || body.len() < n * msg {
            self.push(rec);
            return 1;
        }
        for m in body.chunks_exact(msg).take(n) {
            self.push(m);
        }
        n
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes held (records plus length prefixes).
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Iterate over the records.
    pub fn iter(&self) -> RawIter<'_> {
        RawIter { rest: &self.buf }
    }

    /// Forget the records, keep the memory (batches are recycled so the
    /// drain loop does not fault in fresh pages every poll).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.count = 0;
    }
}

/// Iterator over the records of a [`RawBatch`].
pub struct RawIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for RawIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.rest.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let rec = rest.get(..len)?;
        self.rest = &rest[len..];
        Some(rec)
    }
}

/// Cumulative kernel counters of one record kind, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindCounters {
    /// Records written into the ring buffer.
    pub events: u64,
    /// Records lost because the ring buffer was full.
    pub drops: u64,
}

/// Counters of every record kind, indexed by [`crate::skel::kind`].
pub type Counters = [KindCounters; kind::COUNT];

/// Cumulative map-pressure counters of the kernel side, summed over CPUs:
/// what it could not remember, so attribution or tracking may be incomplete.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pressure {
    /// Inserts into the kernel's socket-owner map refused because it was
    /// full (those sockets' packets and state changes stay unattributed
    /// until an insert succeeds).
    pub owner_map_full: u64,
    /// Processes selected by --pid/--comm/--follow that did not fit in the
    /// tracked-process map (their events are not recorded).
    pub tracked_full: u64,
}

/// A producer of raw records.
pub trait EventSource {
    /// Wait at most `timeout` for records and append up to `max` of those
    /// available to `out` (fewer than `max` means the source is empty for
    /// now). Returning with nothing appended is normal.
    fn poll(&mut self, timeout: Duration, out: &mut RawBatch, max: usize) -> anyhow::Result<()>;

    /// Cumulative counters since the source started.
    fn counters(&mut self) -> anyhow::Result<Counters>;

    /// Cumulative map-pressure counters since the source started.
    fn pressure(&mut self) -> anyhow::Result<Pressure> {
        Ok(Pressure::default())
    }

    /// Stop producing records (detach the kernel's programs). Called once
    /// when recording stops, before the last drain, so that drain sees
    /// every record there will ever be.
    fn detach(&mut self) {}

    /// The hook groups and their states (`active`, `off: …`,
    /// `refused: …`), for the trace; empty for sources without hooks.
    fn hooks(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Recording settings the trace keeps beside the hook groups (in the
    /// same block: `packet_mode`); empty for sources without any.
    fn settings(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// A source that replays prepared records once, then stays empty; for tests
/// of the pipeline without a kernel.
#[derive(Debug, Default)]
pub struct ReplaySource {
    records: std::collections::VecDeque<Vec<u8>>,
    per_poll: usize,
    counters: Counters,
}

impl ReplaySource {
    /// Replay `records`, at most `per_poll` per poll call; `drops` are
    /// reported as kernel drops per kind.
    pub fn new(records: Vec<Vec<u8>>, per_poll: usize, drops: Counters) -> ReplaySource {
        ReplaySource {
            records: records.into(),
            per_poll: per_poll.max(1),
            counters: drops,
        }
    }

    /// Records not yet handed out.
    pub fn remaining(&self) -> usize {
        self.records.len()
    }
}

impl EventSource for ReplaySource {
    fn poll(&mut self, timeout: Duration, out: &mut RawBatch, max: usize) -> anyhow::Result<()> {
        if self.records.is_empty() {
            std::thread::sleep(timeout.min(Duration::from_millis(5)));
            return Ok(());
        }
        for _ in 0..self.per_poll.min(max.max(1)) {
            let Some(r) = self.records.pop_front() else {
                break;
            };
            if let Some(&k) = r.first() {
                if let Some(c) = self.counters.get_mut(k as usize) {
                    c.events += 1;
                }
            }
            out.push(&r);
        }
        Ok(())
    }

    fn counters(&mut self) -> anyhow::Result<Counters> {
        Ok(self.counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trip() {
        let mut b = RawBatch::default();
        b.push(&[1, 2, 3]);
        b.push(&[]);
        b.push(&[4]);
        let v: Vec<&[u8]> = b.iter().collect();
        assert_eq!(v, vec![&[1u8, 2, 3][..], &[][..], &[4][..]]);
        assert_eq!(b.len(), 3);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.iter().count(), 0);
        b.push(&[5, 6]);
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![&[5u8, 6][..]]);
    }

    /// A staged batch of `n` messages as the kernel writes it, message `i`
    /// filled with byte `i + 1` after its kind byte.
    fn msgs(n: u8, room: usize) -> Vec<u8> {
        let mut r = vec![0u8; MSGS_HEADER + room * MSG_BYTES];
        r[0] = kind::MSGS;
        r[1] = n;
        for i in 0..room {
            let m = &mut r[MSGS_HEADER + i * MSG_BYTES..][..MSG_BYTES];
            m[0] = kind::MSG;
            m[1..].fill(i as u8 + 1);
        }
        r
    }

    #[test]
    fn a_message_batch_becomes_its_messages() {
        let mut b = RawBatch::default();
        assert_eq!(b.push_ring_record(&[kind::CONN, 9]), 1);
        // Three messages written (room for them only, as the ring holds it).
        assert_eq!(b.push_ring_record(&msgs(3, 3)), 3);
        let v: Vec<&[u8]> = b.iter().collect();
        assert_eq!(v.len(), 4);
        assert_eq!(v[0], &[kind::CONN, 9][..]);
        for (i, m) in v[1..].iter().enumerate() {
            assert_eq!(m.len(), MSG_BYTES);
            assert_eq!(m[0], kind::MSG);
            assert!(
                m[1..].iter().all(|&x| x == i as u8 + 1),
                "message {i} out of place"
            );
        }
        // A full batch read out of the stage map (room for 16, 16 used).
        b.clear();
        assert_eq!(b.push_ring_record(&msgs(16, 16)), 16);
        assert_eq!(b.len(), 16);
    }

    #[test]
    fn a_batch_short_of_its_count_stays_one_bad_record() {
        let mut b = RawBatch::default();
        let short = msgs(4, 3);
        assert_eq!(b.push_ring_record(&short), 1);
        assert_eq!(b.iter().next(), Some(&short[..]));
        for bad in [msgs(0, 2), msgs(17, 17), vec![kind::MSGS]] {
            b.clear();
            assert_eq!(b.push_ring_record(&bad), 1);
            assert_eq!(b.iter().next(), Some(&bad[..]));
        }
    }
}

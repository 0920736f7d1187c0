//! Draining an agent's stdout and stderr: every byte to its log file, the last lines to a
//! bounded in-memory tail. The pipe is read as fast as the agent writes; memory stays bounded
//! however much it writes.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Longest line kept in a tail; longer lines are cut (the log file keeps them whole).
const MAX_LINE: usize = 4096;

/// The last lines of one stream.
#[derive(Debug, Default)]
pub struct Tail {
    lines: VecDeque<String>,
    partial: Vec<u8>,
    max_lines: usize,
    /// Bytes written to the stream so far.
    pub bytes: u64,
    /// Lines completed so far (including those no longer held).
    pub line_count: u64,
    /// Bytes that did not reach the log file (a full or failing disk): the log holds the
    /// stream up to `dropped_since` and nothing after it.
    pub dropped: u64,
    /// When the first byte was dropped.
    pub dropped_since: Option<std::time::SystemTime>,
    /// Masks the operator's secrets before the log and the tail see the bytes.
    masker: crate::secrets::Masker,
}

impl Tail {
    pub fn new(max_lines: usize) -> Tail {
        Tail {
            max_lines: max_lines.max(1),
            ..Tail::default()
        }
    }

    /// Counts `n` bytes that did not reach the log file.
    pub fn drop_bytes(&mut self, n: usize) {
        if n > 0 {
            self.dropped += n as u64;
            self.dropped_since
                .get_or_insert_with(std::time::SystemTime::now);
        }
    }

    /// Appends a chunk. Only the lines that can still be held are built: a chunk of many
    /// thousand lines costs one SIMD newline count and the last `max_lines` lines.
    pub fn push(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        // The last `max_lines` newlines of the chunk, in order.
        let mut ends: Vec<usize> = memchr::memrchr_iter(b'\n', data)
            .take(self.max_lines)
            .collect();
        ends.reverse();
        let Some(&first_end) = ends.first() else {
            self.extend_partial(data);
            return;
        };
        // Is `first_end` the chunk's first newline? Then its line starts with the partial line.
        let before = memchr::memrchr(b'\n', &data[..first_end]);
        let skipped = match before {
            None => 0,
            Some(_) => memchr::memchr_iter(b'\n', &data[..first_end]).count(),
        };
        self.line_count += (skipped + ends.len()) as u64;
        let mut start = match before {
            None => 0,
            Some(p) => {
                // The partial line ended inside the skipped part, with lines no one can see.
                self.partial.clear();
                p + 1
            }
        };
        for e in ends {
            self.extend_partial(&data[start..e]);
            let line = String::from_utf8_lossy(&self.partial)
                .trim_end_matches('\r')
                .to_string();
            self.partial.clear();
            if self.lines.len() == self.max_lines {
                self.lines.pop_front();
            }
            self.lines.push_back(line);
            start = e + 1;
        }
        self.extend_partial(&data[start..]);
    }

    fn extend_partial(&mut self, data: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&data[..data.len().min(room)]);
    }

    /// The last `n` lines, an unfinished last line included.
    pub fn last(&self, n: usize) -> Vec<String> {
        let mut out: Vec<String> = self.lines.iter().cloned().collect();
        if !self.partial.is_empty() {
            out.push(String::from_utf8_lossy(&self.partial).to_string());
        }
        let skip = out.len().saturating_sub(n);
        out.split_off(skip)
    }
}

pub type SharedTail = Arc<Mutex<Tail>>;

/// Where one stream of a step goes: its log file (absent if it could not be opened: the run's
/// record says so) and the run's tail of that stream.
pub(crate) struct StreamSink {
    pub log: Option<File>,
    pub tail: SharedTail,
}

impl StreamSink {
    /// Appends one chunk of output to the log and the tail. A full disk must not stall the
    /// agent: the tail still gets the bytes. From the first write that fails on, the log is
    /// left as it is (complete up to then, never with a hole) and the bytes are counted as
    /// dropped, for the run's record.
    pub fn deliver(&mut self, chunk: &[u8]) {
        // The operator's secrets never reach the log or the tail (crate::secrets).
        if !crate::secrets::any() {
            return self.write(chunk);
        }
        let masked = match self.tail.lock() {
            Ok(mut t) => t.masker.mask(chunk),
            Err(_) => std::borrow::Cow::Borrowed(chunk),
        };
        self.write(&masked);
    }

    fn write(&mut self, chunk: &[u8]) {
        let unwritten = match self.log.as_mut() {
            Some(log) => {
                let rest = write_some(log, chunk);
                if rest > 0 {
                    self.log = None;
                }
                rest
            }
            None => chunk.len(),
        };
        if let Ok(mut t) = self.tail.lock() {
            t.drop_bytes(unwritten);
            t.push(chunk);
        }
    }

    /// The stream has ended.
    pub fn finish(&mut self) {
        let held = self.tail.lock().map(|mut t| t.masker.finish()).ok();
        self.write(&held.unwrap_or_default());
        if let Some(log) = self.log.as_mut() {
            if log.flush().is_err() {
                self.log = None;
            }
        }
    }
}

/// Writes as much of `data` as the file takes; returns how many bytes it did not take.
fn write_some(log: &mut File, mut data: &[u8]) -> usize {
    while !data.is_empty() {
        match log.write(data) {
            Ok(0) => break,
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    data.len()
}

/// How long a step's output is still read after its main process ended: a process that
/// escaped the tree's kill and holds the pipe open must not hold the run.
const DRAIN_AFTER_EXIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits for the tasks copying a step's output to reach its end, for `DRAIN_AFTER_EXIT` at
/// most; one still reading then is aborted (where it can be: a blocking read cannot).
pub(crate) async fn finish_drains(drains: impl IntoIterator<Item = tokio::task::JoinHandle<()>>) {
    let until = tokio::time::Instant::now() + DRAIN_AFTER_EXIT;
    for d in drains {
        let abort = d.abort_handle();
        if tokio::time::timeout_at(until, d).await.is_err() {
            abort.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::Just;

    #[test]
    fn keeps_only_the_last_lines() {
        let mut t = Tail::new(3);
        t.push(b"a\nb\nc\nd\ne");
        assert_eq!(t.last(10), vec!["b", "c", "d", "e"]);
        t.push(b"f\n");
        assert_eq!(t.last(2), vec!["d", "ef"]);
        assert_eq!(t.line_count, 5);
        assert_eq!(t.bytes, 11);
    }

    /// The straightforward line splitter the fast one must agree with.
    fn naive(chunks: &[Vec<u8>], max_lines: usize) -> (Vec<String>, u64, u64) {
        let mut lines: Vec<String> = Vec::new();
        let mut partial: Vec<u8> = Vec::new();
        let (mut count, mut bytes) = (0u64, 0u64);
        for c in chunks {
            bytes += c.len() as u64;
            for &b in c {
                if b == b'\n' {
                    lines.push(
                        String::from_utf8_lossy(&partial)
                            .trim_end_matches('\r')
                            .to_string(),
                    );
                    partial.clear();
                    count += 1;
                } else if partial.len() < MAX_LINE {
                    partial.push(b);
                }
            }
        }
        let keep = lines.len().saturating_sub(max_lines);
        let mut out = lines.split_off(keep);
        if !partial.is_empty() {
            out.push(String::from_utf8_lossy(&partial).to_string());
        }
        (out, count, bytes)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 100, failure_persistence: None, ..Default::default() })]
        #[test]
        fn agrees_with_the_naive_splitter(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::prop_oneof![Just(b'\n'), Just(b'a'), Just(b'\r'), proptest::num::u8::ANY], 0..300), 0..12),
            max_lines in 1usize..6,
        ) {
            let mut t = Tail::new(max_lines);
            for c in &chunks {
                t.push(c);
            }
            let (lines, count, bytes) = naive(&chunks, max_lines);
            proptest::prop_assert_eq!(t.last(usize::MAX), lines);
            proptest::prop_assert_eq!(t.line_count, count);
            proptest::prop_assert_eq!(t.bytes, bytes);
        }
    }

    /// A log on a full disk: the bytes are counted as dropped from the first failed write on,
    /// and the tail keeps the last lines.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_counts_dropped_bytes_and_keeps_the_tail() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let tail: SharedTail = Arc::new(Mutex::new(Tail::new(2)));
        let mut sink = StreamSink {
            log: Some(full),
            tail: tail.clone(),
        };
        sink.deliver(b"one\ntwo\n");
        sink.deliver(b"three\n");
        sink.finish();
        let t = tail.lock().unwrap();
        assert_eq!(t.dropped, 14);
        assert!(t.dropped_since.is_some());
        assert_eq!(t.last(5), vec!["two", "three"]);
    }

    #[test]
    fn cuts_long_lines_and_stays_bounded() {
        let mut t = Tail::new(2);
        let big = vec![b'x'; 1 << 20];
        for _ in 0..8 {
            t.push(&big);
        }
        t.push(b"\n");
        assert_eq!(t.last(1)[0].len(), MAX_LINE);
        assert!(t.partial.capacity() <= 2 * MAX_LINE);
    }
}

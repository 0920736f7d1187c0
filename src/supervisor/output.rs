//! Draining an agent's stdout and stderr: its output to its log file, the last lines to a
//! bounded in-memory tail. The pipe is read as fast as the agent writes; memory stays bounded
//! however much it writes, and so does the disk: each stream's log keeps the newest
//! `supervisor.max_log_mb`, rotated like Docker's json-file logs (half the cap in `stdout.log`,
//! the half before it in `stdout.log.1`).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

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
    /// How much of the stream the log file and its rotated predecessor hold, and how much the
    /// size cap removed: kept here, with the run, because each step of a run opens the log anew.
    pub log: LogSize,
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

/// A piece of an agent's output, streamed as it is written to a caller that asked for it
/// (`symbiont exec`), as the log got it.
#[derive(Debug, Clone)]
pub struct OutputChunk {
    pub stderr: bool,
    pub data: bytes::Bytes,
}

/// How a run's output reaches the caller of [`Supervisor::launch_with`](super::Supervisor):
/// a bounded channel, so a slow reader slows the agent (its pipe fills) instead of growing
/// the supervisor's memory.
pub type OutputSender = mpsc::Sender<OutputChunk>;

/// The state of a run's forwarding drains, for [`finish_drains`]: a drain waiting on its
/// reader is not stuck on an escaped process, and is not cut off.
#[derive(Debug, Default)]
pub(crate) struct Forwarding {
    /// Drains waiting now for the reader to take a chunk.
    waiting: AtomicUsize,
    /// Chunks handed over so far.
    moved: AtomicU64,
}

/// The bytes of a stream in its log files, counted in memory (no `stat` per chunk).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LogSize {
    /// The stream's bytes in the log file (its note line not counted).
    pub current: u64,
    /// The stream's bytes in the rotated log (`stdout.log.1`).
    pub previous: u64,
    /// The stream's bytes removed to keep the log under its cap (`supervisor.max_log_mb`):
    /// the older output, on purpose, not a failure.
    pub truncated: u64,
}

/// Where one stream of a step goes: its log file, the run's tail of that stream, and the
/// caller that streams it, if any.
pub(crate) struct StreamSink {
    log: Log,
    /// The log file's path; `None` for a log that cannot be rotated.
    path: Option<PathBuf>,
    /// The most bytes of the stream kept on disk, the log and its rotated predecessor
    /// together: each holds half.
    cap: u64,
    /// A copy of the tail's [`LogSize`], stored back with each chunk.
    size: LogSize,
    pub tail: SharedTail,
    forward: Option<(OutputSender, bool, Arc<Forwarding>)>,
}

/// A stream's log file. It is created (empty) when the step starts, but opened for writing
/// only when the first byte arrives: a silent agent holds no descriptor for it, and a
/// hundred `sleep`s under `ulimit -n 256` cost only their pipes. Once output flows, the file
/// stays open to the end of the stream (one `write` per chunk read, and a rename and an open
/// each time it reaches half its cap).
enum Log {
    /// Created, not open yet.
    Closed,
    Open(File),
    /// Could not be opened or written: the bytes from then on are counted as dropped.
    Lost,
}

/// Opens (creating) a log file for appending.
fn open_log(p: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(p)
}

/// The rotated predecessor of the log file `path`: `stdout.log.1`.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

impl StreamSink {
    /// The sink of the log file `path`, created now (with its directory) and left closed
    /// until the first byte; the error when it cannot be created. The log and its rotated
    /// predecessor hold the newest `cap_bytes` of the stream.
    pub fn new(path: &Path, tail: SharedTail, cap_bytes: u64) -> std::io::Result<StreamSink> {
        if let Some(dir) = path.parent() {
            // Usually there already; if it cannot be made, the open below says why.
            let _ = std::fs::create_dir(dir);
        }
        open_log(path)?;
        let size = tail.lock().map(|t| t.log).unwrap_or_default();
        Ok(StreamSink {
            log: Log::Closed,
            path: Some(path.to_path_buf()),
            cap: cap_bytes,
            size,
            tail,
            forward: None,
        })
    }

    /// A sink whose log could not be created: the tail only.
    pub fn without_log(tail: SharedTail) -> StreamSink {
        StreamSink {
            log: Log::Lost,
            path: None,
            cap: u64::MAX,
            size: LogSize::default(),
            tail,
            forward: None,
        }
    }

    /// Streams what this sink gets (as its log gets it) to `to` as well, marked `stderr`.
    pub fn forwarding(mut self, to: OutputSender, stderr: bool, state: Arc<Forwarding>) -> Self {
        self.forward = Some((to, stderr, state));
        self
    }

    #[cfg(all(test, target_os = "linux"))]
    fn on_file(f: File, tail: SharedTail) -> StreamSink {
        StreamSink {
            log: Log::Open(f),
            path: None,
            cap: u64::MAX,
            size: LogSize::default(),
            tail,
            forward: None,
        }
    }

    /// Whether the log file is open now (for tests).
    #[cfg(test)]
    fn holds_log(&self) -> bool {
        matches!(self.log, Log::Open(_))
    }

    /// Appends one chunk of output to the log and the tail. A full disk must not stall the
    /// agent: the tail still gets the bytes. From the first write that fails on (or a log
    /// that cannot be opened at the first byte: no descriptor left), the log is left as it
    /// is (complete up to then, never with a hole) and the bytes are counted as dropped, for
    /// the run's record. Past half the cap the log is rotated: see [`StreamSink::rotate`].
    #[cfg(test)]
    pub fn deliver(&mut self, chunk: &[u8]) {
        let masked = self.masked(chunk);
        self.write(&masked);
    }

    /// `chunk` as the log and the tail get it: the operator's secrets never reach them
    /// (crate::secrets).
    fn masked<'a>(&self, chunk: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        if !crate::secrets::any() {
            return std::borrow::Cow::Borrowed(chunk);
        }
        match self.tail.lock() {
            Ok(mut t) => t.masker.mask(chunk),
            Err(_) => std::borrow::Cow::Borrowed(chunk),
        }
    }

    /// [`deliver`](Self::deliver), then hands the chunk to the caller streaming this output,
    /// waiting while its reader is behind (the agent's pipe fills meanwhile: backpressure).
    /// A reader that has gone stops the streaming; the log goes on.
    pub async fn pass(&mut self, chunk: &[u8]) {
        let masked = self.masked(chunk);
        self.write(&masked);
        if let Some((to, stderr, state)) = &self.forward {
            if masked.is_empty() {
                return;
            }
            let piece = OutputChunk {
                stderr: *stderr,
                data: bytes::Bytes::copy_from_slice(&masked),
            };
            state.waiting.fetch_add(1, Ordering::SeqCst);
            let sent = to.send(piece).await.is_ok();
            state.waiting.fetch_sub(1, Ordering::SeqCst);
            state.moved.fetch_add(1, Ordering::SeqCst);
            if !sent {
                self.forward = None;
            }
        }
    }

    fn write(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        if let (Log::Closed, Some(p)) = (&self.log, &self.path) {
            self.log = open_log(p).map_or_else(
                |e| {
                    tracing::warn!(
                        "cannot open the log {}: {e}; its output is dropped",
                        p.display()
                    );
                    Log::Lost
                },
                Log::Open,
            );
        }
        // Each file holds half the cap: the chunk is written up to that, then the log is
        // rotated and the rest goes to the fresh one.
        let half = (self.cap / 2).max(1);
        let mut rest = chunk;
        while !rest.is_empty() {
            let Log::Open(log) = &mut self.log else {
                break;
            };
            let room = half.saturating_sub(self.size.current);
            if room == 0 {
                self.rotate();
                continue;
            }
            let n = rest.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            let left = write_some(log, &rest[..n]);
            self.size.current += (n - left) as u64;
            rest = &rest[n - left..];
            if left > 0 {
                tracing::warn!(
                    "cannot write the log {}; its further output is dropped",
                    self.path.as_deref().unwrap_or(Path::new("-")).display()
                );
                self.log = Log::Lost;
            }
        }
        if let Ok(mut t) = self.tail.lock() {
            t.drop_bytes(rest.len());
            t.log = self.size;
            t.push(chunk);
        }
    }

    /// The log has reached half its cap: it becomes `stdout.log.1` (the older `.1`, and so
    /// the oldest half of what was kept, is dropped) and a fresh log begins with a line that
    /// says so. A rename or open that fails leaves the log lost, as a failed write does.
    fn rotate(&mut self) {
        let Some(path) = &self.path else {
            self.log = Log::Lost;
            return;
        };
        // Closed before the rename (Windows renames an open file only with sharing).
        self.log = Log::Lost;
        let old = rotated_path(path);
        if let Err(e) = std::fs::rename(path, &old) {
            tracing::warn!(
                "cannot rotate the log {} to {}: {e}; its further output is dropped",
                path.display(),
                old.display()
            );
            return;
        }
        self.size.truncated += self.size.previous;
        self.size.previous = self.size.current;
        self.size.current = 0;
        let mut log = match open_log(path) {
            Ok(log) => log,
            Err(e) => {
                tracing::warn!(
                    "cannot open the rotated log {}: {e}; its further output is dropped",
                    path.display()
                );
                return;
            }
        };
        let note = rotation_note(&old, self.size.truncated, self.cap);
        if write_some(&mut log, note.as_bytes()) == 0 {
            self.log = Log::Open(log);
        }
    }

    /// The stream has ended.
    pub async fn finish(&mut self) {
        let held = self.tail.lock().map(|mut t| t.masker.finish()).ok();
        let held = held.unwrap_or_default();
        self.write(&held);
        if let (Some((to, stderr, _)), false) = (&self.forward, held.is_empty()) {
            // A reader that has gone needs no more output.
            let _ = to
                .send(OutputChunk {
                    stderr: *stderr,
                    data: held.into(),
                })
                .await;
        }
        if let Log::Open(log) = &mut self.log {
            if let Err(e) = log.flush() {
                tracing::warn!(
                    "cannot flush the log {}: {e}",
                    self.path.as_deref().unwrap_or(Path::new("-")).display()
                );
                self.log = Log::Lost;
            }
        }
        self.forward = None;
    }
}

/// How a rotated log's first line begins.
const NOTE_START: &[u8] = b"[symbiont: earlier output is in ";

/// The output a stream's log kept, oldest first: its rotated predecessor (if any), then the
/// log, without the note lines that rotation put at their starts.
pub fn read_kept(path: &Path) -> Vec<u8> {
    let cur = std::fs::read(path).unwrap_or_default();
    let Ok(mut out) = std::fs::read(rotated_path(path)) else {
        return cur;
    };
    let body = |b: &[u8]| match memchr::memchr(b'\n', b) {
        Some(nl) if b.starts_with(NOTE_START) => nl + 1,
        _ => 0,
    };
    out.drain(..body(&out));
    out.extend_from_slice(&cur[body(&cur)..]);
    out
}

/// The first line of a rotated log: where the earlier output is and how much the cap dropped.
fn rotation_note(old: &Path, truncated: u64, cap: u64) -> String {
    let name = old.file_name().unwrap_or_default().to_string_lossy();
    let cap = if cap.is_multiple_of(1 << 20) {
        format!("{} MB", cap >> 20)
    } else {
        format!("{cap} bytes")
    };
    format!(
        "[symbiont: earlier output is in {name}; {truncated} older bytes were dropped to keep \
         this log under {cap} (supervisor.max_log_mb)]\n"
    )
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
/// most; one still reading then is aborted (where it can be: a blocking read cannot). Output
/// streamed to a caller (`forwarding`) is waited for as long as its reader keeps taking it:
/// every byte the agent wrote reaches a slow reader.
pub(crate) async fn finish_drains(
    drains: impl IntoIterator<Item = tokio::task::JoinHandle<()>>,
    forwarding: Option<&Forwarding>,
) {
    let mut until = tokio::time::Instant::now() + DRAIN_AFTER_EXIT;
    for mut d in drains {
        loop {
            match tokio::time::timeout_at(until, &mut d).await {
                Ok(_) => break,
                Err(_) => {
                    // Still handing output to a reader, or it took some since the last look.
                    let busy = forwarding.map(|f| {
                        let moved = f.moved.load(Ordering::SeqCst);
                        (f.waiting.load(Ordering::SeqCst) > 0, moved)
                    });
                    if let Some((waiting, moved)) = busy {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        let f = forwarding.expect("busy implies forwarding");
                        if waiting || f.moved.load(Ordering::SeqCst) != moved {
                            until = tokio::time::Instant::now();
                            continue;
                        }
                    }
                    d.abort();
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::Just;

    fn finish(sink: &mut StreamSink) {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(sink.finish());
    }

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
        let mut sink = StreamSink::on_file(full, tail.clone());
        sink.deliver(b"one\ntwo\n");
        sink.deliver(b"three\n");
        finish(&mut sink);
        let t = tail.lock().unwrap();
        assert_eq!(t.dropped, 14);
        assert!(t.dropped_since.is_some());
        assert_eq!(t.last(5), vec!["two", "three"]);
    }

    /// The log file exists from the start but is held open only from the first byte on.
    #[test]
    fn a_log_is_created_at_once_and_opened_at_the_first_byte() {
        let dir = std::env::temp_dir().join(format!("symbiont-lazy-log-{}", std::process::id()));
        let path = dir.join("stdout.log");
        let tail: SharedTail = Arc::new(Mutex::new(Tail::new(2)));
        let mut sink = StreamSink::new(&path, tail.clone(), 64 << 20).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        assert!(!sink.holds_log());
        sink.deliver(b"");
        assert!(!sink.holds_log());
        sink.deliver(b"one\n");
        assert!(sink.holds_log());
        sink.deliver(b"two\n");
        finish(&mut sink);
        assert_eq!(std::fs::read(&path).unwrap(), b"one\ntwo\n");
        assert_eq!(read_kept(&path), b"one\ntwo\n");
        assert_eq!(tail.lock().unwrap().dropped, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A capped log keeps the newest output: past half the cap it is rotated, the older
    /// rotated half is dropped, and the fresh log's first line says how much was dropped. The
    /// cap is no failure: nothing counts as dropped by the disk.
    #[test]
    fn a_capped_log_is_rotated_and_keeps_the_newest_output() {
        let dir = std::env::temp_dir().join(format!("symbiont-cap-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("stdout.log");
        let old = rotated_path(&path);
        let cap = 1024u64;
        let tail: SharedTail = Arc::new(Mutex::new(Tail::new(2)));
        let mut sink = StreamSink::new(&path, tail.clone(), cap).unwrap();
        // 10 KiB of numbered lines, in chunks of uneven sizes (some larger than half the cap).
        let text: String = (0..2000).map(|i| format!("{i:06}\n")).collect();
        let data = &text.as_bytes()[..10 * 1024];
        let mut at = 0;
        for (i, n) in [1usize, 100, 700, 3, 511, 512, 513, 2000]
            .iter()
            .cycle()
            .enumerate()
        {
            if at == data.len() {
                break;
            }
            let end = (at + n + i % 2).min(data.len());
            sink.deliver(&data[at..end]);
            at = end;
        }
        finish(&mut sink);
        // Each file begins with a note line (the rotated one with that of its own rotation).
        let split = |p: &Path| {
            let f = std::fs::read(p).unwrap();
            let nl = f.iter().position(|&b| b == b'\n').unwrap();
            assert!(f.starts_with(b"[symbiont: "), "{}", p.display());
            (
                String::from_utf8_lossy(&f[..=nl]).to_string(),
                f[nl + 1..].to_vec(),
            )
        };
        let ((note, cur), (_, prev)) = (split(&path), split(&old));
        let cur = &cur[..];
        let kept = (cur.len() + prev.len()) as u64;
        assert!(kept <= cap, "{kept} bytes kept");
        assert!(kept > cap / 2, "{kept} bytes kept");
        // The newest bytes, whole and in order, at the end of the log; the older ones before
        // them in the rotated log.
        let mut both = prev.clone();
        both.extend_from_slice(cur);
        assert!(data.ends_with(&both), "the kept output is not the newest");
        let dropped = data.len() as u64 - kept;
        assert_eq!(
            note,
            format!("[symbiont: earlier output is in stdout.log.1; {dropped} older bytes were dropped to keep this log under 1024 bytes (supervisor.max_log_mb)]\n")
        );
        let t = tail.lock().unwrap();
        assert_eq!(t.dropped, 0);
        assert_eq!(t.log.truncated, dropped);
        assert_eq!(t.log.current + t.log.previous, kept);
        assert_eq!(t.last(1), vec!["001462"]);
        drop(t);
        // A run's next step opens the log anew and goes on from where the last one left it
        // (the last step's sink is gone by then: Windows renames no file that is open).
        drop(sink);
        let mut sink = StreamSink::new(&path, tail.clone(), cap).unwrap();
        sink.deliver(&[b'y'; 600]);
        finish(&mut sink);
        let ((_, cur), (_, mut both)) = (split(&path), split(&old));
        both.extend_from_slice(&cur);
        assert!(both.len() as u64 <= cap && both.ends_with(&[b'y'; 512]));
        let mut kept = data.to_vec();
        kept.extend_from_slice(&[b'y'; 600]);
        let read = read_kept(&path);
        assert!(
            read.len() as u64 <= cap && kept.ends_with(&read),
            "{read:?}"
        );
        let t = tail.lock().unwrap();
        assert_eq!(
            t.log.truncated + t.log.current + t.log.previous,
            data.len() as u64 + 600
        );
        assert_eq!(t.dropped, 0);
        drop(t);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The note names the cap in MB when it is a whole number of them.
    #[test]
    fn the_rotation_note_names_the_cap() {
        assert_eq!(
            rotation_note(Path::new("/r/stderr.log.1"), 123456789, 64 << 20),
            "[symbiont: earlier output is in stderr.log.1; 123456789 older bytes were dropped to keep this log under 64 MB (supervisor.max_log_mb)]\n"
        );
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

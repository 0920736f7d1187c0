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
}

impl Tail {
    pub fn new(max_lines: usize) -> Tail {
        Tail {
            max_lines: max_lines.max(1),
            ..Tail::default()
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let take = nl.min(MAX_LINE.saturating_sub(self.partial.len()));
            self.partial.extend_from_slice(&rest[..take]);
            let line = String::from_utf8_lossy(&self.partial)
                .trim_end_matches('\r')
                .to_string();
            self.partial.clear();
            self.line_count += 1;
            if self.lines.len() == self.max_lines {
                self.lines.pop_front();
            }
            self.lines.push_back(line);
            rest = &rest[nl + 1..];
        }
        let room = MAX_LINE.saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&rest[..rest.len().min(room)]);
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

/// Reads `pipe` to its end, appending to `log` and `tail`. Returns the bytes read.
/// The read buffer is allocated on the first byte: a thousand silent agents cost nothing.
#[cfg(unix)]
pub async fn drain(pipe: tokio::net::unix::pipe::Receiver, mut log: File, tail: SharedTail) -> u64 {
    let mut buf: Vec<u8> = Vec::new();
    let mut total = 0u64;
    loop {
        if pipe.readable().await.is_err() {
            break;
        }
        if buf.is_empty() {
            buf = vec![0u8; 128 * 1024];
        }
        match pipe.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                // A full disk must not stall the agent: the tail still gets the bytes.
                let _ = log.write_all(&buf[..n]);
                if let Ok(mut t) = tail.lock() {
                    t.push(&buf[..n]);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(_) => break,
        }
    }
    let _ = log.flush();
    total
}

#[cfg(test)]
mod tests {
    use super::*;

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

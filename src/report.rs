//! What every client reports the same way: human-sized figures, and the exit status of a set
//! of runs. The headless printer and the dashboard both use it; neither borrows from the other.

use std::sync::Arc;

use crate::supervisor::RunRecord;

/// Human-sized bytes: 1.5 KiB, 12.0 MiB.
pub fn bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// The process exit status of a set of runs: 0 when every run succeeded, else 1.
pub fn exit_code(records: &[Arc<RunRecord>]) -> u8 {
    if records.iter().all(|r| r.success()) {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn bytes_are_human_sized() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12 << 20), "12.0 MiB");
        assert_eq!(bytes(3 << 40), "3.0 TiB");
    }
}

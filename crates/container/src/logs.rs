//! Docker's json-file log format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2024-01-01T00:00:00.000000000Z"}`.
//!
//! The monitor writes with [`LogWriter`] (each line with a single `write(2)`, so a reader tailing
//! the current file never sees half a line); rotation follows Docker's `max-size`/`max-file`
//! options: `<path>` is renamed to `<path>.1`, `<path>.1` to `<path>.2`, ... and the oldest dropped.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// One log record.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// `stdout` or `stderr`.
    pub stream: String,
    pub time: DateTime<Utc>,
    pub log: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct JsonLine<'a> {
    log: std::borrow::Cow<'a, str>,
    stream: std::borrow::Cow<'a, str>,
    time: std::borrow::Cow<'a, str>,
}

/// Formats one entry as a json-file line (with the trailing newline).
pub fn format_line(stream: &str, time: DateTime<Utc>, log: &[u8]) -> Vec<u8> {
    let line = JsonLine {
        log: String::from_utf8_lossy(log),
        stream: stream.into(),
        time: time.to_rfc3339_opts(SecondsFormat::Nanos, true).into(),
    };
    let mut out = serde_json::to_vec(&line).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Parses one json-file line (with or without its newline).
pub fn parse_line(line: &[u8]) -> Option<LogEntry> {
    let line: JsonLine<'_> = serde_json::from_slice(line).ok()?;
    let time = DateTime::parse_from_rfc3339(&line.time)
        .ok()?
        .with_timezone(&Utc);
    Some(LogEntry {
        stream: line.stream.into_owned(),
        time,
        log: line.log.into_owned().into_bytes(),
    })
}

/// All entries of a log: rotated files `<path>.N` (oldest first), then `<path>`.
pub fn read_entries(log_path: &Path) -> io::Result<Vec<LogEntry>> {
    let mut files = Vec::new();
    let mut n = 1;
    loop {
        let p = rotated(log_path, n);
        if !p.exists() {
            break;
        }
        files.push(p);
        n += 1;
    }
    files.reverse();
    files.push(log_path.to_path_buf());
    let mut out = Vec::new();
    for f in files {
        let file = match File::open(&f) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in BufReader::new(file).split(b'\n') {
            if let Some(e) = parse_line(&line?) {
                out.push(e);
            }
        }
    }
    Ok(out)
}

fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Parses Docker's json-file `max-size` (`10m`, `512k`, `1g`, plain bytes) as dockerd does:
/// `go-units`' `FromHumanSize`, decimal multiples (`10m` = 10,000,000 bytes; moby
/// `daemon/logger/jsonfilelog/jsonfilelog.go`).
pub fn parse_size(s: &str) -> Option<u64> {
    barge_stdx::units::from_human_size(s.trim())
        .ok()
        .map(|v| v as u64)
}

/// json-file writer with rotation.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    /// 0 = unlimited.
    max_size: u64,
    max_files: usize,
}

impl LogWriter {
    /// Opens (appends to) `path`. `max_size` 0 = no rotation; `max_files` ≥ 1.
    pub fn open(path: &Path, max_size: u64, max_files: usize) -> io::Result<LogWriter> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
        })
    }

    /// Writes one entry (a single `write`).
    pub fn write_entry(&mut self, stream: &str, time: DateTime<Utc>, log: &[u8]) -> io::Result<()> {
        let line = format_line(stream, time, log);
        if self.max_size > 0 && self.size > 0 && self.size + line.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.max_files > 1 {
            for n in (1..self.max_files).rev() {
                let from = if n == 1 {
                    self.path.clone()
                } else {
                    rotated(&self.path, n - 1)
                };
                let to = rotated(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, &to)?;
                }
            }
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        } else {
            self.file.set_len(0)?;
        }
        self.size = 0;
        Ok(())
    }
}

/// Splits a stream into Docker's log messages: complete lines, or 16 KiB partial chunks.
#[derive(Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
}

const MAX_PARTIAL: usize = 16 * 1024;

impl LineBuffer {
    /// Appends data and returns the complete messages now available.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            out.push(self.buf.drain(..=pos).collect());
        }
        while self.buf.len() >= MAX_PARTIAL {
            out.push(self.buf.drain(..MAX_PARTIAL).collect());
        }
        out
    }

    /// The remaining partial line, if any.
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        if self.buf.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.buf))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_roundtrip() {
        let t = DateTime::parse_from_rfc3339("2024-01-02T03:04:05.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let line = format_line("stdout", t, b"hi \"there\"\n");
        assert_eq!(
            String::from_utf8(line.clone()).unwrap(),
            "{\"log\":\"hi \\\"there\\\"\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-02T03:04:05.123456789Z\"}\n"
        );
        let e = parse_line(&line).unwrap();
        assert_eq!(e.stream, "stdout");
        assert_eq!(e.log, b"hi \"there\"\n");
        assert_eq!(e.time, t);
        assert!(parse_line(b"garbage").is_none());
    }

    #[test]
    fn sizes() {
        // Decimal, as dockerd's json-file driver (go-units FromHumanSize).
        assert_eq!(parse_size("10m"), Some(10_000_000));
        assert_eq!(parse_size("1k"), Some(1000));
        assert_eq!(parse_size("1KiB"), Some(1000));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("2g"), Some(2_000_000_000));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn rotation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c-json.log");
        let mut w = LogWriter::open(&p, 200, 3).unwrap();
        for i in 0..20 {
            w.write_entry("stdout", Utc::now(), format!("line {i}\n").as_bytes())
                .unwrap();
        }
        assert!(p.exists());
        assert!(rotated(&p, 1).exists());
        assert!(rotated(&p, 2).exists());
        assert!(!rotated(&p, 3).exists());
        let entries = read_entries(&p).unwrap();
        assert!(entries.len() < 20);
        // Order is preserved and ends with the last line.
        assert_eq!(entries.last().unwrap().log, b"line 19\n");
        let nums: Vec<usize> = entries
            .iter()
            .map(|e| {
                String::from_utf8_lossy(&e.log)
                    .trim()
                    .trim_start_matches("line ")
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1));
        for f in [p.clone(), rotated(&p, 1)] {
            assert!(std::fs::metadata(&f).unwrap().len() <= 200);
        }
    }

    #[test]
    fn single_file_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c-json.log");
        let mut w = LogWriter::open(&p, 100, 1).unwrap();
        for i in 0..10 {
            w.write_entry("stderr", Utc::now(), format!("line {i}\n").as_bytes())
                .unwrap();
        }
        assert!(!rotated(&p, 1).exists());
        assert!(std::fs::metadata(&p).unwrap().len() <= 100);
    }

    #[test]
    fn line_buffer() {
        let mut b = LineBuffer::default();
        assert!(b.push(b"ab").is_empty());
        assert_eq!(b.push(b"c\nd\ne"), vec![b"abc\n".to_vec(), b"d\n".to_vec()]);
        assert_eq!(b.flush(), Some(b"e".to_vec()));
    }
}

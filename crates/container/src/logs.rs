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

/// The files of a log, oldest first: rotated files `<path>.N` … `<path>.1`, then `<path>`.
fn log_files(log_path: &Path) -> Vec<PathBuf> {
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
    files
}

/// All entries of a log: rotated files `<path>.N` (oldest first), then `<path>`. Holds the
/// whole log in memory: for logs of any size use [`entries`] or [`tail_entries`].
pub fn read_entries(log_path: &Path) -> io::Result<Vec<LogEntry>> {
    entries(log_path).collect()
}

/// Streams the entries of a log, oldest first, one line in memory at a time (lines that do
/// not parse are skipped). Files that vanish meanwhile (rotation) are skipped.
pub fn entries(log_path: &Path) -> Entries {
    Entries {
        files: log_files(log_path).into_iter(),
        current: None,
        line: Vec::new(),
        offset: 0,
    }
}

/// Iterator of [`entries`].
pub struct Entries {
    files: std::vec::IntoIter<PathBuf>,
    current: Option<BufReader<File>>,
    line: Vec<u8>,
    /// Bytes of complete lines read from the file being (or last) read.
    offset: u64,
}

impl Entries {
    /// Once the iterator is exhausted: where the newest file (`<path>`) was left, after its
    /// last complete line, so a follower reading on from there misses and repeats nothing.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl Iterator for Entries {
    type Item = io::Result<LogEntry>;

    fn next(&mut self) -> Option<io::Result<LogEntry>> {
        loop {
            let Some(r) = self.current.as_mut() else {
                let f = self.files.next()?;
                self.offset = 0;
                match File::open(&f) {
                    Ok(file) => self.current = Some(BufReader::with_capacity(64 * 1024, file)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Some(Err(e)),
                }
                continue;
            };
            self.line.clear();
            match r.read_until(b'\n', &mut self.line) {
                Ok(0) => self.current = None,
                Ok(n) => {
                    if self.line.last() != Some(&b'\n') {
                        // A line being written: not an entry yet. This file ends here (the
                        // reader has consumed the partial bytes: reading on would take the
                        // line's rest for a line of its own, drop it unparsed and leave
                        // `offset` mid-line, so a follower starting there lost the entry).
                        self.current = None;
                        continue;
                    }
                    self.offset += n as u64;
                    if let Some(e) = parse_line(&self.line) {
                        return Some(Ok(e));
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The entries of the newest file (`<path>`, not the rotated ones) from byte `offset` up to
/// its last complete line, and the offset after it: for a follower polling a log (memory
/// bounded by what was written since the last poll). A missing file has no entries.
pub fn read_from(log_path: &Path, offset: u64) -> io::Result<(Vec<LogEntry>, u64)> {
    use std::io::{Seek, SeekFrom};
    let mut f = match File::open(log_path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(offset))?;
    let mut r = BufReader::new(f);
    let (mut out, mut pos, mut line) = (Vec::new(), offset, Vec::new());
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok((out, pos));
        }
        pos += n as u64;
        if let Some(e) = parse_line(&line) {
            out.push(e);
        }
    }
}

/// Block size of [`tail_entries`]' backward reads.
const TAIL_BLOCK: u64 = 64 * 1024;

/// The last `n` entries of a log, oldest first, read backwards from the end of the newest
/// file (then of older rotated files while more are needed): the cost is that of the last
/// `n` lines, whatever the log's size. Also returns where the newest file (`<path>`) ends,
/// after its last complete line, for a follower to read on from.
pub fn tail_entries(log_path: &Path, n: usize) -> io::Result<(Vec<LogEntry>, u64)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for (i, f) in log_files(log_path).iter().rev().enumerate() {
        if out.len() >= n && i > 0 {
            break;
        }
        match File::open(f) {
            Ok(file) => {
                let end = tail_file(file, n, &mut out)?;
                if i == 0 {
                    offset = end;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    out.reverse();
    Ok((out, offset))
}

/// Pushes the entries of `file`, newest first, onto `out` until it holds `want`; returns
/// the offset after the file's last complete line.
fn tail_file(file: File, want: usize, out: &mut Vec<LogEntry>) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut end = file.metadata()?.len();
    // A line being written at the end is not an entry yet.
    if end > 0 {
        let start = end.saturating_sub(TAIL_BLOCK);
        let mut data = vec![0u8; (end - start) as usize];
        file.read_exact_at(&mut data, start)?;
        match data.iter().rposition(|b| *b == b'\n') {
            Some(p) => end = start + p as u64 + 1,
            None if start == 0 => end = 0,
            // A partial line longer than a block: left to the follower as it is.
            None => {}
        }
    }
    let complete_end = end;
    // The start of the line cut by the previous (later) block, with its newline.
    let mut carry: Vec<u8> = Vec::new();
    while end > 0 && out.len() < want {
        let start = end.saturating_sub(TAIL_BLOCK);
        let mut data = vec![0u8; (end - start) as usize];
        file.read_exact_at(&mut data, start)?;
        data.extend_from_slice(&carry);
        // Before the first newline of a block that is not the file's start lies the end of a
        // line the next block (backwards) completes.
        let complete = if start == 0 {
            0
        } else {
            match data.iter().position(|b| *b == b'\n') {
                Some(p) => p + 1,
                None => {
                    carry = data;
                    end = start;
                    continue;
                }
            }
        };
        for line in data[complete..].split(|b| *b == b'\n').rev() {
            if out.len() >= want {
                break;
            }
            if line.is_empty() {
                continue;
            }
            if let Some(e) = parse_line(line) {
                out.push(e);
            }
        }
        data.truncate(complete);
        carry = data;
        end = start;
    }
    Ok(complete_end)
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

    /// A reader racing a writer whose lines land in two pieces (as a write crossing a page
    /// boundary can look to a reader): every pass ends on a line boundary, with exactly the
    /// entries before it, so a follower starting at `offset` loses and repeats nothing.
    #[test]
    fn entries_stop_before_a_line_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let t = Utc::now();
        let lines: Vec<Vec<u8>> = (0..20_000)
            .map(|i| format_line("stdout", t, format!("{i}\n").as_bytes()))
            .collect();
        std::fs::write(&path, b"").unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (path, done, lines) = (path.clone(), done.clone(), lines.clone());
            std::thread::spawn(move || {
                let mut f = OpenOptions::new().append(true).open(&path).unwrap();
                for l in &lines {
                    let (a, b) = l.split_at(l.len() / 2);
                    f.write_all(a).unwrap();
                    std::thread::yield_now();
                    f.write_all(b).unwrap();
                }
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            })
        };
        let mut passes = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) || passes == 0 {
            let mut it = entries(&path);
            let mut n = 0;
            for e in it.by_ref() {
                e.unwrap();
                n += 1;
            }
            let offset = it.offset() as usize;
            let whole: usize = lines[..n].iter().map(Vec::len).sum();
            assert_eq!(
                offset, whole,
                "pass {passes}: {n} entries but offset {offset}"
            );
            passes += 1;
        }
        writer.join().unwrap();
        assert_eq!(entries(&path).count(), lines.len());
    }

    #[test]
    fn tail_reads_backwards_across_blocks_and_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c-json.log");
        // Lines of varied length, several blocks per file, three files.
        let mut w = LogWriter::open(&p, 3 * TAIL_BLOCK, 3).unwrap();
        let mut all = Vec::new();
        for i in 0..12000 {
            let msg = format!("line {i} {}\n", "x".repeat(i % 97));
            w.write_entry(
                if i % 3 == 0 { "stderr" } else { "stdout" },
                Utc::now(),
                msg.as_bytes(),
            )
            .unwrap();
            all.push(msg);
        }
        assert!(rotated(&p, 2).exists());
        let full: Vec<String> = entries(&p)
            .map(|e| String::from_utf8(e.unwrap().log).unwrap())
            .collect();
        assert_eq!(full, all[all.len() - full.len()..]);
        for n in [0, 1, 10, 700, full.len() - 1, full.len(), full.len() + 5] {
            let got: Vec<String> = tail_entries(&p, n)
                .unwrap()
                .0
                .into_iter()
                .map(|e| String::from_utf8(e.log).unwrap())
                .collect();
            assert_eq!(got, full[full.len().saturating_sub(n)..], "tail {n}");
        }
        // A torn last line (no newline yet) is not an entry, and a follower starts before it.
        let len = std::fs::metadata(&p).unwrap().len();
        let mut it = entries(&p);
        assert_eq!(it.by_ref().count(), full.len());
        assert_eq!(it.offset(), len);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"{\"log\":\"half")
            .unwrap();
        let (last, end) = tail_entries(&p, 1).unwrap();
        assert_eq!(last[0].log, all.last().unwrap().as_bytes());
        assert_eq!(end, len);
        let mut it = entries(&p);
        assert_eq!(it.by_ref().count(), full.len());
        assert_eq!(it.offset(), len);
        // A poller reads what came since its last offset, up to the last complete line.
        let (current, at) = read_from(&p, 0).unwrap();
        assert_eq!(at, len);
        assert_eq!(current.last().unwrap().log, all.last().unwrap().as_bytes());
        assert_eq!(read_from(&p, len).unwrap(), (Vec::new(), len));
        assert!(tail_entries(&dir.path().join("missing.log"), 3)
            .unwrap()
            .0
            .is_empty());
    }

    #[test]
    fn line_buffer() {
        let mut b = LineBuffer::default();
        assert!(b.push(b"ab").is_empty());
        assert_eq!(b.push(b"c\nd\ne"), vec![b"abc\n".to_vec(), b"d\n".to_vec()]);
        assert_eq!(b.flush(), Some(b"e".to_vec()));
    }
}

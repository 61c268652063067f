//! `barge build --progress tty`: a live view of the legacy builder's text stream (what
//! `POST /build` sends as `stream` messages), in the spirit of BuildKit's TTY display.
//!
//! Finished steps are printed once, as a line with their status (`CACHED`, `DONE 1.2s`,
//! `ERROR`). The running step is a live area at the bottom: its line with the elapsed time and
//! the last [`TAIL`] lines of its output, redrawn in place (cursor up + clear) as output
//! arrives. Lines are cut to the terminal width so the redraw stays exact.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::time::{Duration, Instant};

/// How many output lines of the running step stay visible.
pub const TAIL: usize = 6;

#[derive(Debug, Clone, PartialEq)]
enum Status {
    Running,
    Cached,
    Done(f64),
}

#[derive(Debug)]
struct Step {
    /// `[3/6] RUN make`.
    title: String,
    status: Status,
    started: Instant,
}

/// The TTY renderer; feed it the stream's text with [`TtyProgress::feed`].
pub struct TtyProgress<W: Write> {
    out: W,
    width: usize,
    started: Instant,
    current: Option<Step>,
    tail: VecDeque<String>,
    partial: String,
    /// Lines of the live area on screen now.
    drawn: usize,
    last_draw: Option<Instant>,
    /// `Successfully built/tagged` lines, printed at the end.
    footer: Vec<String>,
    steps: usize,
}

/// The terminal's width in columns (80 when unknown).
pub fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize struct; fd 1 may be anything, errors are handled.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0 {
            return ws.ws_col as usize;
        }
    }
    80
}

fn cut(s: &str, width: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c == '\t' { ' ' } else { c })
        .filter(|c| !c.is_control())
        .collect();
    if clean.chars().count() <= width {
        clean
    } else {
        clean
            .chars()
            .take(width.saturating_sub(1))
            .collect::<String>()
            + "…"
    }
}

impl<W: Write> TtyProgress<W> {
    /// A renderer writing to `out`, cutting lines to `width` columns.
    pub fn new(out: W, width: usize) -> TtyProgress<W> {
        TtyProgress {
            out,
            width: width.max(20),
            started: Instant::now(),
            current: None,
            tail: VecDeque::new(),
            partial: String::new(),
            drawn: 0,
            last_draw: None,
            footer: Vec::new(),
            steps: 0,
        }
    }

    /// Takes a chunk of the stream (any split; lines are reassembled).
    pub fn feed(&mut self, text: &str) -> io::Result<()> {
        self.partial.push_str(text);
        while let Some(p) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=p).collect();
            self.line(line.trim_end_matches(['\n', '\r']))?;
        }
        self.draw(false)
    }

    fn line(&mut self, l: &str) -> io::Result<()> {
        if let Some(rest) = l.strip_prefix("Step ") {
            if let Some((num, title)) = rest.split_once(" : ") {
                self.finish_step(None)?;
                self.steps += 1;
                self.current = Some(Step {
                    title: format!("[{num}] {title}"),
                    status: Status::Running,
                    started: Instant::now(),
                });
                return self.draw(true);
            }
        }
        if let Some(r) = l.strip_prefix(" ---> ") {
            if r.starts_with("Using cache") {
                if let Some(s) = &mut self.current {
                    s.status = Status::Cached;
                }
            } else if let Some(t) = r.strip_prefix("Done in ") {
                if let Some(s) = &mut self.current {
                    s.status = Status::Done(t.trim_end_matches('s').parse().unwrap_or(0.0));
                }
            }
            // `Running in <id>` and ` ---> <id>` carry nothing the view shows.
            return Ok(());
        }
        if l.starts_with("Successfully ") || l.starts_with("# Executing") {
            self.footer.push(l.to_string());
            return Ok(());
        }
        self.tail.push_back(l.to_string());
        while self.tail.len() > TAIL {
            self.tail.pop_front();
        }
        Ok(())
    }

    fn clear(&mut self) -> io::Result<()> {
        if self.drawn > 0 {
            write!(self.out, "\x1b[{}A\r\x1b[J", self.drawn)?;
            self.drawn = 0;
        }
        Ok(())
    }

    fn step_line(&self, s: &Step) -> String {
        let status = match s.status {
            Status::Cached => "CACHED".to_string(),
            Status::Done(t) => format!("DONE {t:.1}s"),
            Status::Running => format!("{:.1}s", s.started.elapsed().as_secs_f64()),
        };
        let room = self.width.saturating_sub(status.len() + 5);
        let title = cut(&s.title, room);
        let pad = room.saturating_sub(title.chars().count());
        format!(" => {title}{} {status}", " ".repeat(pad))
    }

    /// Prints the running step as finished (its tail too when `error` is set).
    fn finish_step(&mut self, error: Option<&str>) -> io::Result<()> {
        self.clear()?;
        if let Some(mut s) = self.current.take() {
            if s.status == Status::Running && error.is_none() {
                s.status = Status::Done(s.started.elapsed().as_secs_f64());
            }
            let mut line = self.step_line(&s);
            if error.is_some() {
                line = format!(" => ERROR {}", cut(&s.title, self.width.saturating_sub(10)));
            }
            writeln!(self.out, "{line}")?;
            if error.is_some() {
                for t in &self.tail {
                    writeln!(self.out, " > {}", cut(t, self.width.saturating_sub(3)))?;
                }
            }
        }
        self.tail.clear();
        Ok(())
    }

    fn draw(&mut self, force: bool) -> io::Result<()> {
        let now = Instant::now();
        if !force
            && self
                .last_draw
                .is_some_and(|t| now - t < Duration::from_millis(80))
        {
            return Ok(());
        }
        self.last_draw = Some(now);
        self.clear()?;
        let Some(s) = &self.current else {
            return self.out.flush();
        };
        let mut lines = vec![self.step_line(s)];
        for t in &self.tail {
            lines.push(format!(
                " \x1b[2m> {}\x1b[0m",
                cut(t, self.width.saturating_sub(3))
            ));
        }
        for l in &lines {
            writeln!(self.out, "{l}")?;
        }
        self.drawn = lines.len();
        self.out.flush()
    }

    /// Ends the view: the last step, then a summary, or the error.
    pub fn finish(&mut self, error: Option<&str>) -> io::Result<()> {
        if !self.partial.is_empty() {
            let p = std::mem::take(&mut self.partial);
            self.line(&p)?;
        }
        self.finish_step(error)?;
        let t = self.started.elapsed().as_secs_f64();
        match error {
            None => writeln!(self.out, "[+] Built in {t:.1}s ({} steps)", self.steps)?,
            Some(_) => writeln!(self.out, "[+] Failed after {t:.1}s")?,
        }
        for f in &self.footer {
            writeln!(self.out, "{f}")?;
        }
        self.out.flush()
    }

    /// The writer (tests).
    #[cfg(test)]
    fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut it = s.chars().peekable();
        while let Some(c) = it.next() {
            if c == '\x1b' {
                for d in it.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn renders_steps_status_and_live_tail() {
        let mut p = TtyProgress::new(Vec::new(), 60);
        p.feed("Step 1/3 : FROM busybox\n ---> abc\nStep 2/3 : COPY a /a\n ---> Using cache\n")
            .unwrap();
        p.feed("Step 3/3 : RUN make\n ---> Running in 123\nout-")
            .unwrap();
        // Redraws are throttled (80 ms).
        std::thread::sleep(Duration::from_millis(100));
        p.feed("line-1\nline-2\n").unwrap();
        let live = String::from_utf8_lossy(p.out.as_slice()).into_owned();
        assert!(live.contains("out-line-1"), "{live}");
        assert!(live.contains("\x1b[2A\r\x1b[J") || live.contains("\x1b[1A\r\x1b[J"));
        p.feed(" ---> Done in 1.50s\n ---> def\nSuccessfully built def\n")
            .unwrap();
        p.finish(None).unwrap();
        let out = String::from_utf8(p.into_inner()).unwrap();
        let plain = strip_ansi(&out);
        assert!(plain.contains(" => [2/3] COPY a /a"), "{plain}");
        assert!(
            plain
                .lines()
                .any(|l| l.contains("[2/3] COPY a /a") && l.ends_with("CACHED")),
            "{plain}"
        );
        assert!(
            plain
                .lines()
                .any(|l| l.contains("[3/3] RUN make") && l.ends_with("DONE 1.5s")),
            "{plain}"
        );
        assert!(plain.contains("[+] Built in"), "{plain}");
        assert!(
            plain.trim_end().ends_with("Successfully built def"),
            "{plain}"
        );
        assert!(
            plain
                .lines()
                .all(|l| l.trim_start_matches('\r').chars().count() <= 60),
            "{plain}"
        );
    }

    #[test]
    fn an_error_keeps_the_failing_output() {
        let mut p = TtyProgress::new(Vec::new(), 80);
        p.feed("Step 1/2 : FROM busybox\nStep 2/2 : RUN false\nboom happened\n")
            .unwrap();
        p.finish(Some("returned a non-zero code: 1")).unwrap();
        let plain = strip_ansi(&String::from_utf8(p.into_inner()).unwrap());
        assert!(plain.contains(" => ERROR [2/2] RUN false"), "{plain}");
        assert!(plain.contains(" > boom happened"), "{plain}");
        assert!(plain.contains("[+] Failed after"), "{plain}");
    }

    #[test]
    fn long_lines_are_cut_to_the_width() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("a\tb\x07", 10), "a b");
    }
}

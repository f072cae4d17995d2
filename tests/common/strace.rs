//! The server's syscalls as `strace` prints them, for tests that check the
//! order of its writes, fsyncs and socket writes.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// strace attached to a running process, writing to a file.
pub struct Strace {
    child: Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Strace {
    /// Attaches to every thread of `pid`; `None` when strace is missing or
    /// may not trace.
    pub fn attach(pid: u32) -> Option<Strace> {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("strace.txt");
        let mut child = Command::new("strace")
            .args(["-f", "-y", "-ttt", "-s", "1048576", "-e"])
            .arg("trace=pwrite64,fdatasync,fsync,sync_file_range,write,writev,sendto,sendmsg")
            .arg("-o")
            .arg(&out)
            .arg("-p")
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        let stderr = child.stderr.take().expect("strace stderr");
        let mut lines = BufReader::new(stderr).lines();
        // "strace: Process N attached with M threads" once every thread is
        // traced; anything else first is a refusal.
        let attached = match lines.next() {
            Some(Ok(line)) if line.contains("attached") => true,
            other => {
                eprintln!("strace did not attach: {other:?}");
                false
            }
        };
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        if !attached {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        Some(Strace {
            child,
            out,
            _dir: dir,
        })
    }

    /// Waits for strace to end (its tracee was killed) and parses its file.
    pub fn finish(mut self) -> Vec<Line> {
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.out).expect("read the strace output");
        text.lines().filter_map(Line::parse).collect()
    }
}

impl Drop for Strace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One line of `strace -f -ttt` output.
#[derive(Debug)]
pub struct Line {
    pub pid: u32,
    pub ts: f64,
    pub call: String,
    /// Entry only (`<unfinished ...>`), exit only (`<... resumed>`), or both.
    pub enters: bool,
    pub exits: bool,
    pub text: String,
}

impl Line {
    pub fn parse(raw: &str) -> Option<Line> {
        // The pid column is padded to the widest pid seen.
        let (pid, rest) = raw.trim_start().split_once(' ')?;
        let (ts, rest) = rest.trim_start().split_once(' ')?;
        let (pid, ts) = (pid.parse().ok()?, ts.parse().ok()?);
        let (call, enters) = match rest.strip_prefix("<... ") {
            Some(resumed) => (resumed.split(' ').next()?, false),
            None => (rest.split('(').next()?, true),
        };
        Some(Line {
            pid,
            ts,
            call: call.to_owned(),
            enters,
            exits: !rest.ends_with("<unfinished ...>"),
            text: raw.to_owned(),
        })
    }
}

/// The strace lines of interest, by position in the output.
pub struct Trace {
    pub lines: Vec<Line>,
}

impl Trace {
    /// Where the call entered at `start` returned.
    pub fn exit_of(&self, start: usize) -> usize {
        let line = &self.lines[start];
        if line.exits {
            return start;
        }
        (start + 1..self.lines.len())
            .find(|&i| {
                let l = &self.lines[i];
                l.pid == line.pid && l.call == line.call && !l.enters
            })
            .unwrap_or(usize::MAX)
    }

    /// The first entry of one of `calls` after `after` whose text holds
    /// every one of `needles`.
    pub fn find(&self, after: usize, calls: &[&str], needles: &[&str]) -> Option<usize> {
        (after..self.lines.len()).find(|&i| {
            let l = &self.lines[i];
            l.enters
                && calls.contains(&l.call.as_str())
                && needles.iter().all(|n| l.text.contains(n))
        })
    }

    pub fn show(&self, i: usize) -> String {
        let text = &self.lines[i].text;
        if text.len() > 160 {
            let mut end = 160;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &text[..end])
        } else {
            text.clone()
        }
    }
}

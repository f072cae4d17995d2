//! A real SMTP server for tests: aiosmtpd (PyPI, installed by `.ci/run`)
//! running tests/accounts/smtp_sink.py, which reports each mail it gets.
//! Without aiosmtpd a test says SKIPPED, except under CI, where it fails.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub struct SmtpSink {
    child: Child,
    /// Closing it stops the server.
    _stdin: ChildStdin,
    pub port: u16,
    mails: mpsc::Receiver<Value>,
}

impl SmtpSink {
    /// `None` (and SKIPPED) when aiosmtpd is missing outside CI.
    pub fn start(test: &str) -> Option<SmtpSink> {
        let python = std::env::var("PULSEBASE_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let available = Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !available {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: aiosmtpd must be installed under CI"
            );
            eprintln!("{test}: SKIPPED (needs aiosmtpd from PyPI)");
            return None;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/accounts/smtp_sink.py");
        let mut child = Command::new(python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the SMTP sink");
        let mut stdin = child.stdin.take().expect("stdin");
        let _ = stdin.flush();
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port = lines
            .next()
            .and_then(Result::ok)
            .and_then(|line| line.trim().parse().ok())
            .expect("the SMTP sink printed no port");
        let (tx, mails) = mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(mail) = serde_json::from_str(&line) {
                    if tx.send(mail).is_err() {
                        break;
                    }
                }
            }
        });
        Some(SmtpSink {
            child,
            _stdin: stdin,
            port,
            mails,
        })
    }

    /// The next mail, if one arrives within `wait`.
    pub fn next_mail(&self, wait: Duration) -> Option<Value> {
        self.mails.recv_timeout(wait).ok()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

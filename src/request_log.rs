//! The recent HTTP requests, for the admin UI's log page: a bounded ring in
//! memory (the oldest entry goes when a new one would pass the capacity),
//! never written to disk, empty after a restart. The HTTP layer records
//! into it; admins read it newest first.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::protocol::requests::{RequestEntry, RequestLogPage};

/// Entries kept: a few minutes of a busy admin session, a few hundred KiB
/// at most (paths and messages are cut short before they are recorded).
pub const CAPACITY: usize = 500;

pub struct RequestLog {
    capacity: usize,
    entries: Mutex<VecDeque<RequestEntry>>,
}

impl Default for RequestLog {
    fn default() -> Self {
        RequestLog::new(CAPACITY)
    }
}

/// Which answers a reader wants by status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// `2xx`: one class, by its first digit.
    Class(u16),
    /// `error`: 4xx and 5xx.
    Errors,
}

impl StatusFilter {
    /// `1xx` to `5xx`, or `error`.
    pub fn parse(text: &str) -> Option<StatusFilter> {
        match text.trim().to_ascii_lowercase().as_str() {
            "error" | "errors" => Some(StatusFilter::Errors),
            class => match class.as_bytes() {
                [digit @ b'1'..=b'5', b'x', b'x'] => {
                    Some(StatusFilter::Class(u16::from(digit - b'0')))
                }
                _ => None,
            },
        }
    }

    fn admits(self, status: u16) -> bool {
        match self {
            StatusFilter::Class(class) => status / 100 == class,
            StatusFilter::Errors => status >= 400,
        }
    }
}

/// What a reader asks for: every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    pub status: Option<StatusFilter>,
    /// Paths starting with this.
    pub path_prefix: Option<String>,
    /// Only the admin UI's own requests (`true`) or only the others.
    pub admin_ui: Option<bool>,
    /// At most this many (all kept when `None`).
    pub limit: Option<usize>,
}

impl RequestLog {
    pub fn new(capacity: usize) -> RequestLog {
        RequestLog {
            capacity: capacity.max(1),
            entries: Mutex::new(VecDeque::with_capacity(capacity.max(1))),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn record(&self, entry: RequestEntry) {
        // A panic elsewhere while holding the lock leaves a ring that is
        // still whole: every change below is one push or pop.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        while entries.len() >= self.capacity {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// The entries that match, newest first, and how many `admin_ui`
    /// alone left out.
    pub fn recent(&self, wanted: &Wanted) -> RequestLogPage {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (kept, hidden): (Vec<&RequestEntry>, Vec<&RequestEntry>) = entries
            .iter()
            .rev()
            .filter(|e| wanted.status.is_none_or(|s| s.admits(e.status)))
            .filter(|e| {
                wanted
                    .path_prefix
                    .as_deref()
                    .is_none_or(|prefix| e.path.starts_with(prefix))
            })
            .partition(|e| wanted.admin_ui.is_none_or(|ui| e.admin_ui == ui));
        RequestLogPage {
            items: kept
                .into_iter()
                .take(wanted.limit.unwrap_or(usize::MAX))
                .cloned()
                .collect(),
            capacity: self.capacity,
            hidden: hidden.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, status: u16) -> RequestEntry {
        RequestEntry {
            time: String::new(),
            method: "GET".into(),
            path: path.into(),
            status,
            duration_ms: 0.0,
            actor: None,
            error: None,
            admin_ui: false,
        }
    }

    #[test]
    fn keeps_the_newest_up_to_its_capacity() {
        let log = RequestLog::new(3);
        for i in 0..5 {
            log.record(entry(&format!("/{i}"), 200));
        }
        let paths: Vec<_> = log
            .recent(&Wanted::default())
            .items
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(paths, ["/4", "/3", "/2"]);
    }

    #[test]
    fn filters_by_status_class_and_path_prefix() {
        let log = RequestLog::new(10);
        log.record(entry("/api/a", 200));
        log.record(entry("/api/b", 404));
        log.record(entry("/admin/", 500));
        log.record(entry("/api/c", 503));
        let paths = |wanted: Wanted| -> Vec<String> {
            log.recent(&wanted)
                .items
                .into_iter()
                .map(|e| e.path)
                .collect()
        };
        let errors = Some(StatusFilter::Errors);
        assert_eq!(
            paths(Wanted {
                status: errors,
                ..Wanted::default()
            }),
            ["/api/c", "/admin/", "/api/b"]
        );
        let api = Some("/api/".to_owned());
        assert_eq!(
            paths(Wanted {
                status: StatusFilter::parse("5xx"),
                path_prefix: api,
                ..Wanted::default()
            }),
            ["/api/c"]
        );
        assert_eq!(
            paths(Wanted {
                limit: Some(1),
                ..Wanted::default()
            }),
            ["/api/c"]
        );
        assert_eq!(StatusFilter::parse("4XX"), Some(StatusFilter::Class(4)));
        assert_eq!(StatusFilter::parse("6xx"), None);
        assert_eq!(StatusFilter::parse("40x"), None);
    }

    #[test]
    fn leaves_out_the_admin_ui_and_counts_what_it_left_out() {
        let log = RequestLog::new(10);
        for (path, admin_ui) in [
            ("/api/stats", true),
            ("/api/x", false),
            ("/api/stats", true),
        ] {
            log.record(RequestEntry {
                admin_ui,
                ..entry(path, 200)
            });
        }
        log.record(entry("/admin/", 404));
        let page = |admin_ui, limit| {
            log.recent(&Wanted {
                status: StatusFilter::parse("2xx"),
                admin_ui,
                limit,
                ..Wanted::default()
            })
        };
        let others = page(Some(false), None);
        assert_eq!((others.items.len(), others.hidden), (1, 2));
        assert_eq!(others.items[0].path, "/api/x");
        // What is hidden is counted before the limit cuts the rest.
        let own = page(Some(true), Some(1));
        assert_eq!((own.items.len(), own.hidden), (1, 1));
        assert!(own.items[0].admin_ui);
        let all = page(None, None);
        assert_eq!((all.items.len(), all.hidden), (3, 0));
    }
}

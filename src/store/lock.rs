//! sled's lock on the data dir, and waiting for it to be let go.

use std::time::{Duration, Instant};

use super::StoreError;

/// How long an open waits for the data dir's lock before calling it in use.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Whether sled refused to open because another handle holds its lock
/// (sled reports it as an `Other` I/O error with this text).
pub fn is_lock_held(error: &StoreError) -> bool {
    matches!(error, StoreError::Sled(sled::Error::Io(io))
        if io.to_string().contains("could not acquire lock"))
}

/// sled lets go of its lock a moment after the last handle in this process
/// drops: its background writes keep the file open until they finish. A
/// reopen in the same process (a test, an offline tool after a server)
/// waits that out; another process holding the dir is still refused, a
/// few seconds later.
pub(super) fn open_waiting(config: &sled::Config) -> Result<sled::Db, StoreError> {
    open_within(config, LOCK_WAIT)
}

fn open_within(config: &sled::Config, wait: Duration) -> Result<sled::Db, StoreError> {
    let deadline = Instant::now() + wait;
    loop {
        match config.open().map_err(StoreError::from) {
            Err(e) if is_lock_held(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            opened => return opened,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopen_waits_for_the_last_handle_to_let_go_and_no_longer() {
        let dir = tempfile::tempdir().unwrap();
        let config = sled::Config::new().path(dir.path().join("db"));
        let held = config.open().unwrap();

        let refused = open_within(&config, Duration::from_millis(200));
        assert!(
            refused.as_ref().is_err_and(is_lock_held),
            "{:?}",
            refused.map(|_| ())
        );

        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        let reopened = open_within(&config, Duration::from_secs(10));
        assert!(reopened.is_ok(), "{:?}", reopened.map(|_| ()));
        release.join().unwrap();
    }
}

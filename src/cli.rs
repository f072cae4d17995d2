//! The `backup` and `restore` commands: what they print and how they reach
//! a running server. The file format lives in [`crate::store::backup`].

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::store::backup::{self, BackupError, Summary};

/// Where `backup --url` finds its credential: a flag would show in `ps`.
const TOKEN_ENV: &str = "PULSEBASE_TOKEN";
/// The server writes the whole snapshot before it answers; a server that
/// has not answered by then is stuck, and a nightly job must not hang.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// `pulsebase backup FILE --url URL`: downloads `GET /api/backup`, checks
/// the file whole, and only then puts it at FILE.
pub fn backup_online(url: &str, file: &Path) -> anyhow::Result<()> {
    let base = url.trim_end_matches('/');
    if base.starts_with("https://") {
        bail!(
            "this build has no TLS client: back up over http on the server itself \
             (e.g. --url http://127.0.0.1:7070), or download {base}/api/backup with curl \
             and check it with `pulsebase restore`"
        );
    }
    let token = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
        .with_context(|| {
            format!("set {TOKEN_ENV} to an admin's access token or an API key with the admin role")
        })?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_recv_response(Some(ANSWER_TIMEOUT))
        .build()
        .into();
    let mut response = agent
        .get(format!("{base}/api/backup"))
        .header("Authorization", format!("Bearer {token}"))
        .call()
        .with_context(|| format!("cannot reach {base}"))?;
    let status = response.status();
    if !status.is_success() {
        let mut text = String::new();
        let _ = response
            .body_mut()
            .as_reader()
            .take(64 * 1024)
            .read_to_string(&mut text);
        bail!("{base} answered {status}: {}", text.trim());
    }
    let mut body = response.into_body().into_reader();
    let summary = backup::write_atomically(file, |out| {
        std::io::copy(&mut body, out)?;
        out.sync_all()?;
        out.seek(SeekFrom::Start(0))?;
        // A download cut short must not leave a file that looks whole.
        backup::verify(std::io::BufReader::new(&mut *out))
    })
    .map_err(describe)?;
    report("backed up", file, &summary);
    Ok(())
}

/// `pulsebase backup FILE --data DIR` on a stopped server's data dir.
pub fn backup_offline(data: &Path, file: &Path) -> anyhow::Result<()> {
    let summary = backup::backup_offline(data, file).map_err(describe)?;
    report("backed up", file, &summary);
    Ok(())
}

/// `pulsebase restore FILE --data DIR`.
pub fn restore(file: &Path, data: &Path) -> anyhow::Result<()> {
    let summary = backup::restore(file, data).map_err(describe)?;
    report("restored", file, &summary);
    println!("start the server with --data {} to use it", data.display());
    Ok(())
}

fn describe(error: BackupError) -> anyhow::Error {
    anyhow::anyhow!(error)
}

fn report(what: &str, file: &Path, summary: &Summary) {
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let trees: Vec<String> = summary
        .trees
        .iter()
        .map(|(name, count)| format!("{name} {count}"))
        .collect();
    println!(
        "{what} {} ({} entries, {size} bytes; {})",
        file.display(),
        summary.entries,
        trees.join(", ")
    );
}

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::Context as _;
use clap::Parser as _;
use tracing_subscriber::EnvFilter;

use pulsebase::config::{AdminCommand, Cli, Command, ServeArgs, Settings};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    #[cfg(all(feature = "mimalloc", target_os = "linux"))]
    purge_freed_memory_promptly(&cli);
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("PULSEBASE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .on_thread_start(pulsebase::priority::favour_current_thread)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        None => runtime.block_on(serve(cli.serve)),
        Some(Command::Serve(args)) => runtime.block_on(serve(*args)),
        Some(Command::Admin {
            command:
                AdminCommand::Create {
                    email,
                    name,
                    password_stdin,
                    data,
                },
        }) => runtime.block_on(admin_create(email, name, password_stdin, data)),
        Some(Command::Backup { file, url, data }) => match url {
            Some(url) => pulsebase::cli::backup_online(&url, &file),
            None => pulsebase::cli::backup_offline(&data_dir(data), &file),
        },
        Some(Command::Restore { file, data }) => pulsebase::cli::restore(&file, &data_dir(data)),
    }
}

fn data_dir(data: Option<std::path::PathBuf>) -> std::path::PathBuf {
    data.unwrap_or_else(|| std::path::PathBuf::from("pulsebase_data"))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(&args)?;
    pulsebase::server::run(settings, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

async fn admin_create(
    email: String,
    name: Option<String>,
    password_stdin: bool,
    data: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let settings = Settings::resolve(&ServeArgs {
        data,
        ..ServeArgs::default()
    })?;
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password("Password: ")?;
        let second = rpassword::prompt_password("Password again: ")?;
        anyhow::ensure!(first == second, "the passwords differ");
        first
    };
    pulsebase::auth::password::check_policy(&password)?;
    let hash = pulsebase::auth::password::hash_blocking(&password)?;
    let store = pulsebase::server::open_store(&settings)?;
    let writer = pulsebase::store::writer::Writer::start(
        store,
        pulsebase::config::Durability::Sync,
        settings.flush_ms,
        None,
    )?;
    let created =
        pulsebase::server::create_admin(&writer, &email, name.unwrap_or_default(), hash).await;
    writer.shutdown().await;
    let user = created?;
    println!("admin {} created (id {})", user.email, user.id);
    Ok(())
}

// The writer and request paths allocate many small buffers; mimalloc handles
// that pattern much better than glibc malloc here (see bench/RESULTS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc gives freed memory back to the system only `purge_delay` after
/// it was freed (1000 ms by default). Under ingest that kept about 40 MiB
/// of freed request buffers resident. Measured on series ingest (1000
/// readings a request): 1000 ms peaked near 150 MiB; 10 ms kept the
/// throughput; 0 gave the smallest peak. With `cache_mb = 8` and 4 clients,
/// 10 ms peaked at 70-73 MiB and 0 at 60-62 MiB, at about the same rate
/// on a busy machine. So a
/// small memory budget (`cache_mb` under [`SMALL_CACHE_MB`]: a gateway)
/// purges at once, and a larger one waits 10 ms.
///
/// mimalloc reads its options from the environment before `main` runs,
/// and setting one afterwards takes unsafe FFI, so when the variable is
/// unset the process sets it and executes itself again, once (same pid,
/// same arguments). Setting MIMALLOC_PURGE_DELAY yourself skips this.
#[cfg(all(feature = "mimalloc", target_os = "linux"))]
fn purge_freed_memory_promptly(cli: &Cli) {
    use std::os::unix::process::CommandExt as _;

    const PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";
    if std::env::var_os(PURGE_DELAY).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let serve = match &cli.command {
        None => Some(&cli.serve),
        Some(Command::Serve(args)) => Some(&**args),
        Some(_) => None,
    };
    // Bad settings are reported by `serve`, after the exec.
    let cache_mb = serve.and_then(|args| Settings::resolve(args).ok().map(|s| s.cache_mb));
    let delay = match cache_mb {
        Some(mb) if mb < SMALL_CACHE_MB => "0",
        _ => "10",
    };
    std::env::set_var(PURGE_DELAY, delay);
    let mut args = std::env::args_os();
    let mut again = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        again.arg0(arg0);
    }
    // Returns only if the exec failed: then run with mimalloc's default.
    let error = again.args(args).exec();
    eprintln!("note: running with mimalloc's default purge delay ({error})");
}

/// Below this `cache_mb`, the server is on a small box and frees memory
/// back to the system at once.
#[cfg(all(feature = "mimalloc", target_os = "linux"))]
const SMALL_CACHE_MB: u64 = 32;

//! Wiring: open the store, start the writer, bootstrap the first admin,
//! serve, and shut down in order (stop accepting, finish in-flight requests
//! with a deadline, stop background tasks, flush storage).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use rand::RngCore;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::Auth;
use crate::config::{Live, Settings};
use crate::http;
use crate::model::user::normalize_email;
use crate::model::User;
use crate::retention;
use crate::state::{AppState, Shared};
use crate::store::writer::{Mutation, WriteError, Writer};
use crate::store::Store;

/// How long in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long WebSockets get to send their close frame once the rest has
/// stopped (they finish the closing handshake if the client answers).
const GOODBYE_GRACE: Duration = Duration::from_secs(2);

/// Opens the data dir's database, explaining the common failure.
pub fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&settings.data)
        .with_context(|| format!("cannot create data dir {}", settings.data.display()))?;
    Store::open_with_cache(&settings.data.join("db"), settings.cache_bytes()).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the database in {}: {e} (is another pulsebase using this data dir?)",
            settings.data.display()
        )
    })
}

/// Serves until `shutdown` completes. `on_listening` hears the bound address
/// (tests bind port 0).
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Before the writer starts, so its first fsyncs are counted.
    crate::metrics::spawn_upkeep();
    let store = open_store(&settings)?;
    // Subscribe to the change log before anything can write to it.
    let wiring = crate::fanout::Wiring::new(&store);
    let writer = Writer::start(
        store.clone(),
        settings.durability,
        settings.flush_ms,
        Some(wiring.taps()),
    )?;
    let first_seq = *writer.committed_seq().borrow() + 1;
    let live = Live::new(
        settings.tunables.clone(),
        settings.sources.clone(),
        store.runtime_settings()?,
    );
    let realtime = wiring
        .start(store.clone(), first_seq, live.clone())
        .context("cannot start the realtime hub")?;
    let auth = Auth::new(store.clone(), live.clone(), writer.clone())?;
    {
        let realtime = realtime.clone();
        auth.on_session_revoked(move |sign_in| realtime.sign_in_ended(sign_in));
    }
    bootstrap_admin(&settings, &store, &writer, &auth).await?;
    // The demo must be usable at once: with no admin yet, it makes one and
    // prints the password instead of a setup code.
    let demo_admin = if settings.demo && !store.admin_exists()? {
        Some(demo_admin(&writer, &auth).await?)
    } else {
        None
    };
    let setup_code = if store.admin_exists()? {
        None
    } else {
        Some(new_setup_code())
    };

    let listener = TcpListener::bind(settings.http)
        .await
        .with_context(|| format!("cannot listen on {}", settings.http))?;
    let addr = listener.local_addr()?;
    let mqtt_listener = match settings.mqtt {
        Some(mqtt) => Some(
            TcpListener::bind(mqtt)
                .await
                .with_context(|| format!("cannot listen for MQTT on {mqtt}"))?,
        ),
        None => None,
    };
    let demo = settings.demo;
    let printed_code = setup_code.clone();

    let listening = format!("http://{}", reachable(addr));
    if settings.mail.smtp_url.is_some() && settings.mail.app_url.is_none() {
        tracing::info!(%listening, "links in account mail lead here; set app_url if users reach the server by another address");
    }
    let mailer =
        crate::mail::Mailer::from_settings(&settings.mail, &listening)?.map(std::sync::Arc::new);
    let (stop_tx, stop_rx) = watch::channel(false);
    let connections = crate::realtime::runtime::Connections::start()
        .context("cannot start the realtime connection threads")?;
    let ingest_budget = crate::ingest_budget::IngestBudget::for_cache(settings.cache_bytes());
    let state = AppState::new(Shared {
        mailer,
        settings,
        live,
        store,
        writer: writer.clone(),
        auth,
        realtime: realtime.clone(),
        shutdown: stop_rx.clone(),
        setup_code: Mutex::new(setup_code),
        requests: Default::default(),
        mqtt_sessions: Default::default(),
        parsers: crate::parse_pool::ParsePool::new().context("cannot start the parser threads")?,
        ingest_budget,
        realtime_runtime: connections.handle().clone(),
    });
    let retention = tokio::spawn(retention::run(state.clone(), stop_rx.clone()));
    let simulator = if demo {
        let collection = crate::demo::install(&state).await?;
        announce_demo(addr, &collection, demo_admin.as_ref());
        Some(tokio::spawn(crate::demo::simulate(
            state.clone(),
            collection,
            stop_rx.clone(),
        )))
    } else {
        None
    };
    let mqtt = match mqtt_listener {
        Some(listener) => {
            // Not "listening on": scripts wait for that line, which comes last.
            println!("mqtt clients connect to {}", listener.local_addr()?);
            Some(tokio::spawn(crate::mqtt::serve(state.clone(), listener)))
        }
        None => None,
    };
    announce(addr, printed_code.as_deref());

    let app = http::router(state.clone());
    let signalled = {
        let stop_tx = stop_tx.clone();
        let realtime = state.realtime.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections");
            let _ = stop_tx.send(true);
            realtime.going_away();
        }
    };
    // Without TCP_NODELAY a small event written while an earlier one is
    // unacknowledged waits for the peer's delayed ACK: milliseconds of
    // latency for every realtime subscriber.
    let listener = http::hyper_errors::JsonErrorListener(listener).tap_io(|stream| {
        if let Err(e) = stream.get_ref().set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let streams = state.realtime_runtime.clone();
    let serve = http::serve::serve(listener, app, streams, signalled);
    let mut deadline_rx = stop_rx.clone();
    let deadline = async move {
        let _ = deadline_rx.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = serve => {}
        () = deadline => tracing::warn!("in-flight requests did not finish in time; closing them"),
    }
    let _ = stop_tx.send(true);
    // MQTT sessions finish their writes before the writer stops.
    if let Some(mqtt) = mqtt {
        let _ = mqtt.await;
    }
    crate::mqtt::finish(&state).await;
    let _ = retention.await;
    if let Some(simulator) = simulator {
        let _ = simulator.await;
    }
    realtime.stop().await;
    // WebSockets were asked to close (1001) when the stop began, but their
    // threads run at a lower priority: on a busy machine the rest of the
    // stop can be over before they have written a word. Whatever is left
    // after the grace ends with the process.
    let goodbye = tokio::time::Instant::now() + GOODBYE_GRACE;
    while state.realtime.connections.open() > 0 && tokio::time::Instant::now() < goodbye {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(connections);
    writer.shutdown().await;
    tracing::info!("storage flushed; bye");
    Ok(())
}

/// Where a browser or curl on this machine reaches a server bound to `addr`:
/// 0.0.0.0 and [::] accept connections but are not addresses to connect to.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

fn announce(bound: SocketAddr, setup_code: Option<&str>) {
    // Plain lines on stdout, for people and for scripts that wait for them;
    // the listening line comes last, once everything above is said.
    let addr = reachable(bound);
    if let Some(code) = setup_code {
        println!("no admin yet. Create one with this one-time setup code ({code}):");
        println!(
            "  curl -X POST http://{addr}/api/setup -H 'Content-Type: application/json' \\\n    -d '{{\"code\":\"{code}\",\"email\":\"you@example.com\",\"password\":\"a long password\"}}'"
        );
        tracing::info!("waiting for the first admin (setup code printed on stdout)");
    }
    println!("admin UI: http://{addr}/admin/");
    println!(
        "pulsebase {} listening on http://{bound}",
        env!("CARGO_PKG_VERSION")
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
}

/// What `--demo` prints before the listening line.
fn announce_demo(bound: SocketAddr, collection: &str, admin: Option<&(String, String)>) {
    let addr = reachable(bound);
    println!(
        "demo: {} simulated devices write to `{collection}` every second",
        crate::demo::device_count()
    );
    let (email, password) = match admin {
        Some((email, password)) => {
            println!("demo admin: {email} / {password}");
            (email.as_str(), password.as_str())
        }
        None => ("<admin email>", "<password>"),
    };
    println!("  sign in:  curl -X POST http://{addr}/api/auth/signin -H 'Content-Type: application/json' \\");
    println!("              -d '{{\"email\":\"{email}\",\"password\":\"{password}\"}}'");
    println!(
        "  watch:    curl -N 'http://{addr}/api/realtime/sse?topic={collection}&token=<token>'"
    );
}

/// Creates `admin@demo.local` with a random password; returns both.
async fn demo_admin(writer: &Writer, auth: &Auth) -> anyhow::Result<(String, String)> {
    let email = "admin@demo.local".to_owned();
    let mut bytes = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let hash = auth
        .passwords
        .hash(password.clone())
        .await
        .map_err(|e| anyhow::anyhow!("demo admin password: {e}"))?;
    create_admin(writer, &email, "Demo admin".into(), hash).await?;
    tracing::info!(%email, "demo admin created");
    Ok((email, password))
}

fn new_setup_code() -> String {
    let mut bytes = [0u8; 10];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `PULSEBASE_ADMIN_EMAIL` / `PULSEBASE_ADMIN_PASSWORD` create that admin on
/// start if no user has that email yet.
async fn bootstrap_admin(
    settings: &Settings,
    store: &Store,
    writer: &Writer,
    auth: &Auth,
) -> anyhow::Result<()> {
    let (Some(email), Some(password)) = (&settings.admin_email, &settings.admin_password) else {
        return Ok(());
    };
    let email = normalize_email(email);
    if store.user_by_email(&email)?.is_some() {
        return Ok(());
    }
    let password_hash = auth
        .passwords
        .hash(password.clone())
        .await
        .map_err(|e| anyhow::anyhow!("PULSEBASE_ADMIN_PASSWORD: {e}"))?;
    create_admin(writer, &email, String::new(), password_hash).await?;
    tracing::info!(%email, "admin created from PULSEBASE_ADMIN_EMAIL");
    Ok(())
}

pub async fn create_admin(
    writer: &Writer,
    email: &str,
    name: String,
    password_hash: String,
) -> anyhow::Result<User> {
    let user = User {
        id: crate::ids::generate(),
        email: normalize_email(email),
        name,
        roles: vec!["admin".to_owned()],
        groups: Vec::new(),
        tenant: None,
        disabled: false,
        created: crate::clock::now_rfc3339(),
        password_hash,
        generation: 0,
        verified: false,
    };
    match writer.submit(Mutation::CreateUser(user.clone())).await {
        Ok(_) => Ok(user),
        Err(WriteError::EmailTaken) => anyhow::bail!("a user with email {email} already exists"),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_addresses_are_ones_to_connect_to() {
        let at = |text: &str| reachable(text.parse().expect("address")).to_string();
        assert_eq!(at("0.0.0.0:7070"), "127.0.0.1:7070");
        assert_eq!(at("[::]:7070"), "[::1]:7070");
        assert_eq!(at("192.168.1.20:7070"), "192.168.1.20:7070");
    }
}

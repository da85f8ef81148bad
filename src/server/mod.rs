//! `herald serve`: the HTTP server, the dispatcher, configuration reloads on SIGHUP and a
//! clean stop on SIGTERM or SIGINT.

mod accept;
mod intake;
mod logging;
mod routes;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use logging::LogFormat;
pub use state::AppState;

use crate::channels::{ChannelSet, http_client};
use crate::config::duration::parse_duration;
use crate::config::env::ProcessEnv;
use crate::config::{LoadOptions, load};
use crate::metrics::Metrics;
use crate::outbox::Store;
use crate::outbox::dispatcher::Dispatcher;
use crate::outbox::sqlite::SqliteStore;

/// The signal number of SIGXFSZ on Linux and macOS.
const SIGXFSZ: i32 = 25;

/// Exit status when the configuration does not load at startup.
const EXIT_CONFIG: u8 = 2;
/// Exit status when the store, the listener or the runtime cannot start.
const EXIT_STARTUP: u8 = 1;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Folder holding rules.yaml, templates/ and schemas/.
    #[arg(long, env = "HERALD_CONFIG_DIR", default_value = ".")]
    pub config_dir: PathBuf,
    /// Folder for the outbox database and the file outbox.
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "HERALD_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,
    /// Time a client has to send the request headers, such as 10s; slower clients are
    /// disconnected.
    #[arg(long, env = "HERALD_HEADER_TIMEOUT", default_value = "10s", value_parser = duration_arg)]
    pub header_timeout: Duration,
    /// Time a whole request may take, body and durable commit included, such as 30s.
    #[arg(long, env = "HERALD_REQUEST_TIMEOUT", default_value = "30s", value_parser = duration_arg)]
    pub request_timeout: Duration,
    /// Most connections open at once; further connections are closed at accept.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Time in-flight requests and sends get to finish after SIGTERM, such as 20s.
    #[arg(long, env = "HERALD_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = duration_arg)]
    pub shutdown_timeout: Duration,
    /// Log format: text for people, json for log collectors.
    #[arg(long, env = "HERALD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> ExitCode {
    logging::init(args.log_format);
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "Cannot start the async runtime");
            return ExitCode::from(EXIT_STARTUP);
        }
    };
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> ExitCode {
    // Signal handlers go first: a SIGHUP that arrives while the configuration loads must
    // not kill the process, which is what the default disposition would do.
    let (Ok(mut hangup), Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("Cannot install signal handlers");
        return ExitCode::from(EXIT_STARTUP);
    };
    // With a file size limit (ulimit -f) reached, the default action of SIGXFSZ kills the
    // process. Handling it turns the limit into a failed write, which the store reports as
    // unavailable (503) like a full disk.
    let _file_size_limit = signal(SignalKind::from_raw(SIGXFSZ));

    let options = LoadOptions {
        config_dir: &args.config_dir,
        data_dir: &args.data_dir,
        env: &ProcessEnv,
        generation: 1,
    };
    let generation = match load(&options) {
        Ok(generation) => Arc::new(generation),
        Err(errors) => {
            for error in &errors.0 {
                tracing::error!(error = %error, "Configuration error");
            }
            tracing::error!(
                errors = errors.0.len(),
                "Configuration invalid; not starting (run herald check for the list)"
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for notice in &generation.notices {
        tracing::info!(notice = %notice, "Configuration notice");
    }
    crate::phone::warm_up();

    let store = match SqliteStore::open(&args.data_dir) {
        Ok(store) => Arc::new(store),
        Err(error) => {
            tracing::error!(%error, data_dir = %args.data_dir.display(), "Cannot open the outbox");
            return ExitCode::from(EXIT_STARTUP);
        }
    };
    let instance_id: Arc<str> = Arc::from(store.instance_id());
    let store: Arc<dyn Store> = store;

    let http = match http_client() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "Cannot start the HTTP client");
            return ExitCode::from(EXIT_STARTUP);
        }
    };
    let channel_set = match ChannelSet::build(&generation, None, &http) {
        Ok(set) => Arc::new(set),
        Err(errors) => {
            for error in errors {
                tracing::error!(%error, "Channel setup failed");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    let metrics = Metrics::new();
    metrics.config_generation.set(generation.number as i64);
    let (generation_sender, generation_receiver) = watch::channel(generation.clone());
    let (channels_sender, channels_receiver) = watch::channel(channel_set);
    let wake = Arc::new(Notify::new());
    let shutdown = CancellationToken::new();
    let sends = TaskTracker::new();

    let state = AppState {
        generation: generation_receiver,
        store: store.clone(),
        wake: wake.clone(),
        metrics: metrics.clone(),
        max_body_bytes: args.max_body_bytes,
        shutting_down: shutdown.clone(),
    };

    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, listen = %args.listen, "Cannot listen");
            return ExitCode::from(EXIT_STARTUP);
        }
    };
    let local = listener.local_addr().unwrap_or(args.listen);
    tracing::info!(
        listen = %local,
        generation = generation.number,
        rules = generation.rules.len(),
        channels = generation.channels.len(),
        data_dir = %args.data_dir.display(),
        "herald started"
    );

    let dispatcher = Dispatcher {
        store: store.clone(),
        channels: channels_receiver.clone(),
        wake: wake.clone(),
        instance_id,
        metrics: metrics.clone(),
        tracker: sends.clone(),
    };
    let dispatcher_task = tokio::spawn(dispatcher.run(shutdown.child_token()));
    let purge_task = tokio::spawn(state::purge_periodically(
        store.clone(),
        generation_sender.subscribe(),
        shutdown.child_token(),
    ));

    let router = routes::router(state.clone(), &args);
    let accept_stop = CancellationToken::new();
    let server_task = tokio::spawn(accept::serve(
        listener,
        router,
        accept::Limits::from_args(&args),
        accept_stop.clone(),
    ));

    let reloader = state::Reloader {
        config_dir: args.config_dir.clone(),
        data_dir: args.data_dir.clone(),
        generations: generation_sender,
        channels: channels_sender,
        http,
        metrics: metrics.clone(),
    };
    loop {
        tokio::select! {
            _ = hangup.recv() => reloader.reload().await,
            _ = terminate.recv() => { tracing::info!(signal = "SIGTERM", "Stopping"); break; }
            _ = interrupt.recv() => { tracing::info!(signal = "SIGINT", "Stopping"); break; }
        }
    }

    // Stop: refuse new connections, let requests in flight finish, stop claiming, and give
    // sends in flight until the deadline. Deliveries not finished stay in the outbox.
    let deadline = tokio::time::Instant::now() + args.shutdown_timeout;
    accept_stop.cancel();
    shutdown.cancel();
    match tokio::time::timeout_at(deadline, server_task).await {
        Ok(_) => tracing::info!("HTTP server stopped"),
        Err(_) => tracing::warn!("Requests still open at the shutdown deadline were cut off"),
    }
    let _ = dispatcher_task.await;
    purge_task.abort();
    sends.close();
    match tokio::time::timeout_at(deadline, sends.wait()).await {
        Ok(()) => tracing::info!("Sends in flight finished"),
        Err(_) => tracing::warn!(
            unfinished = sends.len(),
            "Sends still running at the shutdown deadline; their deliveries are retried after their lease runs out"
        ),
    }
    tracing::info!("herald stopped");
    ExitCode::SUCCESS
}

//! State shared by the request handlers, configuration reloads, and retention purging.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::channels::ChannelSet;
use crate::config::env::ProcessEnv;
use crate::config::{Generation, LoadOptions, load};
use crate::metrics::Metrics;
use crate::outbox::Store;

/// What every request handler gets.
#[derive(Clone)]
pub struct AppState {
    pub generation: watch::Receiver<Arc<Generation>>,
    pub store: Arc<dyn Store>,
    /// Wakes the dispatcher after a commit.
    pub wake: Arc<Notify>,
    pub metrics: Metrics,
    pub max_body_bytes: usize,
    pub shutting_down: CancellationToken,
}

impl AppState {
    /// The generation in use now. The `Arc` is cloned and the watch guard dropped at once, so
    /// a request keeps the generation it started with even if a reload swaps it meanwhile.
    pub fn current(&self) -> Arc<Generation> {
        self.generation.borrow().clone()
    }
}

/// Builds and swaps in new generations on SIGHUP.
pub struct Reloader {
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
    pub generations: watch::Sender<Arc<Generation>>,
    pub channels: watch::Sender<Arc<ChannelSet>>,
    pub http: reqwest::Client,
    pub metrics: Metrics,
}

impl Reloader {
    /// Loads every file into a new generation and swaps it in, or keeps the current one and
    /// logs every error.
    pub async fn reload(&self) {
        let current = self.generations.borrow().clone();
        let number = current.number + 1;
        tracing::info!(
            current_generation = current.number,
            "Reloading configuration (SIGHUP)"
        );
        let config_dir = self.config_dir.clone();
        let data_dir = self.data_dir.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            load(&LoadOptions {
                config_dir: &config_dir,
                data_dir: &data_dir,
                env: &ProcessEnv,
                generation: number,
            })
        })
        .await;
        let generation = match loaded {
            Ok(Ok(generation)) => Arc::new(generation),
            Ok(Err(errors)) => {
                for error in &errors.0 {
                    tracing::error!(
                        file = %error.file.display(),
                        line = error.line,
                        key = %error.key,
                        error = %error.message,
                        "Configuration error"
                    );
                }
                self.fail(
                    current.number,
                    format!("{} configuration error(s)", errors.0.len()),
                );
                return;
            }
            Err(error) => {
                self.fail(current.number, format!("the loader panicked: {error}"));
                return;
            }
        };
        let previous_channels = self.channels.borrow().clone();
        let channel_set = match ChannelSet::build(&generation, Some(&previous_channels), &self.http)
        {
            Ok(set) => Arc::new(set),
            Err(errors) => {
                for error in &errors {
                    tracing::error!(%error, "Channel setup failed");
                }
                self.fail(current.number, format!("{} channel error(s)", errors.len()));
                return;
            }
        };
        for notice in &generation.notices {
            tracing::info!(notice = %notice, "Configuration notice");
        }
        for removed in previous_channels
            .channels
            .keys()
            .filter(|name| !generation.channels.contains_key(*name))
        {
            tracing::warn!(
                channel = %removed,
                "Channel removed; its pending deliveries stay in the outbox until a channel with this name is configured again"
            );
        }
        self.generations.send_replace(generation.clone());
        self.channels.send_replace(channel_set);
        self.metrics.config_generation.set(generation.number as i64);
        self.metrics.count_reload("success");
        tracing::info!(
            generation = generation.number,
            rules = generation.rules.len(),
            channels = generation.channels.len(),
            result = "success",
            "Configuration reloaded"
        );
    }

    fn fail(&self, kept: u64, reason: String) {
        self.metrics.count_reload("failure");
        tracing::error!(generation = kept, result = "failure", reason = %reason, "Configuration reload failed; still serving the previous generation");
    }
}

/// How often retention runs.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// Deletes events older than the retention period, and expired dedupe keys, every few minutes.
pub async fn purge_periodically(
    store: Arc<dyn Store>,
    generations: watch::Receiver<Arc<Generation>>,
    shutdown: CancellationToken,
) {
    loop {
        let retention = generations.borrow().defaults.retention;
        let now = Timestamp::now();
        let before = now
            .checked_sub(
                jiff::SignedDuration::try_from(retention).unwrap_or(jiff::SignedDuration::MAX),
            )
            .unwrap_or(Timestamp::MIN);
        match store.purge(now, before).await {
            Ok(report) if report.events > 0 || report.dedupe_keys > 0 => tracing::info!(
                events = report.events,
                deliveries = report.deliveries,
                dedupe_keys = report.dedupe_keys,
                "Purged data past retention"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "Retention purge failed; will try again"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(PURGE_INTERVAL) => {}
        }
    }
}

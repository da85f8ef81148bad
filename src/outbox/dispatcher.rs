//! The dispatcher: leases due deliveries from the store, sends each through its channel's
//! driver within the channel's concurrency and rate limits, and records the outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::{Notify, OwnedSemaphorePermit, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::retry::backoff;
use super::{AttemptOutcome, AttemptReport, ChannelClaim, ClaimRequest, Claimed, Store};
use crate::channels::{ChannelRuntime, ChannelSet, FailureKind, Outgoing};
use crate::metrics::{ChannelLabel, Metrics};
use crate::timezone::format_utc;

/// Maximum time the dispatcher sleeps without checking the store, so that deliveries written by
/// another process (`herald deliveries retry`) are picked up.
const MAX_IDLE: Duration = Duration::from_secs(1);

/// Added to twice a channel's send timeout to get its lease. A send is cut off at its timeout
/// plus 5 seconds, so a lease outlives any live send, and a crashed sender's deliveries become
/// due again soon after.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// Shared handles the dispatcher and its send tasks use.
#[derive(Clone)]
pub struct Dispatcher {
    pub store: Arc<dyn Store>,
    pub channels: watch::Receiver<Arc<ChannelSet>>,
    /// Notified when new deliveries are committed or a send finishes.
    pub wake: Arc<Notify>,
    pub instance_id: Arc<str>,
    pub metrics: Metrics,
    pub tracker: TaskTracker,
}

impl Dispatcher {
    /// Runs until `shutdown` is cancelled. Sends in flight then are left to the tracker, which
    /// the caller waits on with a deadline.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!("Dispatcher started");
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let set = self.channels.borrow().clone();
            let wanted = self.claim_and_spawn(&set).await;

            if wanted == ClaimResult::MoreDue {
                tokio::task::yield_now().await;
                continue;
            }
            // With every permit in use, only a finishing send (which wakes this loop) frees
            // capacity, so there is no due time worth asking the store for.
            if wanted == ClaimResult::Saturated {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(MAX_IDLE) => {}
                }
                continue;
            }
            let channels: Vec<String> = set.channels.keys().cloned().collect();
            let idle = match self.store.next_due(channels).await {
                Ok(Some(due)) => {
                    let wait = due.duration_since(Timestamp::now());
                    Duration::try_from(wait)
                        .unwrap_or(Duration::ZERO)
                        .min(MAX_IDLE)
                }
                Ok(None) => MAX_IDLE,
                Err(error) => {
                    tracing::warn!(%error, "Cannot read the next due time from the store");
                    MAX_IDLE
                }
            };
            let idle = idle.max(Duration::from_millis(5));
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(idle) => {}
            }
        }
        tracing::info!("Dispatcher stopped claiming deliveries");
    }

    async fn claim_and_spawn(&self, set: &ChannelSet) -> ClaimResult {
        let now_instant = Instant::now();
        let channels: Vec<ChannelClaim> = set
            .channels
            .iter()
            .map(|(name, runtime)| ChannelClaim {
                channel: name.clone(),
                limit: runtime.capacity(now_instant),
                lease: runtime.config.timeout * 2 + LEASE_MARGIN,
            })
            .filter(|claim| claim.limit > 0)
            .collect();
        if channels.is_empty() {
            return ClaimResult::Saturated;
        }
        let requested: usize = channels.iter().map(|claim| claim.limit).sum();
        let claimed = match self
            .store
            .claim(ClaimRequest {
                now: Timestamp::now(),
                channels,
            })
            .await
        {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::error!(%error, "Cannot claim deliveries from the store");
                return ClaimResult::Idle;
            }
        };
        let count = claimed.len();
        for delivery in claimed {
            let Some(runtime) = set.channels.get(&delivery.channel).cloned() else {
                let _ = self.store.release(delivery.id, delivery.lease_token).await;
                continue;
            };
            let Ok(permit) = runtime.permits.clone().try_acquire_owned() else {
                let _ = self.store.release(delivery.id, delivery.lease_token).await;
                continue;
            };
            runtime.take_tokens(1, now_instant);
            let dispatcher = self.clone();
            self.tracker.spawn(async move {
                dispatcher.deliver(delivery, runtime, permit).await;
            });
        }
        if count == requested {
            ClaimResult::MoreDue
        } else {
            ClaimResult::Idle
        }
    }

    async fn deliver(
        &self,
        delivery: Claimed,
        runtime: Arc<ChannelRuntime>,
        permit: OwnedSemaphorePermit,
    ) {
        let started_at = Timestamp::now();
        let (outcome, sent) = self.attempt(&delivery, &runtime, started_at).await;
        let report = AttemptReport {
            id: delivery.id,
            lease_token: delivery.lease_token,
            started_at,
            finished_at: Timestamp::now(),
            outcome,
            sent,
        };
        log_attempt(&delivery, &report);
        self.metrics
            .count_attempt(&delivery.channel, outcome_label(&report.outcome));
        self.record(report).await;
        drop(permit);
        self.wake.notify_one();
    }

    /// Sends once and decides what follows: delivered, retry at a time, failed or expired.
    async fn attempt(
        &self,
        delivery: &Claimed,
        runtime: &ChannelRuntime,
        now: Timestamp,
    ) -> (AttemptOutcome, bool) {
        if let Some(limit) = delivery.not_after
            && now > limit
        {
            return (
                AttemptOutcome::Expired {
                    reason: format!(
                        "not_after {} passed before the message could be sent",
                        format_utc(limit)
                    ),
                },
                false,
            );
        }
        let policy = &runtime.config.retry;
        let give_up_at = delivery
            .created_at
            .checked_add(
                jiff::SignedDuration::try_from(policy.max_age).unwrap_or(jiff::SignedDuration::MAX),
            )
            .unwrap_or(Timestamp::MAX);

        let outgoing = Outgoing {
            delivery_id: delivery.id,
            attempt: delivery.attempt,
            message: &delivery.message,
            instance_id: &self.instance_id,
        };
        let clock = Instant::now();
        let hard_limit = runtime.config.timeout + Duration::from_secs(5);
        let result = match tokio::time::timeout(hard_limit, runtime.driver.send(&outgoing)).await {
            Ok(result) => result,
            Err(_) => Err(crate::channels::SendError::transient(format!(
                "the send did not finish within {}s",
                hard_limit.as_secs()
            ))),
        };
        self.metrics
            .send_seconds
            .get_or_create_owned(&ChannelLabel {
                channel: delivery.channel.clone(),
            })
            .observe(clock.elapsed().as_secs_f64());

        let error = match result {
            Ok(receipt) => {
                return (
                    AttemptOutcome::Delivered {
                        provider_id: receipt.provider_id,
                    },
                    true,
                );
            }
            Err(error) => error,
        };
        if error.kind == FailureKind::Permanent {
            return (
                AttemptOutcome::Failed {
                    error: error.message,
                },
                true,
            );
        }
        if delivery.budget_attempt >= policy.max_attempts {
            return (
                AttemptOutcome::Failed {
                    error: format!(
                        "gave up after {} attempts; last error: {}",
                        delivery.budget_attempt, error.message
                    ),
                },
                true,
            );
        }
        let delay = backoff(
            policy,
            delivery.budget_attempt,
            error.retry_after,
            fastrand::f64(),
        );
        let retry_at = Timestamp::now()
            .checked_add(jiff::SignedDuration::try_from(delay).unwrap_or(jiff::SignedDuration::MAX))
            .unwrap_or(Timestamp::MAX);
        if retry_at > give_up_at {
            return (
                AttemptOutcome::Failed {
                    error: format!(
                        "gave up: the next attempt would exceed the channel's max_age; last error: {}",
                        error.message
                    ),
                },
                true,
            );
        }
        if let Some(limit) = delivery.not_after
            && retry_at > limit
        {
            return (
                AttemptOutcome::Expired {
                    reason: format!(
                        "the next attempt would be after not_after {}; last error: {}",
                        format_utc(limit),
                        error.message
                    ),
                },
                true,
            );
        }
        (
            AttemptOutcome::Retry {
                error: error.message,
                retry_at,
            },
            true,
        )
    }

    /// Writes the report, retrying while the store is unavailable. If it never succeeds, the
    /// lease runs out and the delivery is attempted again, so it may be sent twice.
    async fn record(&self, report: AttemptReport) {
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=10 {
            match self.store.finish(report.clone()).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::error!(delivery_id = report.id, attempt, %error, "Cannot record a delivery attempt; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::error!(
            delivery_id = report.id,
            "Gave up recording a delivery attempt; the delivery will be retried when its lease runs out"
        );
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClaimResult {
    /// Every channel got all it asked for, so more may be due.
    MoreDue,
    /// Fewer were due than there was capacity for.
    Idle,
    /// No channel has capacity.
    Saturated,
}

fn outcome_label(outcome: &AttemptOutcome) -> &'static str {
    match outcome {
        AttemptOutcome::Delivered { .. } => "delivered",
        AttemptOutcome::Retry { .. } => "transient",
        AttemptOutcome::Failed { .. } => "permanent",
        AttemptOutcome::Expired { .. } => "expired",
    }
}

fn log_attempt(delivery: &Claimed, report: &AttemptReport) {
    let millis = report
        .finished_at
        .duration_since(report.started_at)
        .as_millis();
    match &report.outcome {
        AttemptOutcome::Delivered { .. } => tracing::info!(
            delivery_id = delivery.id, event_id = delivery.event_id, channel = %delivery.channel,
            attempt = delivery.attempt, duration_ms = millis, "Delivered"
        ),
        AttemptOutcome::Retry { error, retry_at } => tracing::warn!(
            delivery_id = delivery.id, event_id = delivery.event_id, channel = %delivery.channel,
            attempt = delivery.attempt, duration_ms = millis, %error, retry_at = %format_utc(*retry_at),
            "Delivery failed; will retry"
        ),
        AttemptOutcome::Failed { error } => tracing::error!(
            delivery_id = delivery.id, event_id = delivery.event_id, channel = %delivery.channel,
            attempt = delivery.attempt, duration_ms = millis, %error, "Delivery failed permanently"
        ),
        AttemptOutcome::Expired { reason } => tracing::warn!(
            delivery_id = delivery.id, event_id = delivery.event_id, channel = %delivery.channel,
            attempt = delivery.attempt, %reason, "Delivery expired"
        ),
    }
}

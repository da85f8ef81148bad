//! The durable outbox: the store interface, its SQLite implementation, and the dispatcher that
//! delivers what the store holds.

pub mod dispatcher;
pub mod retry;
pub mod sqlite;
mod types;

use async_trait::async_trait;
use jiff::Timestamp;

pub use types::*;

/// Persistent storage for events, deliveries and attempts.
///
/// Every method is one transaction. An implementation must make `commit` durable before it
/// returns `Ok`, and must let only one caller hold a delivery's lease at a time.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores an event with its planned deliveries, applies its supersessions and records
    /// dedupe keys, all at once. A repeated event returns `Duplicate` and stores nothing.
    async fn commit(&self, intake: Intake) -> Result<CommitOutcome, StoreError>;

    /// Leases due deliveries, at most `limit` per channel, oldest due first. A delivery whose
    /// lease ran out (its sender crashed) is due again.
    async fn claim(&self, request: ClaimRequest) -> Result<Vec<Claimed>, StoreError>;

    /// Records an attempt and moves the delivery to its next state. Ignored when the lease
    /// token no longer matches, because another worker has taken the delivery over.
    async fn finish(&self, report: AttemptReport) -> Result<(), StoreError>;

    /// Returns a leased delivery to pending without recording an attempt, for a sender that
    /// stops before sending.
    async fn release(&self, id: i64, lease_token: i64) -> Result<(), StoreError>;

    /// Returns the earliest time at which a pending delivery of these channels becomes due,
    /// or a lease runs out.
    async fn next_due(&self, channels: Vec<String>) -> Result<Option<Timestamp>, StoreError>;

    async fn list(&self, filter: ListFilter) -> Result<Vec<DeliverySummary>, StoreError>;

    async fn delivery(&self, id: i64) -> Result<Option<DeliveryDetail>, StoreError>;

    /// Makes a delivery due now with a fresh attempt budget: a closed one (delivered, failed,
    /// expired, superseded, cancelled) is sent again, a pending one sooner. A delivery being
    /// sent is left alone.
    async fn retry(&self, id: i64, now: Timestamp) -> Result<Change, StoreError>;

    /// Closes a pending delivery as cancelled.
    async fn cancel(&self, id: i64, now: Timestamp, reason: String) -> Result<Change, StoreError>;

    /// Deletes events (with their deliveries and attempts) received before `before` whose
    /// deliveries are all closed, and dedupe keys that have expired.
    async fn purge(&self, now: Timestamp, before: Timestamp) -> Result<PurgeReport, StoreError>;

    /// Writes a heartbeat, to show that the store accepts writes (for readiness).
    async fn probe(&self) -> Result<(), StoreError>;

    /// Deliveries per state, for metrics.
    async fn counts(&self) -> Result<Vec<(DeliveryState, u64)>, StoreError>;
}

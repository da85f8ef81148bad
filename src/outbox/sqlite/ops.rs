//! The SQL of each store operation. Every function runs inside the writer's transaction.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::message::Message;
use crate::outbox::{
    AttemptOutcome, AttemptRecord, AttemptReport, Change, ChannelClaim, ClaimRequest, Claimed,
    CommitOutcome, CommittedDelivery, DeliveryDetail, DeliveryState, DeliverySummary, Intake,
    ListFilter, NewDelivery, NewSupersession, PurgeReport,
};
use crate::rules::SupersedeMode;

const SCHEMA: &str = include_str!("schema.sql");
const SCHEMA_VERSION: i64 = 1;

pub fn millis(time: Timestamp) -> i64 {
    time.as_millisecond()
}

pub fn from_millis(value: i64) -> Result<Timestamp, rusqlite::Error> {
    Timestamp::from_millisecond(value).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Integer,
            Box::new(error),
        )
    })
}

fn optional_millis(value: Option<i64>) -> Result<Option<Timestamp>, rusqlite::Error> {
    value.map(from_millis).transpose()
}

fn conversion(error: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(error))
}

/// Creates the tables when missing and returns the database's instance id.
pub fn prepare_schema(connection: &Connection) -> Result<String, rusqlite::Error> {
    connection.execute_batch(SCHEMA)?;
    let version: Option<String> = connection
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    match version.as_deref().map(str::parse::<i64>) {
        None => {
            connection.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                params![SCHEMA_VERSION.to_string()],
            )?;
        }
        Some(Ok(SCHEMA_VERSION)) => {}
        Some(_) => {
            return Err(conversion(std::io::Error::other(format!(
                "the database has schema version {}, but this herald knows only version {SCHEMA_VERSION}; use a newer herald or another data directory",
                version.unwrap_or_default()
            ))));
        }
    }
    let instance: Option<String> = connection
        .query_row(
            "SELECT value FROM meta WHERE key = 'instance_id'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(instance) = instance {
        return Ok(instance);
    }
    let instance = format!("{:016x}", fastrand::u64(..));
    connection.execute(
        "INSERT INTO meta (key, value) VALUES ('instance_id', ?1)",
        params![instance],
    )?;
    Ok(instance)
}

fn event_key(key: &str) -> String {
    format!("event:{key}")
}

fn delivery_key(key: &str) -> String {
    format!("delivery:{key}")
}

/// An intake with its messages and notes already serialized to JSON.
pub struct PreparedIntake {
    intake: Intake,
    messages: Vec<String>,
    notes: Vec<String>,
}

impl PreparedIntake {
    pub fn new(intake: Intake) -> Result<PreparedIntake, serde_json::Error> {
        let messages = intake
            .deliveries
            .iter()
            .map(|d| serde_json::to_string(&d.message))
            .collect::<Result<_, _>>()?;
        let notes = intake
            .deliveries
            .iter()
            .map(|d| serde_json::to_string(&d.notes))
            .collect::<Result<_, _>>()?;
        Ok(PreparedIntake {
            intake,
            messages,
            notes,
        })
    }
}

pub fn commit(
    connection: &Connection,
    prepared: &PreparedIntake,
) -> Result<CommitOutcome, rusqlite::Error> {
    let intake = &prepared.intake;
    let now = millis(intake.received_at);
    let expires_at =
        now.saturating_add(intake.dedupe_window.as_millis().min(i64::MAX as u128) as i64);

    let earlier: Option<i64> = connection
        .prepare_cached("SELECT event_id FROM dedupe_keys WHERE key = ?1 AND expires_at > ?2")?
        .query_row(params![event_key(&intake.event_key), now], |row| row.get(0))
        .optional()?;
    if let Some(event_id) = earlier {
        return Ok(CommitOutcome::Duplicate { event_id });
    }

    connection
        .prepare_cached(
            "INSERT INTO events (received_at, webhook_type, external_id, status, event_ts, event_key, generation, payload, decision)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            now,
            intake.webhook_type,
            intake.external_id,
            intake.status,
            intake.event_ts.map(millis),
            intake.event_key,
            intake.generation as i64,
            intake.payload,
            intake.decision,
        ])?;
    let event_id = connection.last_insert_rowid();
    remember_key(
        connection,
        &event_key(&intake.event_key),
        event_id,
        None,
        expires_at,
    )?;

    // Events are ordered by the platform's EventTs, which survives redelivery, and by arrival
    // when there is none.
    let event_order = intake.event_ts.map(millis).unwrap_or(now);

    let mut superseded = Vec::new();
    for supersession in &intake.supersessions {
        superseded.extend(apply_supersession(
            connection,
            supersession,
            event_id,
            event_order,
            now,
        )?);
    }

    let mut committed = Vec::with_capacity(intake.deliveries.len());
    for (index, delivery) in intake.deliveries.iter().enumerate() {
        committed.push(insert_delivery(
            connection,
            delivery,
            (&prepared.messages[index], &prepared.notes[index]),
            event_id,
            event_order,
            now,
            expires_at,
        )?);
    }
    Ok(CommitOutcome::Accepted {
        event_id,
        deliveries: committed,
        superseded,
    })
}

fn remember_key(
    connection: &Connection,
    key: &str,
    event_id: i64,
    delivery_id: Option<i64>,
    expires_at: i64,
) -> Result<(), rusqlite::Error> {
    connection
        .prepare_cached(
            "INSERT OR REPLACE INTO dedupe_keys (key, event_id, delivery_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![key, event_id, delivery_id, expires_at])?;
    Ok(())
}

/// SQL that compares a delivery's session time with a supersession's, per mode. `?S` is the
/// supersession's session time.
fn session_filter(mode: SupersedeMode, column: &str, value: &str) -> String {
    match mode {
        SupersedeMode::SameSession => format!("{column} IS {value}"),
        SupersedeMode::OtherSession => format!("{column} IS NOT {value}"),
        SupersedeMode::All => "1".to_string(),
    }
}

fn apply_supersession(
    connection: &Connection,
    supersession: &NewSupersession,
    event_id: i64,
    event_order: i64,
    now: i64,
) -> Result<Vec<i64>, rusqlite::Error> {
    let session_time = supersession.session_time.map(millis);
    let reason = format!(
        "superseded by event {event_id} (rule {})",
        supersession.rule
    );
    let sql = format!(
        "UPDATE deliveries SET state = 'superseded', closed_at = ?1, reason = ?2
         WHERE supersede_key = ?3 AND state = 'pending' AND event_order < ?4 AND {}
         RETURNING id",
        session_filter(supersession.mode, "session_time", "?5")
    );
    let closed: Vec<i64> = connection
        .prepare_cached(&sql)?
        .query_map(
            params![now, reason, supersession.key, event_order, session_time],
            |row| row.get(0),
        )?
        .collect::<Result<_, _>>()?;
    let in_flight = format!(
        "UPDATE deliveries SET supersede_reason = ?1
         WHERE supersede_key = ?2 AND state = 'sending' AND event_order < ?3 AND {}",
        session_filter(supersession.mode, "session_time", "?4")
    );
    connection.prepare_cached(&in_flight)?.execute(params![
        reason,
        supersession.key,
        event_order,
        session_time
    ])?;
    connection
        .prepare_cached(
            "INSERT INTO supersessions (key, mode, session_time, event_order, event_id, rule, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            supersession.key,
            supersession.mode.as_str(),
            session_time,
            event_order,
            event_id,
            supersession.rule,
            now
        ])?;
    Ok(closed)
}

/// Finds a supersession of a newer event that closes this delivery on arrival.
fn superseded_on_arrival(
    connection: &Connection,
    key: &str,
    session_time: Option<i64>,
    event_order: i64,
) -> Result<Option<String>, rusqlite::Error> {
    let rows: Vec<(String, Option<i64>, i64, String)> = connection
        .prepare_cached(
            "SELECT mode, session_time, event_id, rule FROM supersessions
             WHERE key = ?1 AND event_order > ?2 ORDER BY event_order",
        )?
        .query_map(params![key, event_order], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    for (mode, superseding_time, event_id, rule) in rows {
        let closes = match SupersedeMode::parse(&mode) {
            Some(SupersedeMode::SameSession) => session_time == superseding_time,
            Some(SupersedeMode::OtherSession) => session_time != superseding_time,
            Some(SupersedeMode::All) => true,
            None => false,
        };
        if closes {
            return Ok(Some(format!(
                "superseded by newer event {event_id} (rule {rule}) that arrived first"
            )));
        }
    }
    Ok(None)
}

fn insert_delivery(
    connection: &Connection,
    delivery: &NewDelivery,
    (message, notes): (&str, &str),
    event_id: i64,
    event_order: i64,
    now: i64,
    expires_at: i64,
) -> Result<CommittedDelivery, rusqlite::Error> {
    let key = delivery_key(&delivery.dedupe_key);
    let earlier: Option<(i64, String)> = connection
        .prepare_cached(
            "SELECT d.id, d.state FROM dedupe_keys k JOIN deliveries d ON d.id = k.delivery_id
             WHERE k.key = ?1 AND k.expires_at > ?2",
        )?
        .query_row(params![key, now], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    if let Some((id, state)) = earlier {
        return Ok(CommittedDelivery {
            id,
            rule: delivery.rule.clone(),
            channel: delivery.channel.clone(),
            state: DeliveryState::parse(&state).unwrap_or(DeliveryState::Pending),
            reason: Some(format!("duplicate of delivery {id}")),
        });
    }

    let session_time = delivery.session_time.map(millis);
    let (state, reason) = match (&delivery.expired, &delivery.supersede_key) {
        (Some(reason), _) => (DeliveryState::Expired, Some(reason.clone())),
        (None, Some(supersede_key)) => {
            match superseded_on_arrival(connection, supersede_key, session_time, event_order)? {
                Some(reason) => (DeliveryState::Superseded, Some(reason)),
                None => (DeliveryState::Pending, None),
            }
        }
        (None, None) => (DeliveryState::Pending, None),
    };
    let closed_at = (!state.is_open()).then_some(now);
    let due = delivery.not_before.map(millis).unwrap_or(now).max(now);
    connection
        .prepare_cached(
            "INSERT INTO deliveries (event_id, rule, channel, state, message, dedupe_key, supersede_key, session_time,
                                     event_order, not_before, not_after, created_at, next_attempt_at, closed_at, reason, notes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?
        .execute(params![
            event_id,
            delivery.rule,
            delivery.channel,
            state.as_str(),
            message,
            delivery.dedupe_key,
            delivery.supersede_key,
            session_time,
            event_order,
            delivery.not_before.map(millis),
            delivery.not_after.map(millis),
            now,
            due,
            closed_at,
            reason,
            notes,
        ])?;
    let id = connection.last_insert_rowid();
    remember_key(connection, &key, event_id, Some(id), expires_at)?;
    Ok(CommittedDelivery {
        id,
        rule: delivery.rule.clone(),
        channel: delivery.channel.clone(),
        state,
        reason,
    })
}

pub fn claim(
    connection: &Connection,
    request: &ClaimRequest,
) -> Result<Vec<Claimed>, rusqlite::Error> {
    let now = millis(request.now);
    let mut claimed = Vec::new();
    for ChannelClaim {
        channel,
        limit,
        lease,
    } in &request.channels
    {
        if *limit == 0 {
            continue;
        }
        let lease_until = now.saturating_add(lease.as_millis().min(i64::MAX as u128) as i64);
        reclaim_expired_leases(connection, channel, now)?;
        let token = fastrand::i64(1..);
        let mut statement = connection.prepare_cached(
            "UPDATE deliveries SET state = 'sending', lease_until = ?1, lease_token = ?2
             WHERE id IN (SELECT id FROM deliveries
                          WHERE state = 'pending' AND channel = ?3 AND next_attempt_at <= ?4
                          ORDER BY next_attempt_at, id LIMIT ?5)
             RETURNING id, event_id, channel, message, attempts, budget_start, created_at, not_after",
        )?;
        let rows = statement.query_map(
            params![lease_until, token, channel, now, *limit as i64],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, Option<i64>>(7)?,
                ))
            },
        )?;
        for row in rows {
            let (id, event_id, channel, message, attempts, budget_start, created_at, not_after) =
                row?;
            let message: Message = serde_json::from_str(&message).map_err(conversion)?;
            claimed.push(Claimed {
                id,
                event_id,
                channel,
                message,
                attempt: attempts as u32 + 1,
                budget_attempt: (attempts - budget_start).max(0) as u32 + 1,
                created_at: from_millis(created_at)?,
                not_after: optional_millis(not_after)?,
                lease_token: token,
            });
        }
    }
    claimed.sort_by_key(|c| c.id);
    Ok(claimed)
}

/// Returns deliveries whose sender stopped without reporting (a crash, a kill) to pending,
/// recording an attempt of unknown outcome, because the message may or may not have gone out.
fn reclaim_expired_leases(
    connection: &Connection,
    channel: &str,
    now: i64,
) -> Result<(), rusqlite::Error> {
    let stale: Vec<(i64, i64, i64)> = connection
        .prepare_cached(
            "SELECT id, attempts, lease_until FROM deliveries
             WHERE state = 'sending' AND channel = ?1 AND lease_until <= ?2",
        )?
        .query_map(params![channel, now], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    for (id, attempts, lease_until) in stale {
        connection
            .prepare_cached(
                "INSERT INTO attempts (delivery_id, number, started_at, finished_at, outcome, error)
                 VALUES (?1, ?2, ?3, ?4, 'interrupted', ?5)",
            )?
            .execute(params![
                id,
                attempts + 1,
                lease_until,
                now,
                "the lease ran out before the sender reported (herald stopped or crashed); the message may have been sent"
            ])?;
        connection
            .prepare_cached(
                "UPDATE deliveries SET attempts = attempts + 1, lease_until = NULL, lease_token = NULL, next_attempt_at = ?2,
                                       state = CASE WHEN supersede_reason IS NULL THEN 'pending' ELSE 'superseded' END,
                                       closed_at = CASE WHEN supersede_reason IS NULL THEN NULL ELSE ?2 END,
                                       reason = COALESCE(supersede_reason, reason)
                 WHERE id = ?1",
            )?
            .execute(params![id, now])?;
    }
    Ok(())
}

pub fn finish(connection: &Connection, report: &AttemptReport) -> Result<(), rusqlite::Error> {
    let finished = millis(report.finished_at);
    let (state, next_attempt_at, closed_at, reason, attempt_outcome, error, provider_id) =
        match &report.outcome {
            AttemptOutcome::Delivered { provider_id } => (
                DeliveryState::Delivered,
                finished,
                Some(finished),
                None,
                "delivered",
                None,
                provider_id.clone(),
            ),
            AttemptOutcome::Retry { error, retry_at } => (
                DeliveryState::Pending,
                millis(*retry_at),
                None,
                Some(error.clone()),
                "transient",
                Some(error.clone()),
                None,
            ),
            AttemptOutcome::Failed { error } => (
                DeliveryState::Failed,
                finished,
                Some(finished),
                Some(error.clone()),
                "permanent",
                Some(error.clone()),
                None,
            ),
            AttemptOutcome::Expired { reason } => (
                DeliveryState::Expired,
                finished,
                Some(finished),
                Some(reason.clone()),
                "expired",
                Some(reason.clone()),
                None,
            ),
        };
    let sent = i64::from(report.sent);
    // A delivery superseded while this attempt ran is closed instead of retried.
    let changed = connection
        .prepare_cached(
            "UPDATE deliveries SET
                 state = CASE WHEN ?1 = 'pending' AND supersede_reason IS NOT NULL THEN 'superseded' ELSE ?1 END,
                 closed_at = CASE WHEN ?1 = 'pending' AND supersede_reason IS NOT NULL THEN ?8 ELSE ?3 END,
                 reason = CASE WHEN ?1 = 'pending' AND supersede_reason IS NOT NULL THEN supersede_reason ELSE ?4 END,
                 next_attempt_at = ?2, attempts = attempts + ?5, lease_until = NULL, lease_token = NULL
             WHERE id = ?6 AND lease_token = ?7 AND state = 'sending'
             RETURNING attempts",
        )?
        .query_row(
            params![
                state.as_str(),
                next_attempt_at,
                closed_at,
                reason,
                sent,
                report.id,
                report.lease_token,
                finished
            ],
            |row| row.get::<_, i64>(0),
        )
        .optional()?;
    let Some(attempts) = changed else {
        return Ok(());
    };
    if report.sent {
        connection
            .prepare_cached(
                "INSERT INTO attempts (delivery_id, number, started_at, finished_at, outcome, error, provider_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                report.id,
                attempts,
                millis(report.started_at),
                finished,
                attempt_outcome,
                error,
                provider_id
            ])?;
    }
    Ok(())
}

pub fn release(connection: &Connection, id: i64, lease_token: i64) -> Result<(), rusqlite::Error> {
    connection
        .prepare_cached(
            "UPDATE deliveries SET state = 'pending', lease_until = NULL, lease_token = NULL
             WHERE id = ?1 AND lease_token = ?2 AND state = 'sending'",
        )?
        .execute(params![id, lease_token])?;
    Ok(())
}

/// Returns the earliest due time or lease expiry among these channels. Each channel's minimum is one
/// index lookup on `(channel, next_attempt_at)`, where one query over every channel would
/// scan the whole backlog.
pub fn next_due(
    connection: &Connection,
    channels: &[String],
) -> Result<Option<Timestamp>, rusqlite::Error> {
    let mut earliest: Option<i64> = None;
    for channel in channels {
        for sql in [
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE state = 'pending' AND channel = ?1",
            "SELECT MIN(lease_until) FROM deliveries WHERE state = 'sending' AND channel = ?1",
        ] {
            let due: Option<i64> = connection
                .prepare_cached(sql)?
                .query_row(params![channel], |row| row.get(0))?;
            earliest = match (earliest, due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    optional_millis(earliest)
}

const SUMMARY_COLUMNS: &str = "d.id, d.event_id, d.rule, d.channel, d.state, d.attempts, d.created_at, d.next_attempt_at, d.reason";

fn summary(row: &Row<'_>) -> Result<DeliverySummary, rusqlite::Error> {
    let state: String = row.get(4)?;
    let state = DeliveryState::parse(&state).ok_or_else(|| {
        conversion(std::io::Error::other(format!(
            "unknown delivery state {state:?}"
        )))
    })?;
    let next: i64 = row.get(7)?;
    Ok(DeliverySummary {
        id: row.get(0)?,
        event_id: row.get(1)?,
        rule: row.get(2)?,
        channel: row.get(3)?,
        state,
        attempts: row.get::<_, i64>(5)? as u32,
        created_at: from_millis(row.get(6)?)?,
        next_attempt_at: if state.is_open() {
            Some(from_millis(next)?)
        } else {
            None
        },
        reason: row.get(8)?,
    })
}

pub fn list(
    connection: &Connection,
    filter: &ListFilter,
) -> Result<Vec<DeliverySummary>, rusqlite::Error> {
    let mut sql = format!("SELECT {SUMMARY_COLUMNS} FROM deliveries d WHERE 1");
    let mut values: Vec<rusqlite::types::Value> = Vec::new();
    if !filter.states.is_empty() {
        let placeholders: Vec<String> = filter
            .states
            .iter()
            .map(|state| {
                values.push(state.as_str().to_string().into());
                format!("?{}", values.len())
            })
            .collect();
        sql.push_str(&format!(" AND d.state IN ({})", placeholders.join(", ")));
    }
    if let Some(since) = filter.since {
        values.push(millis(since).into());
        sql.push_str(&format!(" AND d.created_at >= ?{}", values.len()));
    }
    if let Some(channel) = &filter.channel {
        values.push(channel.clone().into());
        sql.push_str(&format!(" AND d.channel = ?{}", values.len()));
    }
    values.push((filter.limit.max(1) as i64).into());
    sql.push_str(&format!(" ORDER BY d.id DESC LIMIT ?{}", values.len()));
    let mut statement = connection.prepare(&sql)?;
    let rows = statement.query_map(rusqlite::params_from_iter(values), summary)?;
    rows.collect()
}

pub fn delivery(
    connection: &Connection,
    id: i64,
) -> Result<Option<DeliveryDetail>, rusqlite::Error> {
    let row = connection
        .query_row(
            &format!(
                "SELECT {SUMMARY_COLUMNS}, e.webhook_type, e.status, d.dedupe_key, d.supersede_key, d.not_before, d.not_after,
                        d.closed_at, d.notes, d.message
                 FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.id = ?1"
            ),
            params![id],
            |row| {
                Ok((
                    summary(row)?,
                    row.get::<_, String>(9)?,
                    row.get::<_, String>(10)?,
                    row.get::<_, String>(11)?,
                    row.get::<_, Option<String>>(12)?,
                    row.get::<_, Option<i64>>(13)?,
                    row.get::<_, Option<i64>>(14)?,
                    row.get::<_, Option<i64>>(15)?,
                    row.get::<_, String>(16)?,
                    row.get::<_, String>(17)?,
                ))
            },
        )
        .optional()?;
    let Some((
        summary,
        webhook_type,
        event_status,
        dedupe_key,
        supersede_key,
        not_before,
        not_after,
        closed_at,
        notes,
        message,
    )) = row
    else {
        return Ok(None);
    };
    let attempts = connection
        .prepare_cached(
            "SELECT number, started_at, finished_at, outcome, error, provider_id FROM attempts
             WHERE delivery_id = ?1 ORDER BY id",
        )?
        .query_map(params![id], |row| {
            Ok(AttemptRecord {
                number: row.get::<_, i64>(0)? as u32,
                started_at: from_millis(row.get(1)?)?,
                finished_at: from_millis(row.get(2)?)?,
                outcome: row.get(3)?,
                error: row.get(4)?,
                provider_id: row.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(DeliveryDetail {
        summary,
        webhook_type,
        event_status,
        dedupe_key,
        supersede_key,
        not_before: optional_millis(not_before)?,
        not_after: optional_millis(not_after)?,
        closed_at: optional_millis(closed_at)?,
        notes: serde_json::from_str(&notes).map_err(conversion)?,
        message: serde_json::from_str(&message).map_err(conversion)?,
        attempts,
    }))
}

fn current_state(
    connection: &Connection,
    id: i64,
) -> Result<Option<DeliveryState>, rusqlite::Error> {
    let state: Option<String> = connection
        .prepare_cached("SELECT state FROM deliveries WHERE id = ?1")?
        .query_row(params![id], |row| row.get(0))
        .optional()?;
    Ok(state.and_then(|s| DeliveryState::parse(&s)))
}

pub fn retry(connection: &Connection, id: i64, now: Timestamp) -> Result<Change, rusqlite::Error> {
    let Some(state) = current_state(connection, id)? else {
        return Ok(Change::NotFound);
    };
    if state == DeliveryState::Sending {
        return Ok(Change::NotAllowed(state));
    }
    // The attempt budget restarts: attempts made so far stay in the history and keep their
    // numbers, the retry policy counts only attempts after budget_start, and the age limit
    // counts from now.
    connection
        .prepare_cached(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = ?2, closed_at = NULL, supersede_reason = NULL,
                                   reason = 'retried by an operator', budget_start = attempts, created_at = ?2
             WHERE id = ?1",
        )?
        .execute(params![id, millis(now)])?;
    Ok(Change::Done)
}

pub fn cancel(
    connection: &Connection,
    id: i64,
    now: Timestamp,
    reason: &str,
) -> Result<Change, rusqlite::Error> {
    let Some(state) = current_state(connection, id)? else {
        return Ok(Change::NotFound);
    };
    if state != DeliveryState::Pending {
        return Ok(Change::NotAllowed(state));
    }
    connection
        .prepare_cached(
            "UPDATE deliveries SET state = 'cancelled', closed_at = ?2, reason = ?3 WHERE id = ?1",
        )?
        .execute(params![id, millis(now), reason])?;
    Ok(Change::Done)
}

pub fn purge(
    connection: &Connection,
    now: Timestamp,
    before: Timestamp,
) -> Result<PurgeReport, rusqlite::Error> {
    let cutoff = millis(before);
    let deliveries = connection
        .prepare_cached(
            "SELECT COUNT(*) FROM deliveries WHERE event_id IN (
                 SELECT e.id FROM events e WHERE e.received_at < ?1
                 AND NOT EXISTS (SELECT 1 FROM deliveries o WHERE o.event_id = e.id AND o.state IN ('pending', 'sending')))",
        )?
        .query_row(params![cutoff], |row| row.get::<_, i64>(0))?;
    let events = connection
        .prepare_cached(
            "DELETE FROM events WHERE received_at < ?1
             AND NOT EXISTS (SELECT 1 FROM deliveries o WHERE o.event_id = events.id AND o.state IN ('pending', 'sending'))",
        )?
        .execute(params![cutoff])?;
    connection
        .prepare_cached("DELETE FROM supersessions WHERE created_at < ?1")?
        .execute(params![cutoff])?;
    let dedupe_keys = connection
        .prepare_cached("DELETE FROM dedupe_keys WHERE expires_at <= ?1")?
        .execute(params![millis(now)])?;
    Ok(PurgeReport {
        events: events as u64,
        deliveries: deliveries as u64,
        dedupe_keys: dedupe_keys as u64,
    })
}

pub fn probe(connection: &Connection) -> Result<(), rusqlite::Error> {
    connection
        .prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES ('heartbeat', ?1)")?
        .execute(params![Timestamp::now().to_string()])?;
    Ok(())
}

pub fn counts(connection: &Connection) -> Result<Vec<(DeliveryState, u64)>, rusqlite::Error> {
    let mut statement =
        connection.prepare_cached("SELECT state, COUNT(*) FROM deliveries GROUP BY state")?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
    })?;
    let mut counts: Vec<(DeliveryState, u64)> =
        DeliveryState::ALL.iter().map(|s| (*s, 0)).collect();
    for row in rows {
        let (state, count) = row?;
        if let Some(entry) =
            DeliveryState::parse(&state).and_then(|s| counts.iter_mut().find(|(k, _)| *k == s))
        {
            entry.1 = count as u64;
        }
    }
    Ok(counts)
}

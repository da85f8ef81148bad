-- herald outbox, schema version 1. Times are Unix milliseconds (UTC).

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS events (
    id           INTEGER PRIMARY KEY,
    received_at  INTEGER NOT NULL,
    webhook_type TEXT    NOT NULL,
    external_id  INTEGER NOT NULL,
    status       TEXT    NOT NULL,
    event_ts     INTEGER,
    event_key    TEXT    NOT NULL,
    generation   INTEGER NOT NULL,
    payload      TEXT    NOT NULL,
    decision     TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS events_received ON events (received_at);

CREATE TABLE IF NOT EXISTS deliveries (
    id              INTEGER PRIMARY KEY,
    event_id        INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    rule            TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    message         TEXT    NOT NULL,
    dedupe_key      TEXT    NOT NULL,
    supersede_key   TEXT,
    session_time    INTEGER,
    event_order     INTEGER NOT NULL,
    not_before      INTEGER,
    not_after       INTEGER,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- Attempts made before the current retry budget began; an operator's retry sets it to
    -- attempts, so the history keeps counting while the retry policy starts over.
    budget_start    INTEGER NOT NULL DEFAULT 0,
    lease_until     INTEGER,
    lease_token     INTEGER,
    closed_at       INTEGER,
    reason          TEXT,
    -- Set when a supersession arrives while the delivery is being sent: the send in flight
    -- cannot be recalled, but if it fails the delivery is closed instead of retried.
    supersede_reason TEXT,
    notes           TEXT    NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (channel, next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_leased ON deliveries (channel, lease_until) WHERE state = 'sending';
CREATE INDEX IF NOT EXISTS deliveries_supersede ON deliveries (supersede_key) WHERE state IN ('pending', 'sending');
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries (event_id);

CREATE TABLE IF NOT EXISTS attempts (
    id          INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    error       TEXT,
    provider_id TEXT
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery_id);

-- A supersession closes pending deliveries with its key, and also deliveries of older
-- events that arrive later; the row stays until retention purges it.
CREATE TABLE IF NOT EXISTS supersessions (
    id           INTEGER PRIMARY KEY,
    key          TEXT    NOT NULL,
    mode         TEXT    NOT NULL,
    session_time INTEGER,
    event_order  INTEGER NOT NULL,
    event_id     INTEGER NOT NULL,
    rule         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS supersessions_key ON supersessions (key);

-- Dedupe keys outlive the events they name, so that a retention shorter than the dedupe
-- window does not let a repeated webhook through.
CREATE TABLE IF NOT EXISTS dedupe_keys (
    key         TEXT PRIMARY KEY,
    event_id    INTEGER NOT NULL,
    delivery_id INTEGER,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedupe_keys_expiry ON dedupe_keys (expires_at);

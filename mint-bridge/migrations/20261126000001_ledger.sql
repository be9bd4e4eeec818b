-- The pool's share ledger: epochs, credited shares, and the nostr announcement outbox.
-- Portable SQL: runs unchanged on SQLite and PostgreSQL (through sqlx's Any driver).

CREATE TABLE ehash_epochs (
    epoch BIGINT PRIMARY KEY,
    unit TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    close_reason TEXT,
    block_hash TEXT,
    issued BIGINT,
    shares BIGINT
);

CREATE TABLE ehash_shares (
    share_id TEXT PRIMARY KEY,
    epoch BIGINT NOT NULL REFERENCES ehash_epochs (epoch),
    quote_id TEXT NOT NULL,
    worker TEXT,
    header TEXT NOT NULL,
    difficulty_exp BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    is_block BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    credited BOOLEAN NOT NULL
);

CREATE INDEX ehash_shares_epoch ON ehash_shares (epoch);
CREATE INDEX ehash_shares_quote ON ehash_shares (quote_id);
CREATE INDEX ehash_shares_uncredited ON ehash_shares (credited) WHERE credited = FALSE;

CREATE TABLE ehash_announcements (
    address TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    event_json TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE ehash_deliveries (
    address TEXT NOT NULL,
    relay TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (address, relay)
);

-- Crediting at pool scale (protocol §4, "Money path"): each quote's running credit, so that
-- recording a share never reads the quote's earlier shares, and the mint is paid the difference
-- in aggregated payments. `synced` is the credit at the last payment to the mint (a hint for the
-- periodic sync: the mint's own amount paid is what counts).
CREATE TABLE ehash_quote_credits (
    quote_id TEXT PRIMARY KEY,
    epoch BIGINT NOT NULL REFERENCES ehash_epochs (epoch),
    credited BIGINT NOT NULL,
    shares BIGINT NOT NULL,
    synced BIGINT NOT NULL
);
INSERT INTO ehash_quote_credits (quote_id, epoch, credited, shares, synced)
    SELECT quote_id, MIN(epoch), SUM(amount), COUNT(*), 0 FROM ehash_shares GROUP BY quote_id;
CREATE INDEX ehash_quote_credits_epoch ON ehash_quote_credits (epoch);

-- Shares are no longer paid to the mint one by one.
DROP INDEX ehash_shares_uncredited;
ALTER TABLE ehash_shares DROP COLUMN credited;
DROP INDEX ehash_shares_quote;
-- The share log is read by epoch in share id order.
DROP INDEX ehash_shares_epoch;
CREATE INDEX ehash_shares_epoch ON ehash_shares (epoch, share_id);

-- A closed epoch's committed log (protocol §12): each share's position, and the tree's nodes at
-- the block level, so an inclusion proof reads one block of shares instead of the whole epoch.
ALTER TABLE ehash_shares ADD COLUMN log_index BIGINT;
CREATE INDEX ehash_shares_log_index ON ehash_shares (epoch, log_index);
CREATE TABLE ehash_log_nodes (
    epoch BIGINT PRIMARY KEY REFERENCES ehash_epochs (epoch),
    block_level BIGINT NOT NULL,
    count BIGINT NOT NULL,
    nodes TEXT NOT NULL
);

-- Blocks found by shares (protocol §4, "Found blocks"): the durable record of each, written with
-- its share before the share is acknowledged, then the node's answer.
CREATE TABLE ehash_blocks (
    share_id TEXT PRIMARY KEY,
    epoch BIGINT NOT NULL REFERENCES ehash_epochs (epoch),
    height BIGINT NOT NULL,
    hash TEXT NOT NULL,
    reward BIGINT NOT NULL,
    header TEXT NOT NULL,
    coinbase TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT,
    created_at BIGINT NOT NULL
);

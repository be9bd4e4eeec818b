-- The payout lifecycle of an epoch closed on a found block (protocol §2): the block's height and
-- reward, the payout after the pool's fee, and when it became redeemable and when it expires.
ALTER TABLE ehash_epochs ADD COLUMN block_height BIGINT;
ALTER TABLE ehash_epochs ADD COLUMN reward BIGINT;
ALTER TABLE ehash_epochs ADD COLUMN payout BIGINT;
ALTER TABLE ehash_epochs ADD COLUMN redeemable_at BIGINT;
ALTER TABLE ehash_epochs ADD COLUMN expires_at BIGINT;

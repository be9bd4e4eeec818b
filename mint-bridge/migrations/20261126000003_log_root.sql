-- The commitment to each closed epoch's share log (protocol §12): the root of the Merkle sum
-- tree over its shares, fixed when the epoch closes and announced from then on.
ALTER TABLE ehash_epochs ADD COLUMN log_root TEXT;

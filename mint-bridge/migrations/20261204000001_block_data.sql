-- The whole found block (header, coinbase with witness, the template's transactions), hex, so a
-- block whose answer was lost can be sent to the node again after a restart.
ALTER TABLE ehash_blocks ADD COLUMN block TEXT;

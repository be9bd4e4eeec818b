-- Recording a share writes one randomly placed index entry (its id), not two: an epoch's log is
-- read in id order from the primary key while it is open, and by position once committed.
DROP INDEX ehash_shares_epoch;

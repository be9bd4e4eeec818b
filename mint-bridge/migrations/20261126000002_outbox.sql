-- The announcement outbox moved to the shared ehash-outbox crate (tables ehash_outbox and
-- ehash_outbox_deliveries, created by it); announcements are re-queued at start.
DROP TABLE ehash_deliveries;
DROP TABLE ehash_announcements;

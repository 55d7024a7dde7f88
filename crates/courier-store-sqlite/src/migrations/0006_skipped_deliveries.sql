-- Deliveries skipped while their webhook was disabled. Cleanup deletes the ones
-- that no execution makes (skipped when their event arrived) by age; this keeps
-- it from reading every delivery to find them.
CREATE INDEX webhook_deliveries_skipped ON webhook_deliveries (created_at) WHERE state = 'skipped';

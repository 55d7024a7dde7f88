-- Webhook secret rotation: the secret a rotation replaced, and until when
-- deliveries are still signed with it beside the new one. Both secrets are
-- opaque text to the store (sealed by courier-webhooks).
ALTER TABLE webhooks ADD COLUMN previous_secret TEXT;
-- INTEGER microseconds, like every time in this store.
ALTER TABLE webhooks ADD COLUMN previous_secret_until INTEGER;

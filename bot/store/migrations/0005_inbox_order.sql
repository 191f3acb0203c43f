-- Deliveries about the same subject (an Alertmanager group, a PagerDuty incident) are applied
-- in the order they arrived, even with several workers and replicas: a worker only claims a
-- delivery when no older one with the same key is still unprocessed. The key is a hash, so an
-- Alertmanager groupKey of any length fits the index.
ALTER TABLE webhook_inbox ADD COLUMN order_key text;
CREATE INDEX webhook_inbox_pending_order ON webhook_inbox (order_key, id)
    WHERE processed_at IS NULL AND order_key IS NOT NULL;

-- PagerDuty does not promise to deliver webhooks in order: the time of the newest state change
-- applied from PagerDuty, so an older one arriving late is not applied over it.
ALTER TABLE incidents ADD COLUMN pagerduty_event_at timestamptz;

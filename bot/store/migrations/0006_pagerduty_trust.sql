-- PagerDuty deliveries are deduplicated on the signed event.id, never on the unsigned
-- X-Webhook-Id header: from now on a PagerDuty row's delivery_id is its event.id (the unique
-- index webhook_inbox_delivery makes it stored once). Rows stored before were keyed on the
-- header; re-key the first delivery of each event, so a replay of an old event with a new
-- header is a duplicate too.
UPDATE webhook_inbox AS w SET delivery_id = earliest.event_id
FROM (
    SELECT DISTINCT ON (body -> 'event' ->> 'id') id, body -> 'event' ->> 'id' AS event_id
    FROM webhook_inbox
    WHERE source = 'pagerduty' AND body -> 'event' ->> 'id' IS NOT NULL
    ORDER BY body -> 'event' ->> 'id', id
) AS earliest
WHERE w.id = earliest.id;

ALTER TABLE incidents
    -- Ties of occurred_at between two PagerDuty state changes are broken by event id: the
    -- clock only moves forward, so the same event is never applied twice.
    ADD COLUMN pagerduty_event_id         text,
    -- Who acknowledged or resolved in PagerDuty (a display name): external text, kept apart
    -- from acknowledged_by / resolved_by, which hold Slack user ids only.
    ADD COLUMN acknowledged_by_external   text,
    ADD COLUMN resolved_by_external       text;

-- Messages the bot owns in Slack, by a stable key (card:<incident>, notification:<incident>,
-- event:<timeline event>, run:<remediation run>). A row is written before the first post: when
-- an attempt ends ambiguously (Slack may have applied it), the next attempt looks for the
-- message in the channel's history since first_attempt_at and adopts it instead of posting twice.
CREATE TABLE bot_messages (
    key text PRIMARY KEY,
    channel_id text NOT NULL,
    first_attempt_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 1,
    ts text
);

-- Opaque tokens for buttons on messages the bot cannot find again (a slash command's ephemeral
-- reply): the button carries only the token; the click is checked against this row (kind,
-- user, expiry, used once), never against an incident id chosen by the client.
CREATE TABLE button_tokens (
    token       text PRIMARY KEY,
    kind        text        NOT NULL,
    incident_id bigint      NOT NULL REFERENCES incidents (id),
    user_id     text        NOT NULL,
    data        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);

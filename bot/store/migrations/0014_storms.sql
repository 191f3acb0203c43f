-- Storm mode: a team's incidents opening faster than its storm policy allows are announced in
-- one digest message per storm instead of one notification each (bot.flows.storms).
CREATE TABLE storms (
    id                bigserial   PRIMARY KEY,
    team              text        NOT NULL,
    started_at        timestamptz NOT NULL,
    -- The newest member's opening: the storm ends once a whole window passes without one.
    last_opened_at    timestamptz NOT NULL,
    window_seconds    integer     NOT NULL,
    ended_at          timestamptz,
    digest_channel_id text,
    digest_ts         text,
    end_ts            text,
    version           bigint      NOT NULL DEFAULT 1,
    published_version bigint      NOT NULL DEFAULT 0,
    published_at      timestamptz
);
-- At most one running storm per team, whichever replica notices it first.
CREATE UNIQUE INDEX storms_one_running_per_team ON storms (team) WHERE ended_at IS NULL;
CREATE INDEX storms_unpublished ON storms (id) WHERE version > published_version;

-- storm_role, decided once per incident (NULL: not yet): 'own' has its own notification (in a
-- storm only when it opened before the storm started), 'digest' is announced in the digest
-- only, 'waiting' is in the digest and has no channel until someone opens it or the storm ends.
ALTER TABLE incidents ADD COLUMN storm_id bigint REFERENCES storms (id);
ALTER TABLE incidents ADD COLUMN storm_role text;
ALTER TABLE incidents ADD CONSTRAINT incidents_storm_role CHECK (storm_role IN ('own', 'digest', 'waiting'));
CREATE INDEX incidents_by_storm ON incidents (storm_id) WHERE storm_id IS NOT NULL;
CREATE INDEX incidents_team_created ON incidents (team, created_at);

-- The service catalog's routing: the team and service an incident belongs to (from its alerts'
-- labels at open, a declaration's argument or channel, or `/incident team`). NULL: the
-- catalog's default team (incidents opened before the catalog, or by PagerDuty).
ALTER TABLE incidents ADD COLUMN team text;
ALTER TABLE incidents ADD COLUMN service text;
CREATE INDEX incidents_open_by_team ON incidents (team) WHERE open_marker;

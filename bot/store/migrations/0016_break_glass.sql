-- Break-glass: a run whose requester bypassed the cooldown keeps the reason they gave (NULL for
-- an ordinary run). The executor re-checks it against the policy as it is then.
ALTER TABLE action_runs ADD COLUMN break_glass text
    CHECK (break_glass IS NULL OR length(break_glass) BETWEEN 1 AND 300);

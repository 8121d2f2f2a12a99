-- CPTS statistics: uploads (who, when, which preset), every version of every record
-- (current = superseded_by IS NULL), and the search tallies counted by sasnp itself.
-- Days are TEXT 'YYYY-MM-DD' (sorts as dates); instants BIGINT epoch seconds (UTC).
CREATE TABLE stats_uploads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    account_name TEXT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    preset TEXT NOT NULL,
    content_type TEXT NOT NULL CHECK (content_type IN ('csv', 'json')),
    record_count BIGINT NOT NULL,
    new_count BIGINT NOT NULL,
    replaced_count BIGINT NOT NULL,
    cpts_ids TEXT NOT NULL,
    warnings TEXT NOT NULL
);

-- One row per version of a record; the key is cpts_id × period × profession, '' = all
-- professions (NULL would escape the unique index on both backends).
CREATE TABLE stats_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    upload_id BIGINT NOT NULL REFERENCES stats_uploads (id),
    cpts_id TEXT NOT NULL,
    period_start TEXT NOT NULL,
    period_end TEXT NOT NULL,
    profession TEXT NOT NULL,
    version BIGINT NOT NULL,
    superseded_by BIGINT REFERENCES stats_uploads (id),
    requests_received BIGINT,
    requests_handled BIGINT,
    requests_from_regulation BIGINT,
    consultations_done BIGINT,
    redirected_emergency BIGINT,
    redirected_other BIGINT,
    no_shows BIGINT,
    slots_offered BIGINT,
    slots_used BIGINT,
    participating_professionals BIGINT,
    median_delay_hours DOUBLE PRECISION,
    UNIQUE (cpts_id, period_start, period_end, profession, version)
);
-- At most one current version per key.
CREATE UNIQUE INDEX stats_records_current ON stats_records (cpts_id, period_start, period_end, profession)
    WHERE superseded_by IS NULL;
CREATE INDEX stats_records_upload ON stats_records (upload_id);
CREATE INDEX stats_records_period ON stats_records (period_start, period_end);

-- Searches counted in memory and flushed as deltas (several nodes add up).
-- cpts_key is the CPTS id of the searched point, or 'none' outside every territory.
CREATE TABLE stats_search_tally (
    cpts_key TEXT NOT NULL,
    department TEXT NOT NULL,
    day TEXT NOT NULL,
    searches BIGINT NOT NULL,
    no_result_base BIGINT NOT NULL,
    no_result_final BIGINT NOT NULL,
    PRIMARY KEY (cpts_key, department, day)
);

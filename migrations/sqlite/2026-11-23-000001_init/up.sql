-- Instants are BIGINT seconds since the Unix epoch (UTC) on both backends.
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'analyst', 'cpts')),
    cpts_id TEXT,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT
);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_tokens_account ON api_tokens (account_id);

CREATE TABLE sources (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cpts_id TEXT NOT NULL,
    name TEXT NOT NULL,
    format TEXT NOT NULL CHECK (format IN ('sas-fhir', 'smart-sl', 'csv')),
    url TEXT,
    poll_interval_s BIGINT,
    created_by BIGINT REFERENCES accounts (id),
    created_at BIGINT NOT NULL,
    last_attempt_at BIGINT,
    last_success_at BIGINT,
    last_error TEXT,
    last_report TEXT,
    etag TEXT,
    last_modified TEXT,
    snapshot_seq BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE places (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id BIGINT NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    place_key TEXT NOT NULL,
    name TEXT,
    address TEXT,
    postcode TEXT,
    city TEXT,
    insee TEXT,
    lat DOUBLE PRECISION NOT NULL,
    lon DOUBLE PRECISION NOT NULL,
    precision TEXT NOT NULL,
    snapshot_seq BIGINT NOT NULL,
    UNIQUE (source_id, place_key)
);

CREATE TABLE slots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id BIGINT NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    external_id TEXT NOT NULL,
    place_id BIGINT NOT NULL REFERENCES places (id),
    cpts_id TEXT NOT NULL,
    start_at BIGINT NOT NULL,
    end_at BIGINT NOT NULL,
    feed_status TEXT NOT NULL,
    practitioner_id TEXT,
    practitioner_name TEXT,
    profession TEXT,
    specialty TEXT,
    structure_kind TEXT,
    structure_id TEXT,
    structure_name TEXT,
    modality TEXT NOT NULL,
    appointment_type TEXT,
    audience INTEGER NOT NULL,
    surnumeraire BOOLEAN NOT NULL,
    booking_url TEXT,
    booking_phone TEXT,
    capacity INTEGER NOT NULL,
    snapshot_seq BIGINT NOT NULL,
    -- operator state, never written by a feed refresh
    hold_id TEXT,
    held_until BIGINT,
    appointment_id BIGINT,
    removed_from_feed_at BIGINT,
    UNIQUE (source_id, external_id)
);
CREATE INDEX slots_start ON slots (start_at);

CREATE TABLE holds (
    id TEXT PRIMARY KEY,
    -- a slot that leaves its feed takes its finished holds with it (the audit trail keeps them)
    slot_id BIGINT NOT NULL REFERENCES slots (id) ON DELETE CASCADE,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'released', 'expired', 'confirmed')),
    ended_at BIGINT
);
CREATE INDEX holds_slot ON holds (slot_id);

CREATE TABLE appointments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slot_id BIGINT REFERENCES slots (id) ON DELETE SET NULL,
    hold_id TEXT NOT NULL UNIQUE,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    cpts_id TEXT NOT NULL,
    orientation_category TEXT NOT NULL,
    patient_ref TEXT,
    status TEXT NOT NULL CHECK (status IN ('booked', 'fulfilled', 'noshow', 'cancelled')),
    start_at BIGINT NOT NULL,
    end_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX appointments_cpts_start ON appointments (cpts_id, start_at);

CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    account_id BIGINT REFERENCES accounts (id),
    action TEXT NOT NULL,
    slot_id BIGINT,
    hold_id TEXT,
    appointment_id BIGINT,
    detail TEXT
);

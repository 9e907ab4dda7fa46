-- Vigil clinic record, schema version 1: every chair's sessions, staff accounts and clinic settings.
--
-- Applied by monitor.store.postgres.schema.migrate() as role vigil_owner, in one transaction, after
-- the group roles vigil_owner, vigil_replication and vigil_review exist (see docs/clinic-record.md).
-- Never edit this file once released: add 0002_….sql instead (the applied file's SHA-256 is kept in
-- vigil.schema_migrations and checked at every start).
--
-- Keys: a chair is chairs.id (its uid is the UUID kept in the chair's own database); every row a
-- chair sent is keyed by (chair_id, the chair's own id for it), so re-sending is harmless and the
-- highest key per chair is the replication watermark. Sessions also get a clinic-wide id.
--
-- Append-only: no UPDATE, DELETE or TRUNCATE on recorded rows, for any role (triggers), and the
-- replication role is only granted INSERT on them. What changes in a session or an alarm is a new
-- version row (session_states, alarm_states). The only rows that change are:
--   chairs.name (a label), session_progress (counters that only grow), waveform_tails (the unfinished
--   waveform block of an open session, replaced until the block is finished; removed when the
--   session is sealed).
-- A session is sealed (session_seals) once the clinic record holds all of it; a sealed session
-- takes no more data, only late entries and amendments, as at the chair.

CREATE TABLE vigil.chairs (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uid uuid NOT NULL UNIQUE,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    registered_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE vigil.sources (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE
);

CREATE TABLE vigil.sessions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chair_id integer NOT NULL REFERENCES vigil.chairs (id),
    chair_session_id bigint NOT NULL,
    created_at double precision NOT NULL,
    started_at double precision NOT NULL,
    protocol text NOT NULL,
    patient_name text NOT NULL,
    patient_ref text,
    patient_json text NOT NULL,
    device text NOT NULL,
    created_by text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (chair_id, chair_session_id)
);
CREATE INDEX sessions_started ON vigil.sessions (started_at);

CREATE TABLE vigil.session_states (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id bigint NOT NULL REFERENCES vigil.sessions (id),
    status text NOT NULL CHECK (status IN ('open', 'closed', 'aborted')),
    phase text NOT NULL,
    ended_at double precision,
    plan_json text NOT NULL,
    baseline_json text,
    closed_by text,
    close_meaning text,
    signed_name text,
    received_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'open') = (ended_at IS NULL))
);
CREATE INDEX session_states_latest ON vigil.session_states (session_id, id DESC);

CREATE TABLE vigil.session_progress (
    session_id bigint PRIMARY KEY REFERENCES vigil.sessions (id),
    last_seen double precision,
    n_observations bigint NOT NULL CHECK (n_observations >= 0),
    n_alarms integer NOT NULL CHECK (n_alarms >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE vigil.session_seals (
    session_id bigint PRIMARY KEY REFERENCES vigil.sessions (id),
    counts jsonb NOT NULL,
    sealed_at timestamptz NOT NULL DEFAULT now()
);

-- Observations and waveform blocks come by the hundred thousand: their chair, session and source are
-- checked once per statement (vigil.bulk_insert_check) rather than by three foreign-key triggers per
-- row; recorded rows are never deleted, so what was valid when inserted stays valid.
CREATE TABLE vigil.observations (
    chair_id integer NOT NULL,
    chair_rowid bigint NOT NULL,
    session_id bigint NOT NULL,
    t double precision NOT NULL,
    vital text NOT NULL,
    value double precision,
    quality integer NOT NULL,
    device_time text,
    unit text,
    source_id integer NOT NULL,
    PRIMARY KEY (chair_id, chair_rowid)
);
CREATE INDEX observations_svt ON vigil.observations (session_id, vital, t);

CREATE TABLE vigil.waveforms (
    chair_id integer NOT NULL,
    chair_block_id bigint NOT NULL,
    session_id bigint NOT NULL,
    channel text NOT NULL,
    t0 double precision NOT NULL,
    rate double precision NOT NULL CHECK (rate > 0),
    n integer NOT NULL CHECK (n > 0),
    enc smallint NOT NULL,
    source_id integer,
    data bytea NOT NULL,
    PRIMARY KEY (chair_id, chair_block_id)
);
CREATE INDEX waveforms_sct ON vigil.waveforms (session_id, channel, t0);

CREATE TABLE vigil.waveform_tails (
    session_id bigint NOT NULL REFERENCES vigil.sessions (id),
    channel text NOT NULL,
    t0 double precision NOT NULL,
    rate double precision NOT NULL CHECK (rate > 0),
    n integer NOT NULL CHECK (n > 0),
    enc smallint NOT NULL,
    source_id integer REFERENCES vigil.sources (id),
    data bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, channel)
);

CREATE TABLE vigil.conditions (
    chair_id integer NOT NULL REFERENCES vigil.chairs (id),
    chair_condition_id bigint NOT NULL,
    session_id bigint NOT NULL REFERENCES vigil.sessions (id),
    t double precision NOT NULL,
    code text NOT NULL,
    active boolean NOT NULL,
    text text NOT NULL,
    source_id integer REFERENCES vigil.sources (id),
    PRIMARY KEY (chair_id, chair_condition_id)
);
CREATE INDEX conditions_st ON vigil.conditions (session_id, t);

CREATE TABLE vigil.entries (
    chair_id integer NOT NULL REFERENCES vigil.chairs (id),
    chair_entry_id bigint NOT NULL,
    session_id bigint NOT NULL REFERENCES vigil.sessions (id),
    t double precision NOT NULL,
    table_kind text NOT NULL CHECK (table_kind IN
        ('event', 'assessment', 'infusion_step', 'device_log', 'note', 'signoff')),
    kind text NOT NULL,
    payload_json text NOT NULL,
    user_login text NOT NULL,
    amends_id bigint,
    reason text,
    recorded_at double precision NOT NULL,
    PRIMARY KEY (chair_id, chair_entry_id),
    FOREIGN KEY (chair_id, amends_id) REFERENCES vigil.entries (chair_id, chair_entry_id),
    CHECK (amends_id IS NULL OR length(trim(coalesce(reason, ''))) > 0)
);
CREATE INDEX entries_st ON vigil.entries (session_id, t);
CREATE UNIQUE INDEX entries_amends ON vigil.entries (chair_id, amends_id) WHERE amends_id IS NOT NULL;

CREATE TABLE vigil.alarms (
    chair_id integer NOT NULL REFERENCES vigil.chairs (id),
    chair_alarm_id bigint NOT NULL,
    session_id bigint NOT NULL REFERENCES vigil.sessions (id),
    condition text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('physiological', 'technical')),
    priority text NOT NULL CHECK (priority IN ('LOW', 'MEDIUM', 'HIGH')),
    started_at double precision NOT NULL,
    limit_value double precision,
    trigger_value double precision,
    message text NOT NULL,
    PRIMARY KEY (chair_id, chair_alarm_id)
);
CREATE INDEX alarms_ss ON vigil.alarms (session_id, started_at);

CREATE TABLE vigil.alarm_states (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chair_id integer NOT NULL,
    chair_alarm_id bigint NOT NULL,
    session_id bigint NOT NULL REFERENCES vigil.sessions (id),
    max_priority text NOT NULL CHECK (max_priority IN ('LOW', 'MEDIUM', 'HIGH')),
    ended_at double precision,
    received_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (chair_id, chair_alarm_id) REFERENCES vigil.alarms (chair_id, chair_alarm_id)
);
CREATE INDEX alarm_states_latest ON vigil.alarm_states (chair_id, chair_alarm_id, id DESC);

CREATE TABLE vigil.alarm_actions (
    chair_id integer NOT NULL REFERENCES vigil.chairs (id),
    chair_action_id bigint NOT NULL,
    session_id bigint NOT NULL REFERENCES vigil.sessions (id),
    alarm_id bigint,
    t double precision NOT NULL,
    action text NOT NULL CHECK (action IN ('acknowledge', 'audio_pause', 'audio_pause_cancel', 'audio_pause_end',
                                           'reset', 'escalate', 'deescalate')),
    user_login text,
    detail text NOT NULL,
    PRIMARY KEY (chair_id, chair_action_id),
    FOREIGN KEY (chair_id, alarm_id) REFERENCES vigil.alarms (chair_id, chair_alarm_id)
);
CREATE INDEX alarm_actions_st ON vigil.alarm_actions (session_id, t);

CREATE TABLE vigil.gaps (
    chair_id integer NOT NULL REFERENCES vigil.chairs (id),
    chair_gap_id bigint NOT NULL,
    session_id bigint NOT NULL REFERENCES vigil.sessions (id),
    start_t double precision NOT NULL,
    end_t double precision NOT NULL,
    reason text NOT NULL,
    PRIMARY KEY (chair_id, chair_gap_id),
    CHECK (end_t >= start_t)
);
CREATE INDEX gaps_s ON vigil.gaps (session_id, start_t);

-- The chair's hash-chained audit trail, row for row (chair_session_id as in the chain).
CREATE TABLE vigil.audit (
    chair_id integer NOT NULL REFERENCES vigil.chairs (id),
    seq bigint NOT NULL,
    t double precision NOT NULL,
    user_login text,
    chair_session_id bigint,
    session_id bigint REFERENCES vigil.sessions (id),
    action text NOT NULL,
    payload_json text NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL,
    PRIMARY KEY (chair_id, seq)
);
CREATE INDEX audit_session ON vigil.audit (session_id) WHERE session_id IS NOT NULL;

-- What verification found wrong, on arrival: never removed.
CREATE TABLE vigil.integrity_flags (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chair_id integer NOT NULL REFERENCES vigil.chairs (id),
    session_id bigint REFERENCES vigil.sessions (id),
    chair_seq bigint,
    problem text NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX integrity_flags_session ON vigil.integrity_flags (session_id);
CREATE INDEX integrity_flags_seq ON vigil.integrity_flags (chair_id, chair_seq);

-- Staff accounts and clinic settings: every version kept; the current one is the latest change
-- (changed_at, then id). origin_* name the chair change it came from (NULL: made at the server).
CREATE TABLE vigil.staff_accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    login text NOT NULL CHECK (length(login) > 0),
    display_name text NOT NULL,
    role text NOT NULL,
    pin_hash text,
    active boolean NOT NULL,
    changed_at double precision NOT NULL,
    changed_by text,
    origin_chair_id integer REFERENCES vigil.chairs (id),
    origin_seq bigint,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (origin_chair_id, origin_seq)
);
CREATE INDEX staff_accounts_login ON vigil.staff_accounts (login, changed_at DESC, id DESC);

CREATE TABLE vigil.clinic_settings (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    json text NOT NULL,
    changed_at double precision NOT NULL,
    changed_by text,
    origin_chair_id integer REFERENCES vigil.chairs (id),
    origin_seq bigint,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (origin_chair_id, origin_seq)
);

-- ------------------------------------------------------------------------------------ views
CREATE VIEW vigil.session_latest AS
    SELECT DISTINCT ON (session_id) * FROM vigil.session_states ORDER BY session_id, id DESC;
CREATE VIEW vigil.alarm_latest AS
    SELECT DISTINCT ON (chair_id, chair_alarm_id) * FROM vigil.alarm_states ORDER BY chair_id, chair_alarm_id, id DESC;
CREATE VIEW vigil.staff_current AS
    SELECT DISTINCT ON (login) * FROM vigil.staff_accounts ORDER BY login, changed_at DESC, id DESC;

-- ------------------------------------------------------------------------------------ triggers
CREATE FUNCTION vigil.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'vigil.% is append-only: recorded rows cannot be changed or deleted', TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['sources', 'sessions', 'session_states', 'session_seals', 'observations', 'waveforms',
                             'conditions', 'entries', 'alarms', 'alarm_states', 'alarm_actions', 'gaps', 'audit',
                             'integrity_flags', 'staff_accounts', 'clinic_settings'] LOOP
        EXECUTE format('CREATE TRIGGER %1$s_no_change BEFORE UPDATE OR DELETE ON vigil.%1$s '
                       'FOR EACH ROW EXECUTE FUNCTION vigil.refuse_change()', t);
        EXECUTE format('CREATE TRIGGER %1$s_no_truncate BEFORE TRUNCATE ON vigil.%1$s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION vigil.refuse_change()', t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['chairs', 'session_progress'] LOOP
        EXECUTE format('CREATE TRIGGER %1$s_no_delete BEFORE DELETE ON vigil.%1$s '
                       'FOR EACH ROW EXECUTE FUNCTION vigil.refuse_change()', t);
        EXECUTE format('CREATE TRIGGER %1$s_no_truncate BEFORE TRUNCATE ON vigil.%1$s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION vigil.refuse_change()', t);
    END LOOP;
END $$;

CREATE FUNCTION vigil.chairs_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.uid IS DISTINCT FROM OLD.uid
            OR NEW.registered_at IS DISTINCT FROM OLD.registered_at THEN
        RAISE EXCEPTION 'only a chair''s name can change' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER chairs_update BEFORE UPDATE ON vigil.chairs FOR EACH ROW EXECUTE FUNCTION vigil.chairs_update();

CREATE FUNCTION vigil.is_sealed(sid bigint) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM vigil.session_seals WHERE session_id = sid)
$$;

CREATE FUNCTION vigil.progress_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF vigil.is_sealed(OLD.session_id) THEN
        RAISE EXCEPTION 'session % is sealed: its progress is final', OLD.session_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.session_id IS DISTINCT FROM OLD.session_id OR NEW.n_observations < OLD.n_observations
            OR NEW.n_alarms < OLD.n_alarms
            OR (OLD.last_seen IS NOT NULL AND (NEW.last_seen IS NULL OR NEW.last_seen < OLD.last_seen)) THEN
        RAISE EXCEPTION 'a session''s progress only moves forward' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER session_progress_update BEFORE UPDATE ON vigil.session_progress
    FOR EACH ROW EXECUTE FUNCTION vigil.progress_update();

CREATE FUNCTION vigil.tail_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF vigil.is_sealed(NEW.session_id) THEN
        RAISE EXCEPTION 'session % is sealed: it has no unfinished waveform block', NEW.session_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.session_id IS DISTINCT FROM OLD.session_id OR NEW.channel IS DISTINCT FROM OLD.channel
                             OR NEW.t0 < OLD.t0) THEN
        RAISE EXCEPTION 'an unfinished waveform block only moves forward' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER waveform_tails_change BEFORE INSERT OR UPDATE ON vigil.waveform_tails
    FOR EACH ROW EXECUTE FUNCTION vigil.tail_change();

-- Data for a sealed session is refused (checked once per statement on the rows really inserted,
-- so a re-sent row that ON CONFLICT DO NOTHING skips is harmless).
CREATE FUNCTION vigil.refuse_if_sealed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows n JOIN vigil.session_seals s ON s.session_id = n.session_id) THEN
        RAISE EXCEPTION 'vigil.%: the session is sealed (the clinic record holds all of it): no more data',
            TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['conditions', 'alarms', 'alarm_states', 'alarm_actions', 'gaps', 'session_states'] LOOP
        EXECUTE format('CREATE TRIGGER %1$s_sealed AFTER INSERT ON vigil.%1$s REFERENCING NEW TABLE AS new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION vigil.refuse_if_sealed()', t);
    END LOOP;
END $$;

CREATE FUNCTION vigil.bulk_insert_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows n LEFT JOIN vigil.sessions s ON s.id = n.session_id
               WHERE s.id IS NULL OR s.chair_id <> n.chair_id) THEN
        RAISE EXCEPTION 'vigil.%: a row names a session that is not one of its chair''s', TG_TABLE_NAME
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM new_rows n WHERE n.source_id IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM vigil.sources x WHERE x.id = n.source_id)) THEN
        RAISE EXCEPTION 'vigil.%: a row names a source that does not exist', TG_TABLE_NAME
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM new_rows n JOIN vigil.session_seals z ON z.session_id = n.session_id) THEN
        RAISE EXCEPTION 'vigil.%: the session is sealed (the clinic record holds all of it): no more data',
            TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER observations_check AFTER INSERT ON vigil.observations REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vigil.bulk_insert_check();
CREATE TRIGGER waveforms_check AFTER INSERT ON vigil.waveforms REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vigil.bulk_insert_check();

CREATE FUNCTION vigil.entries_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows n JOIN vigil.session_seals s ON s.session_id = n.session_id
               WHERE n.reason IS NULL) THEN
        RAISE EXCEPTION 'the session is sealed: only amendments and late entries (with a reason) may be added'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM new_rows n WHERE n.amends_id IS NOT NULL AND NOT EXISTS (
               SELECT 1 FROM vigil.entries e WHERE e.chair_id = n.chair_id AND e.chair_entry_id = n.amends_id
               AND e.session_id = n.session_id AND e.table_kind = n.table_kind)) THEN
        RAISE EXCEPTION 'an amendment must correct an entry of the same session and table'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER entries_insert AFTER INSERT ON vigil.entries REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vigil.entries_insert();

-- A closed session's state is final.
CREATE FUNCTION vigil.session_state_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM vigil.session_latest WHERE session_id = NEW.session_id AND status <> 'open') THEN
        RAISE EXCEPTION 'session % is closed: its state cannot change', NEW.session_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER session_states_insert BEFORE INSERT ON vigil.session_states
    FOR EACH ROW EXECUTE FUNCTION vigil.session_state_insert();

-- An alarm ends once, not before it started, and its maximum priority only rises.
CREATE FUNCTION vigil.priority_rank(p text) RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p WHEN 'LOW' THEN 1 WHEN 'MEDIUM' THEN 2 WHEN 'HIGH' THEN 3 END
$$;
CREATE FUNCTION vigil.alarm_state_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    prev record;
    started double precision;
BEGIN
    SELECT started_at INTO started FROM vigil.alarms WHERE chair_id = NEW.chair_id AND chair_alarm_id = NEW.chair_alarm_id;
    IF NEW.ended_at IS NOT NULL AND NEW.ended_at < started THEN
        RAISE EXCEPTION 'an alarm cannot end before it started' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT * INTO prev FROM vigil.alarm_states WHERE chair_id = NEW.chair_id AND chair_alarm_id = NEW.chair_alarm_id
        ORDER BY id DESC LIMIT 1;
    IF FOUND AND (vigil.priority_rank(NEW.max_priority) < vigil.priority_rank(prev.max_priority)
                  OR (prev.ended_at IS NOT NULL AND NEW.ended_at IS DISTINCT FROM prev.ended_at)) THEN
        RAISE EXCEPTION 'an alarm''s end is set once and its maximum priority only rises'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER alarm_states_insert BEFORE INSERT ON vigil.alarm_states
    FOR EACH ROW EXECUTE FUNCTION vigil.alarm_state_insert();

-- Audit rows extend the chair's chain; a row that does not (rows missing or changed at the chair)
-- is kept only together with the integrity flag that says so. A row already held is skipped if it
-- is the same row, and refused if it is not (never merged silently).
CREATE FUNCTION vigil.audit_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    held text;
    prev record;
BEGIN
    SELECT hash INTO held FROM vigil.audit WHERE chair_id = NEW.chair_id AND seq = NEW.seq;
    IF FOUND THEN
        IF held IS DISTINCT FROM NEW.hash THEN
            RAISE EXCEPTION 'audit row % of chair % differs from the row the clinic record holds', NEW.seq, NEW.chair_id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;  -- the same row again: ON CONFLICT DO NOTHING skips it
    END IF;
    SELECT seq, hash INTO prev FROM vigil.audit WHERE chair_id = NEW.chair_id ORDER BY seq DESC LIMIT 1;
    IF (NOT FOUND AND (NEW.seq <> 1 OR NEW.prev_hash <> repeat('0', 64)))
            OR (FOUND AND (NEW.seq <> prev.seq + 1 OR NEW.prev_hash IS DISTINCT FROM prev.hash)) THEN
        IF NOT EXISTS (SELECT 1 FROM vigil.integrity_flags WHERE chair_id = NEW.chair_id AND chair_seq = NEW.seq) THEN
            RAISE EXCEPTION 'audit row % of chair % does not extend the chain and no integrity flag says so',
                NEW.seq, NEW.chair_id USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_insert BEFORE INSERT ON vigil.audit FOR EACH ROW EXECUTE FUNCTION vigil.audit_insert();

-- Sealing: only a closed session; its unfinished waveform blocks go (they were finished at the chair).
CREATE FUNCTION vigil.seal_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM vigil.session_latest WHERE session_id = NEW.session_id AND status <> 'open') THEN
        RAISE EXCEPTION 'session % is not closed: it cannot be sealed', NEW.session_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER session_seals_insert BEFORE INSERT ON vigil.session_seals
    FOR EACH ROW EXECUTE FUNCTION vigil.seal_insert();

CREATE FUNCTION vigil.seal_drop_tails() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = vigil, pg_temp AS $$
BEGIN
    DELETE FROM vigil.waveform_tails WHERE session_id = NEW.session_id;
    RETURN NULL;
END $$;
CREATE TRIGGER session_seals_tails AFTER INSERT ON vigil.session_seals
    FOR EACH ROW EXECUTE FUNCTION vigil.seal_drop_tails();

-- ------------------------------------------------------------------------------------ grants
REVOKE ALL ON ALL TABLES IN SCHEMA vigil FROM PUBLIC;
REVOKE ALL ON FUNCTION vigil.seal_drop_tails() FROM PUBLIC;
GRANT USAGE ON SCHEMA vigil TO vigil_replication, vigil_review;
GRANT SELECT ON ALL TABLES IN SCHEMA vigil TO vigil_replication, vigil_review;
GRANT INSERT ON vigil.chairs, vigil.sources, vigil.sessions, vigil.session_states, vigil.session_progress,
    vigil.session_seals, vigil.observations, vigil.waveforms, vigil.waveform_tails, vigil.conditions,
    vigil.entries, vigil.alarms, vigil.alarm_states, vigil.alarm_actions, vigil.gaps, vigil.audit,
    vigil.integrity_flags, vigil.staff_accounts, vigil.clinic_settings TO vigil_replication;
GRANT UPDATE (name) ON vigil.chairs TO vigil_replication;
GRANT UPDATE (last_seen, n_observations, n_alarms, updated_at) ON vigil.session_progress TO vigil_replication;
GRANT UPDATE (t0, rate, n, enc, source_id, data, updated_at) ON vigil.waveform_tails TO vigil_replication;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA vigil TO vigil_replication;

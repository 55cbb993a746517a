-- +goose Up

-- Usage rows also count the sessions that ended in the minute, and the handshakes refused by
-- outcome ({"<status> <reason>": count}, configwire.UsageRecord.Refusals), for the portal's
-- analytics (issue 17). Rows stored before have 0 and NULL.
ALTER TABLE usage
    ADD COLUMN connections_closed bigint NOT NULL DEFAULT 0,
    ADD COLUMN refusals           jsonb;

-- connection_log holds the record of every WebSocket session a gateway node reported as ended
-- (configwire.ConnectionLogRecord), one row per correlation id: a batch delivered twice
-- inserts nothing. Management prunes it by age and by rows per service
-- (MANAGEMENT_CONNECTION_LOG_RETENTION, MANAGEMENT_CONNECTION_LOG_MAX_ROWS). client_ip is
-- stored for the diagnostics of issue 15 to gate.
CREATE TABLE connection_log (
    service_id     uuid        NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    correlation_id text        NOT NULL,
    node_id        text        NOT NULL,
    gateway        text        NOT NULL,
    api            text        NOT NULL,
    operation      text        NOT NULL DEFAULT '',
    product        text        NOT NULL DEFAULT '',
    subscription   text        NOT NULL DEFAULT '',
    user_id        text        NOT NULL DEFAULT '',
    client_ip      text        NOT NULL DEFAULT '',
    opened_at      timestamptz NOT NULL,
    closed_at      timestamptz NOT NULL,
    messages_in    bigint      NOT NULL DEFAULT 0,
    messages_out   bigint      NOT NULL DEFAULT 0,
    bytes_in       bigint      NOT NULL DEFAULT 0,
    bytes_out      bigint      NOT NULL DEFAULT 0,
    close_code     integer     NOT NULL,
    closed_by      text        NOT NULL DEFAULT '',
    reason         text        NOT NULL DEFAULT '',
    detail         text        NOT NULL DEFAULT '',
    PRIMARY KEY (service_id, correlation_id)
);
-- The log is read newest first per service, and pruned by age across services.
CREATE INDEX connection_log_service_closed ON connection_log (service_id, closed_at DESC);
CREATE INDEX connection_log_closed ON connection_log (closed_at);

-- +goose Down
DROP TABLE connection_log;
ALTER TABLE usage DROP COLUMN refusals, DROP COLUMN connections_closed;

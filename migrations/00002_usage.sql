-- +goose Up

-- usage holds what gateway nodes report per minute, API and subscription ('' for none), one
-- row per node. The primary key makes ingestion idempotent: a batch delivered again inserts
-- nothing (ON CONFLICT DO NOTHING), because a node reports each key in one batch only.
-- Reports sum over nodes. Rows go with their service.
CREATE TABLE usage (
    service_id         uuid        NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    node_id            text        NOT NULL,
    minute             timestamptz NOT NULL,
    api                text        NOT NULL,
    subscription       text        NOT NULL DEFAULT '',
    batch_id           text        NOT NULL,
    handshakes_success bigint      NOT NULL DEFAULT 0,
    handshakes_blocked bigint      NOT NULL DEFAULT 0,
    handshakes_failed  bigint      NOT NULL DEFAULT 0,
    handshakes_other   bigint      NOT NULL DEFAULT 0,
    messages_in        bigint      NOT NULL DEFAULT 0,
    messages_out       bigint      NOT NULL DEFAULT 0,
    bytes_in           bigint      NOT NULL DEFAULT 0,
    bytes_out          bigint      NOT NULL DEFAULT 0,
    connection_ms      bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (service_id, node_id, minute, api, subscription)
);
-- Reports filter a service by time.
CREATE INDEX usage_service_minute ON usage (service_id, minute);

-- +goose Down
DROP TABLE usage;

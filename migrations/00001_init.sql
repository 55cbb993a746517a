-- +goose Up

-- services are the API Management service instances. An ARM subscription id is a tenant: every
-- other table hangs off a service, so tenancy is decided once, by the service's subscription_id.
CREATE TABLE services (
    id              uuid        PRIMARY KEY,
    subscription_id text        NOT NULL,
    resource_group  text        NOT NULL,
    name            text        NOT NULL,
    location        text        NOT NULL,
    sku             jsonb       NOT NULL,
    tags            jsonb       NOT NULL DEFAULT '{}',
    properties      jsonb       NOT NULL,
    etag            text        NOT NULL,
    -- revision is the service's configuration revision; every write bumps it in the same
    -- transaction that writes the outbox row, so the row lock orders writers.
    revision        bigint      NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX services_arm_name ON services (lower(subscription_id), lower(resource_group), lower(name));

-- resources holds every child resource of a service (apis, operations, policies, products,
-- product and gateway links, users, subscriptions, gateways, named values) as ARM documents.
-- parent is the resource path of the parent ('' for top level, 'apis/echo', 'products/p1');
-- names are case-insensitive as in ARM, and stored as the caller spelled them.
CREATE TABLE resources (
    id          uuid        PRIMARY KEY,
    service_id  uuid        NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    kind        text        NOT NULL,
    parent      text        NOT NULL DEFAULT '',
    name        text        NOT NULL,
    properties  jsonb       NOT NULL,
    -- sealed is the AES-GCM sealed JSON of the resource's secrets (keys, secret values); never
    -- plaintext.
    sealed      bytea,
    -- key_hashes are SHA-256 hashes of subscription keys, the only form a gateway ever sees.
    key_hashes  text[]      NOT NULL DEFAULT '{}',
    etag        text        NOT NULL,
    revision    bigint      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX resources_name ON resources (service_id, kind, lower(parent), lower(name));
CREATE INDEX resources_list ON resources (service_id, kind, lower(parent), lower(name) text_pattern_ops);
-- Two APIs of one service cannot share a path (APIM: ValidationError, target "path").
CREATE UNIQUE INDEX resources_api_path ON resources (service_id, lower(properties ->> 'path')) WHERE kind = 'apis';
CREATE INDEX resources_key_hashes ON resources USING gin (key_hashes) WHERE kind = 'subscriptions';
-- Links and subscriptions are looked up by the resource they point at when that resource goes.
CREATE INDEX resources_links ON resources (service_id, kind, lower(name)) WHERE kind IN ('productApis', 'gatewayApis');
CREATE INDEX resources_subscription_scope ON resources (service_id, lower(properties ->> 'scope')) WHERE kind = 'subscriptions';

-- outbox holds one row per committed revision of a service, written in the same transaction as
-- the change; the relay publishes rows to NATS JetStream in revision order and then marks them.
CREATE TABLE outbox (
    id           bigserial   PRIMARY KEY,
    service_id   uuid        NOT NULL,
    revision     bigint      NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    UNIQUE (service_id, revision)
);
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;

-- +goose Down
DROP TABLE outbox;
DROP TABLE resources;
DROP TABLE services;

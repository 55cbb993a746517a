-- +goose Up

-- signing_keys are management's Ed25519 keys that sign configuration changes and snapshots for
-- the gateway nodes (docs/design.md, "Signed changes"). sealed_seed is the private key's seed
-- sealed with MANAGEMENT_ENCRYPTION_KEY (secretbox, bound to the key id); never plaintext. One
-- key is active (retired_at IS NULL); retired keys stay listed to the nodes for a while, so that
-- changes they signed still verify, and their seeds still derive the node keys of heartbeats.
CREATE TABLE signing_keys (
    id          text        PRIMARY KEY,
    public_key  bytea       NOT NULL,
    sealed_seed bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((true)) WHERE retired_at IS NULL;

-- +goose Down
DROP TABLE signing_keys;

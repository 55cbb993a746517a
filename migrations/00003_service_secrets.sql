-- +goose Up

-- sealed is the AES-GCM sealed JSON of the service's own secrets: the keys that sign its users'
-- tokens (POST .../users/{userId}/token). Management creates them on first use; never plaintext.
ALTER TABLE services ADD COLUMN sealed bytea;

-- +goose Down
ALTER TABLE services DROP COLUMN sealed;

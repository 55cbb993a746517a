-- +goose Up

-- Two APIs may share a path when they are versions of one version set, and an API's revisions
-- ("chat;rev=2") share its path (docs/versions.md). The index keeps a path, version set and
-- version unique among the current revisions.
DROP INDEX resources_api_path;
CREATE UNIQUE INDEX resources_api_path ON resources (service_id, lower(properties ->> 'path'),
    lower(COALESCE(properties ->> 'apiVersionSetId', '')), lower(COALESCE(properties ->> 'apiVersion', '')))
    WHERE kind = 'apis' AND strpos(name, ';') = 0;

-- +goose Down
DROP INDEX resources_api_path;
CREATE UNIQUE INDEX resources_api_path ON resources (service_id, lower(properties ->> 'path')) WHERE kind = 'apis';

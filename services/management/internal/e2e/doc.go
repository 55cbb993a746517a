// Package e2e holds end-to-end tests of the gateway against a real management service: management
// runs in process (mgmttest: its own Postgres database, in-process NATS, the outbox relay) and
// every gateway node is the real gateway binary, built once per test run and started as a process.
package e2e

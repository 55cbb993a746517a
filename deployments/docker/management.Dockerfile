# syntax=docker/dockerfile:1
#
# Gatehouse management service image.
#
# Build from the repository root (the Go workspace), which is the build context:
#   docker build -f deployments/docker/management.Dockerfile -t gatehouse/management:dev .
#
# The image runs `management` as uid/gid 10001 and listens on 0.0.0.0:8080. Configure it with the
# environment variables of docs/design.md §5 (DATABASE_URL, NATS_URL, MANAGEMENT_*). `management migrate`
# (the image's argument "migrate") applies pending migrations and exits.

ARG GO_VERSION=1.26.8
ARG ALPINE_VERSION=3.22

FROM golang:${GO_VERSION}-alpine AS build
WORKDIR /src
# Static binary, no toolchain download: the image's Go is the workspace's Go.
ENV CGO_ENABLED=0 GOTOOLCHAIN=local
# The workspace: go.work names every module in it, so every module folder it lists must be present.
# deployments/ contributes only its go.mod and go.sum (its Go code is a test of these files), which
# keeps the module graph, and so every dependency version, identical to a local `make build`.
COPY go.work go.work.sum ./
COPY deployments/go.mod deployments/go.sum deployments/
COPY pkg/ pkg/
COPY migrations/ migrations/
COPY openapi/ openapi/
COPY services/ services/
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/management ./services/management/cmd/management

FROM alpine:${ALPINE_VERSION}
# ca-certificates: management fetches JWKS over HTTPS (MANAGEMENT_JWKS_URL).
RUN apk add --no-cache ca-certificates tzdata \
 && addgroup -S -g 10001 gatehouse \
 && adduser -S -D -H -u 10001 -G gatehouse -h /nonexistent -s /sbin/nologin gatehouse
COPY --from=build /out/management /usr/local/bin/management
# The binary's default listen address is loopback, which nothing outside the container reaches.
ENV MANAGEMENT_LISTEN=0.0.0.0:8080
EXPOSE 8080
USER 10001:10001
# /readyz answers 200 while Postgres answers (a NATS outage is reported in its body: writes wait in the outbox). The port follows MANAGEMENT_LISTEN; with
# MANAGEMENT_TLS_CERT set, override this check (it speaks plain HTTP).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD wget -q -O /dev/null "http://127.0.0.1:${MANAGEMENT_LISTEN##*:}/readyz" || exit 1
ENTRYPOINT ["/usr/local/bin/management"]

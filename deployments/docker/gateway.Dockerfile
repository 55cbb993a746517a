# syntax=docker/dockerfile:1
#
# Gatehouse gateway node image.
#
# Build from the repository root (the Go workspace), which is the build context:
#   docker build -f deployments/docker/gateway.Dockerfile -t gatehouse/gateway:dev .
#
# The image runs `gateway` as uid/gid 10001: API traffic on 0.0.0.0:8081, the admin listener
# (/healthz, /readyz, /metrics) on 0.0.0.0:9091, the last good configuration in
# /var/cache/gatehouse (mount a volume there to keep it across restarts). GATEWAY_TOKEN (from the
# management API's generateToken) is required; see docs/design.md §5 for every other variable.

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
    go build -trimpath -ldflags="-s -w" -o /out/gateway ./services/gateway/cmd/gateway

FROM alpine:${ALPINE_VERSION}
# ca-certificates: the gateway dials wss/https backends and JWKS endpoints with verified TLS.
# The base image's busybox provides `sleep` for a Kubernetes preStop hook and `wget` for HEALTHCHECK.
RUN apk add --no-cache ca-certificates tzdata \
 && addgroup -S -g 10001 gatehouse \
 && adduser -S -D -H -u 10001 -G gatehouse -h /nonexistent -s /sbin/nologin gatehouse \
 && install -d -o 10001 -g 10001 -m 0750 /var/cache/gatehouse
COPY --from=build /out/gateway /usr/local/bin/gateway
# The binary's default listen addresses are loopback, which nothing outside the container reaches.
ENV GATEWAY_LISTEN=0.0.0.0:8081 \
    GATEWAY_ADMIN_LISTEN=0.0.0.0:9091 \
    GATEWAY_CACHE_DIR=/var/cache/gatehouse
EXPOSE 8081 9091
USER 10001:10001
# /readyz answers 200 once a configuration is installed and the node counts limits with the fleet
# through NATS (or GATEWAY_NATS_READY_TIMEOUT has passed without NATS), and while the node is not
# draining. The port follows GATEWAY_ADMIN_LISTEN.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD wget -q -O /dev/null "http://127.0.0.1:${GATEWAY_ADMIN_LISTEN##*:}/readyz" || exit 1
ENTRYPOINT ["/usr/local/bin/gateway"]

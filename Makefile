# Gatehouse developer entry points. Run from the repository (workspace) root; see docs/running.md.
#
# The root is a Go workspace, not a module, so `go test ./...` here fails: the pattern `work`
# names every package of every workspace module.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

GO ?= go
FUZZTIME ?= 30s
BENCHTIME ?= 1s
TEST_TIMEOUT ?= 20m

# Module folders, for gofmt (vet and test use the `work` pattern).
MODULE_DIRS = $(patsubst $(CURDIR)/%,%,$(shell $(GO) list -m -f '{{.Dir}}'))

# WITH_DB exports the DATABASE_URL that scripts/postgres.sh finds or starts; prefix a recipe line.
WITH_DB = url="$$(scripts/postgres.sh)"; export DATABASE_URL="$$url";

.PHONY: help build test run bench bench-scale bench-go bench-management fuzz lint fmt-check vet clean postgres-stop

## help: list these targets
help:
	@sed -n 's/^## /  /p' $(firstword $(MAKEFILE_LIST))

## build: compile bin/management and bin/gateway
build:
	$(GO) build -trimpath -o bin/management ./services/management/cmd/management
	$(GO) build -trimpath -o bin/gateway ./services/gateway/cmd/gateway
	$(GO) build -trimpath -o bin/demohub ./services/gateway/cmd/demohub
	$(GO) build -trimpath -o bin/wscat ./services/gateway/cmd/wscat

## test: gofmt check, go vet, then every test with -race against a real Postgres; the relay's
## session tests run again on the goroutine engine (systems without epoll) and without io_uring
test: fmt-check vet
	scripts/deps.sh
	$(WITH_DB) $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) work
	$(GO) test -race -count=1 ./services/gateway/internal/wsproxy -args -wsproxy.engine=goroutine
	$(GO) test -race -count=1 ./services/gateway/internal/wsproxy -args -wsproxy.ring=false -wsproxy.front=false

## run: build, start Postgres if needed, run management in the foreground (Ctrl-C stops)
run: build
	$(WITH_DB) scripts/run.sh

## bench: the WebSocket, wss and REST benchmark against direct, nginx and HAProxy (scripts/bench/run.sh; BENCH_RUNS, BENCH_QUICK=1, BENCH_TARGETS, BENCH_SCENARIOS; docs/performance.md)
bench:
	$(WITH_DB) scripts/bench/run.sh

## bench-scale: scenarios (h) and (i): one gateway node filled to the descriptor limit, 45,000 sessions over 5 nodes (long; one run unless BENCH_RUNS)
bench-scale:
	$(WITH_DB) BENCH_SCENARIOS="$${BENCH_SCENARIOS:-h i}" BENCH_TARGETS="$${BENCH_TARGETS:-gatehouse}" BENCH_RUNS="$${BENCH_RUNS:-1}" scripts/bench/run.sh

## bench-go: every Go micro-benchmark in the workspace, BENCHTIME each
bench-go:
	$(WITH_DB) $(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) work

## bench-management: the management service's benchmarks (scripts/bench-management.sh)
bench-management:
	$(WITH_DB) scripts/bench-management.sh

## scale: 10,000 APIs and 1,000,000 subscriptions: gateway cold start, memory, change propagation (long; docs/scale.md)
scale: build
	$(WITH_DB) scripts/scale.sh

## fuzz: run each Fuzz* target for FUZZTIME
fuzz:
	$(WITH_DB) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

## lint: gofmt check and go vet
lint: fmt-check vet

fmt-check:
	@files="$$(gofmt -l $(MODULE_DIRS))"; \
	if [ -n "$$files" ]; then echo "gofmt -l lists files that need formatting:"; echo "$$files"; exit 1; fi

vet:
	$(GO) vet work

## postgres-stop: stop the private Postgres cluster in .data/postgres, if one runs
postgres-stop:
	scripts/postgres-stop.sh

## clean: remove built binaries (the database in .data stays; see postgres-stop)
clean:
	rm -rf bin

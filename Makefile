# OP25B Observatory. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO       ?= go
BIN      := $(CURDIR)/bin
OUT      := $(CURDIR)/out
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
export PATH := $(BIN):$(PATH)
export CGO_ENABLED ?= 0

# Pinned tool versions; `make tools` installs them into ./bin.
BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
STATICCHECK_VERSION        := v0.8.2
NFPM_VERSION               := v2.48.0

COMMANDS := ./agent/cmd/op25b-agent ./refmta/cmd/op25b-refmta ./collector/cmd/op25b-collector ./collector/cmd/op25b ./deploy/testbed/cmd/op25b-testbed ./deploy/chaos/cmd/op25b-chaos

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the static binaries into ./out.
	@mkdir -p $(OUT)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(OUT)/ $(COMMANDS)

.PHONY: demo
demo: build ## Run a reference MTA and a check round on loopback, then the emulated-ISP testbed (as root).
	@deploy/demo.sh $(OUT)

.PHONY: testbed
testbed: build testdeps ## Run every emulated-ISP scenario (root); writes testbed-report.json.
	$(OUT)/op25b-testbed run --bin $(OUT) --report $(CURDIR)/testbed-report.json

.PHONY: validity
validity: build testdeps ## Measure false verdicts under loss, latency, a CGNAT, a busy and a far reference MTA, 1,000 probes each (root, about half an hour); rewrites the Validity section of BENCHMARKS.md.
	deploy/validity.sh $(OUT)

.PHONY: chaos
chaos: build testdeps ## Kill, starve and flood the real collector, PostgreSQL, reference MTAs and agents, one fault at a time (root, about 20 minutes; CHAOS_FLAGS="--pg-down 5m" changes a phase); rewrites the Chaos section of BENCHMARKS.md.
	deploy/chaos.sh $(OUT)

.PHONY: testbed-sweep
testbed-sweep: build ## Remove namespaces and processes left by killed testbed runs (root).
	$(OUT)/op25b-testbed sweep

include dashboard/backend.mk dashboard/frontend.mk deploy/deploy.mk

PLUGIN_ID := op25b-observatory-datasource

.PHONY: dashboard
dashboard: ## Build the Grafana plugin (front end, then the backend for linux amd64 and arm64) into out/op25b-observatory-datasource-VERSION.zip and check its layout.
	$(MAKE) --no-print-directory dashboard-frontend
	$(MAKE) --no-print-directory dashboard-backend
	@rm -rf $(OUT)/plugin && mkdir -p $(OUT)/plugin && cp -r dashboard/dist $(OUT)/plugin/$(PLUGIN_ID)
	@rm -f $(OUT)/$(PLUGIN_ID)-$(VERSION).zip && cd $(OUT)/plugin && zip -qr $(OUT)/$(PLUGIN_ID)-$(VERSION).zip $(PLUGIN_ID)
	@for f in plugin.json module.js gpx_op25b_linux_amd64 gpx_op25b_linux_arm64; do \
	  unzip -Z1 $(OUT)/$(PLUGIN_ID)-$(VERSION).zip | grep -qx "$(PLUGIN_ID)/$$f" || { echo "dashboard: the plugin archive lacks $(PLUGIN_ID)/$$f"; exit 1; }; \
	done
	@grep -q '"id": *"$(PLUGIN_ID)"' $(OUT)/plugin/$(PLUGIN_ID)/plugin.json && grep -q '"executable": *"gpx_op25b"' $(OUT)/plugin/$(PLUGIN_ID)/plugin.json \
	  || { echo "dashboard: plugin.json does not name $(PLUGIN_ID) and its executable gpx_op25b"; exit 1; }
	@echo "dashboard: $(OUT)/$(PLUGIN_ID)-$(VERSION).zip has plugin.json, module.js and the linux amd64 and arm64 backends"

.PHONY: test
test: tools testdeps duckdb checkgenerate lint crosscheck compose-check dashboard-frontend-test dashboard-backend-test dashboard ## Run every test, with the race detector (CI sets OP25B_REQUIRE_ALL=1: no skips allowed); artefacts such as the web page's screenshots go to out/artifacts.
	OP25B_ARTIFACTS=$${OP25B_ARTIFACTS:-$(OUT)/artifacts} CGO_ENABLED=1 $(GO) test -race -count=1 ./...

.PHONY: crosscheck
crosscheck: ## Vet and compile the agent's packages and their tests for windows, darwin and freebsd (amd64 and arm64).
	GO=$(GO) deploy/crosscheck.sh

.PHONY: bench
bench: build $(BIN)/nfpm ## Run the benchmarks and rewrite BENCHMARKS.md (make release inside needs nfpm).
	deploy/bench.sh $(OUT)

.PHONY: generate
generate: tools ## Regenerate the protobuf and gRPC code, and the Grafana plugin's copies of it and of the root packages it uses (tools/plugincopy).
	cd proto && buf generate
	rm -f dashboard/pkg/internal/op25bv1/*.pb.go && buf generate --template proto/buf.gen.dashboard.yaml
	$(GO) run ./tools/plugincopy

.PHONY: checkgenerate
checkgenerate: tools ## Fail if the committed generated code, or a copy of it or of a package in the plugin, is stale.
	@rm -rf $(OUT)/_gen && mkdir -p $(OUT)/_gen
	cd proto && buf generate --output $(OUT)/_gen/proto
	buf generate --template proto/buf.gen.dashboard.yaml --output $(OUT)/_gen
	@for f in $$(cd $(OUT)/_gen && find . -name '*.go'); do \
	  cmp -s $(OUT)/_gen/$$f $$f || { echo "checkgenerate: $${f#./} is stale: run 'make generate' and commit"; exit 1; }; \
	done
	@for f in $$(find proto dashboard/pkg/internal/op25bv1 -name '*.pb.go'); do \
	  [ -f $(OUT)/_gen/$$f ] || { echo "checkgenerate: $$f has no .proto (or proto/buf.gen.dashboard.yaml no longer names it): remove it"; exit 1; }; \
	done
	$(GO) run ./tools/plugincopy -check
	@echo "checkgenerate: generated code is current"

.PHONY: lint
lint: tools ## gofmt, go vet, staticcheck, buf lint and buf breaking against main.
	@fmt=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$fmt" ]; then echo "gofmt needed: $$fmt"; exit 1; fi
	$(GO) vet ./...
	staticcheck ./...
	cd proto && buf lint
	@if git rev-parse --verify -q main >/dev/null && git cat-file -e main:proto/buf.yaml 2>/dev/null; then \
	  echo "buf breaking against main"; cd proto && buf breaking --against '../.git#branch=main,subdir=proto'; \
	else echo "buf breaking: no proto on main yet, nothing to compare"; fi

.PHONY: tools
tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(BIN)/staticcheck $(BIN)/nfpm ## Install the pinned tools into ./bin.

$(BIN)/buf:
	GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(BIN)/protoc-gen-go-grpc:
	GOBIN=$(BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(BIN)/staticcheck:
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
# nfpm makes make release's deb, rpm, apk and ipk packages; not in go.mod,
# so that its dependencies stay out of the agent's build.
$(BIN)/nfpm:
	GOBIN=$(BIN) $(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)

.PHONY: testdeps
testdeps: ## Install what the tests need (nftables, iproute2, gcc for -race, chromium and a Japanese font for the web page, zip, systemd-analyze, minisign, rpm and busybox for the packages) when root and missing.
	@need=""; command -v nft >/dev/null || need="$$need nftables"; command -v ip >/dev/null || need="$$need iproute2"; \
	command -v gcc >/dev/null || need="$$need gcc libc6-dev"; command -v chromium >/dev/null || need="$$need chromium"; command -v zip >/dev/null || need="$$need zip unzip"; \
	command -v systemd-analyze >/dev/null || need="$$need systemd"; command -v minisign >/dev/null || need="$$need minisign"; \
	command -v rpm >/dev/null || need="$$need rpm"; command -v busybox >/dev/null || need="$$need busybox"; \
	fc-list :lang=ja 2>/dev/null | grep -q . || need="$$need fonts-ipafont-gothic"; \
	if [ -z "$$need" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing$$need"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null; \
	else echo "testdeps: missing$$need (install them as root; the testbed tests will skip or, with OP25B_REQUIRE_ALL=1, fail)"; fi

# DuckDB's Node package runs the researcher guide's queries against a real
# archive (collector/archive, TestArchiveDuckDB); the stamp says the install
# matches the lock file.
DUCKDB_STAMP := $(CURDIR)/tools/duckdb/node_modules/.npm-ci.stamp

.PHONY: duckdb
duckdb: $(DUCKDB_STAMP) ## Install DuckDB's Node package into tools/duckdb, for the test that runs docs/researcher.md's queries.

$(DUCKDB_STAMP): tools/duckdb/package.json tools/duckdb/package-lock.json | dashboard-node
	cd tools/duckdb && $(NPM) ci --no-audit --no-fund
	@touch $@

.PHONY: clean
clean: ## Remove build outputs.
	rm -rf $(OUT) testbed-report.json dashboard/dist

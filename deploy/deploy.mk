# deploy/deploy.mk: release builds and the deployment checks. Included by
# the root Makefile (include deploy/deploy.mk), which defines GO, BIN, OUT
# and VERSION. deploy/deploytest, run by `go test ./...`, checks the
# Dockerfiles, the compose wiring, the routers' rules, the systemd units and
# the guides' commands against the programs.

RELEASE_DIR ?= $(OUT)/release

.PHONY: release
release: $(BIN)/nfpm ## Cross-compile op25b-agent for linux (amd64, arm64, armv7, mipsle), windows (amd64, arm64), darwin (amd64, arm64) and freebsd (amd64), package it as deb, rpm and apk (amd64, arm64, armv7) and OpenWrt ipk (mipsle, arm64, armv7), into out/release, with SHA256SUMS of all and its minisign signature (RELEASE_KEY: the signing key).
	GO=$(GO) NFPM=$(BIN)/nfpm deploy/release.sh $(VERSION) $(RELEASE_DIR)

.PHONY: compose-check
compose-check: $(BIN)/composecheck $(BIN)/staticcheck ## Validate docker-compose.yml as `docker compose config` does (schema, interpolation, references); test the checker.
	cd tools/composecheck && $(GO) vet ./... && $(BIN)/staticcheck ./... && $(GO) test -count=1 ./...
	$(BIN)/composecheck -q -profile '*' docker-compose.yml
	@echo "compose-check: docker-compose.yml is valid (every profile, default values)"

# composecheck has its own module (tools/composecheck), so compose-go never
# enters the main module's build.
$(BIN)/composecheck: tools/composecheck/main.go tools/composecheck/go.mod tools/composecheck/go.sum
	cd tools/composecheck && $(GO) build -trimpath -o $(BIN)/composecheck .

# The Grafana data source's Go backend: dashboard/ is its own module, so the
# root module's vet, staticcheck and tests do not reach it. Included by the
# root Makefile. Package patterns stay under ./pkg/...: ./... would walk
# the front end's node_modules.

DASHBOARD_DIST := $(CURDIR)/dashboard/dist

.PHONY: dashboard-backend
dashboard-backend: ## Cross-build the Grafana plugin's backend into dashboard/dist (gpx_op25b_linux_amd64, _arm64).
	@mkdir -p $(DASHBOARD_DIST)
	cd dashboard && for arch in amd64 arm64; do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '-s -w' -o $(DASHBOARD_DIST)/gpx_op25b_linux_$$arch ./pkg || exit 1; \
	done

.PHONY: dashboard-backend-test
dashboard-backend-test: $(BIN)/staticcheck dashboard-alone ## Vet, staticcheck and test the plugin's backend (golden frames, the executable over go-plugin) against real collectors (collector/collectortest/cmd/op25b-fixture).
	cd dashboard && $(GO) vet ./pkg/... && $(BIN)/staticcheck ./pkg/... && CGO_ENABLED=1 $(GO) test -race -count=1 ./pkg/...

# The plugin's module needs nothing of the repository around it
# (dashboard/README.md): its go.mod names no other module of ours, and a
# copy of dashboard/ alone, without the front end's node_modules, builds
# and vets with the sums in its go.sum.
.PHONY: dashboard-alone
dashboard-alone: ## Build and vet the plugin's backend from a copy of dashboard/ alone, outside the repository.
	@if grep -v '^module ' dashboard/go.mod | grep -q 'github.com/op25b/observatory'; then \
	  echo "dashboard-alone: dashboard/go.mod names a module of the repository; the plugin uses copies instead (make generate)"; exit 1; fi
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  tar -C dashboard --exclude=./node_modules --exclude=./dist -cf - . | tar -C "$$tmp" -xf - && \
	  cd "$$tmp" && GOWORK=off $(GO) build -mod=readonly ./pkg/... && GOWORK=off $(GO) vet -mod=readonly ./pkg/... && \
	  echo "dashboard-alone: the plugin's backend builds and vets from a copy of dashboard/ alone"

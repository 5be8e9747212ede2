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
dashboard-backend-test: $(BIN)/staticcheck ## Vet, staticcheck and test the plugin's backend (golden frames, the executable over go-plugin) against a real collector.
	cd dashboard && $(GO) vet ./pkg/... && $(BIN)/staticcheck ./pkg/... && CGO_ENABLED=1 $(GO) test -race -count=1 ./pkg/...

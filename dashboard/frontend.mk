# Front end of the Grafana plugin (dashboard/src) and the provisioned
# dashboards' checks, built with npm as @grafana/create-plugin lays it out.
# Included by the root Makefile; run from the repository root.

DASHBOARD_DIR   := $(CURDIR)/dashboard
NPM             ?= npm
NODE_MIN_MAJOR  := 20
# npm ci wipes node_modules, so the stamp inside it says the install matches
# the lock file: a second make skips the install.
DASHBOARD_NPM_STAMP := $(DASHBOARD_DIR)/node_modules/.npm-ci.stamp

.PHONY: dashboard-frontend
dashboard-frontend: $(DASHBOARD_NPM_STAMP) ## Build the plugin's front end into dashboard/dist (module.js, plugin.json, img, README).
	cd $(DASHBOARD_DIR) && $(NPM) run build
	@test -s $(DASHBOARD_DIR)/dist/module.js && test -s $(DASHBOARD_DIR)/dist/plugin.json

.PHONY: dashboard-frontend-test
dashboard-frontend-test: $(DASHBOARD_NPM_STAMP) ## Type-check and unit-test the plugin's front end and the provisioned dashboards.
	cd $(DASHBOARD_DIR) && $(NPM) run typecheck && $(NPM) run test:ci

$(DASHBOARD_NPM_STAMP): $(DASHBOARD_DIR)/package.json $(DASHBOARD_DIR)/package-lock.json | dashboard-node
	cd $(DASHBOARD_DIR) && $(NPM) ci --no-audit --no-fund
	@touch $@

.PHONY: dashboard-node
dashboard-node:
	@if ! command -v node >/dev/null || ! command -v $(NPM) >/dev/null; then \
	  echo "dashboard: node $(NODE_MIN_MAJOR) or later and npm are needed to build the plugin's front end."; \
	  echo "  Debian/Ubuntu: curl -fsSL https://deb.nodesource.com/setup_$(NODE_MIN_MAJOR).x | sudo bash - && sudo apt-get install -y nodejs"; \
	  echo "  or nvm: nvm install $(NODE_MIN_MAJOR)   (dashboard/.nvmrc pins the version)"; \
	  exit 1; \
	fi
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) < $(NODE_MIN_MAJOR) ? 1 : 0)' || { \
	  echo "dashboard: node $(NODE_MIN_MAJOR) or later is needed, found $$(node --version); see dashboard/.nvmrc"; exit 1; }

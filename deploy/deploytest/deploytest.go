// Package deploytest checks the deployment files against the repository
// and the programs they run: the Dockerfiles, read with BuildKit's parser
// (every path they copy exists and is sent in the build context; the
// sources copied cover every package the programs import), the
// provisioned Grafana dashboards (their PromQL, parsed with Prometheus's
// parser, selects metrics the collector registers), docker-compose.yml (loaded and validated by
// tools/composecheck, the compose-spec loader behind `docker compose
// config`; its build contexts, bind mounts, commands, environment and
// address plan), the router's nftables rules (applied in a network
// namespace and probed), the systemd units (hardening, systemd-analyze),
// make release's files and its deb, rpm, apk and ipk packages (opened with
// dpkg, rpm and tar; their init scripts run in dash and busybox sh) and
// the guides in docs/, whose every command line (parsed with
// mvdan.cc/sh) that runs one of our programs must use only flags the
// program has.
//
// The non-test code here is shared with deploy/deploytest/composerun, which
// runs the compose file's set-up steps against a real PostgreSQL.
package deploytest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// Module is the path of the repository's main module.
const Module = "github.com/op25b/observatory"

// Root returns the repository root: the nearest directory at or above the
// working directory whose go.mod declares Module.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module "+Module+"\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("deploytest: no go.mod of " + Module + " above the working directory")
		}
		dir = parent
	}
}

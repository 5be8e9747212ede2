#!/usr/bin/env bash
# make crosscheck: vet and compile, for every platform the agent is released
# for besides Linux, each package the agent links and its tests. No
# Windows, macOS or FreeBSD machine runs them here; this keeps them
# building, and errnos_test.go checks each platform's error table on Linux.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
targets=(windows/amd64 windows/arm64 darwin/amd64 darwin/arm64 freebsd/amd64)
mapfile -t pkgs < <("$GO" list -deps ./agent/cmd/op25b-agent | grep '^github.com/op25b/observatory/')
work=$(mktemp -d -t op25b-crosscheck.XXXXXX)
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
	export GOOS=${t%/*} GOARCH=${t#*/} CGO_ENABLED=0
	echo "crosscheck: $GOOS/$GOARCH: go vet and go test -c of ${#pkgs[@]} packages"
	"$GO" vet "${pkgs[@]}"
	"$GO" test -c -o "$work/" "${pkgs[@]}" >/dev/null
	"$GO" build -o "$work/" ./agent/cmd/op25b-agent
done
echo "crosscheck: the agent's packages and tests build for ${targets[*]}"

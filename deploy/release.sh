#!/usr/bin/env bash
# deploy/release.sh: cross-compile op25b-agent for the machines volunteers
# run it on, static (CGO_ENABLED=0, -trimpath, -s -w), with SHA256SUMS.
# `make release` runs it with the Makefile's VERSION into out/release.
#
#   deploy/release.sh VERSION [DIR]   build into DIR (default out/release)
#   deploy/release.sh --list VERSION  print the file names only
#
# Files: op25b-agent_VERSION_OS_ARCH (.exe on Windows) for
#   linux_amd64      x86-64 servers and PCs
#   linux_arm64      Raspberry Pi 3/4/5 with a 64-bit OS, ARM servers, newer routers
#   linux_armv7      32-bit ARM (GOARM=7): Raspberry Pi 2/3 with a 32-bit OS, many NAS and routers
#   linux_mipsle     little-endian MIPS with software floating point (GOMIPS=softfloat):
#                    OpenWrt routers such as the MT7621 and MT7628 ones
#   windows_amd64    Windows 10 and 11 on x86-64 PCs
#   windows_arm64    Windows 11 on ARM
#   darwin_amd64     macOS on Intel Macs
#   darwin_arm64     macOS on Apple silicon
#   freebsd_amd64    FreeBSD, pfSense and OPNsense on x86-64
# and SHA256SUMS (sha256sum -c SHA256SUMS checks them), its minisign
# signature SHA256SUMS.minisig and the public key op25b-release.pub
# (minisign -Vm SHA256SUMS -p op25b-release.pub checks it). The signing key
# is $RELEASE_KEY, by default ~/.config/op25b/release.key (outside out/,
# which make clean removes), made on first use (deploy/releasesign): keep
# it, and publish its public key.
set -euo pipefail

# label GOOS GOARCH extra-environment
platforms=(
	"linux_amd64 linux amd64"
	"linux_arm64 linux arm64"
	"linux_armv7 linux arm GOARM=7"
	"linux_mipsle linux mipsle GOMIPS=softfloat"
	"windows_amd64 windows amd64"
	"windows_arm64 windows arm64"
	"darwin_amd64 darwin amd64"
	"darwin_arm64 darwin arm64"
	"freebsd_amd64 freebsd amd64"
)

usage() {
	echo "usage: $0 VERSION [DIR] | $0 --list VERSION" >&2
	exit 2
}

list=false
if [[ ${1:-} == --list ]]; then
	list=true
	shift
fi
[[ $# -ge 1 && $# -le 2 ]] || usage
version=$1
if [[ ! $version =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]]; then
	echo "$0: version $version: use letters, digits and . _ + - only (it goes into file names)" >&2
	exit 2
fi

name() {
	case $1 in
	windows_*) echo "op25b-agent_${version}_$1.exe" ;;
	*) echo "op25b-agent_${version}_$1" ;;
	esac
}

if $list; then
	for p in "${platforms[@]}"; do
		read -r label _ <<<"$p"
		name "$label"
	done
	echo SHA256SUMS
	echo SHA256SUMS.minisig
	echo op25b-release.pub
	exit 0
fi

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${2:-$root/out/release}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
rm -f "$dir"/op25b-agent_* "$dir/SHA256SUMS" "$dir/SHA256SUMS.minisig" "$dir/op25b-release.pub"

cd "$root"
for p in "${platforms[@]}"; do
	read -r label goos goarch extra <<<"$p"
	echo "building $(name "$label") (GOOS=$goos GOARCH=$goarch${extra:+ $extra})"
	env CGO_ENABLED=0 GOOS="$goos" GOARCH="$goarch" ${extra:+"$extra"} \
		"${GO:-go}" build -trimpath -ldflags "-s -w -X main.version=$version" \
		-o "$dir/$(name "$label")" ./agent/cmd/op25b-agent
done

cd "$dir"
sha256sum op25b-agent_"$version"_* >SHA256SUMS
sha256sum --quiet -c SHA256SUMS
cd "$root"
"${GO:-go}" run ./deploy/releasesign --key "${RELEASE_KEY:-${XDG_CONFIG_HOME:-$HOME/.config}/op25b/release.key}" --version "$version" "$dir"
cd "$dir"
echo
echo "$dir:"
for p in "${platforms[@]}"; do
	read -r label _ <<<"$p"
	f=$(name "$label")
	bytes=$(stat -c %s "$f")
	awk -v f="$f" -v b="$bytes" 'BEGIN { printf "  %-46s %10d bytes  %5.1f MiB\n", f, b, b / 1048576 }'
done
echo "  SHA256SUMS"
echo "  SHA256SUMS.minisig (check: minisign -Vm SHA256SUMS -p op25b-release.pub)"
echo "  op25b-release.pub"

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
# then, from the linux binaries, packages for Linux distributions and
# OpenWrt routers (nfpm, deploy/nfpm/op25b-agent.yaml; $NFPM, by default
# bin/nfpm, which `make tools` installs), named as each format does:
#   op25b-agent_PKGVERSION_ARCH.deb     Debian, Ubuntu: amd64, arm64, armhf
#   op25b-agent-PKGVERSION-1.ARCH.rpm   Fedora, RHEL: x86_64, aarch64, armv7hl
#   op25b-agent_PKGVERSION_ARCH.apk     Alpine: x86_64, aarch64, armv7
#   op25b-agent_PKGVERSION_ARCH.ipk     OpenWrt: mipsel_24kc (MT7621, MT7628),
#                                       aarch64_cortex-a53 (MT7622, MT798x, IPQ807x),
#                                       arm_cortex-a7_neon-vfpv4 (IPQ40xx, MT7623)
# (PKGVERSION: see pkgversion below), and SHA256SUMS of all of them
# (sha256sum -c SHA256SUMS checks them), its minisign
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

# format, linux binary, the architecture in the format's words. OpenWrt
# names a CPU, not only a family: one ipk per family, for its commonest
# routers (docs/volunteer.md says how to install it on the others).
packages=(
	"deb linux_amd64 amd64"
	"rpm linux_amd64 x86_64"
	"apk linux_amd64 x86_64"
	"deb linux_arm64 arm64"
	"rpm linux_arm64 aarch64"
	"apk linux_arm64 aarch64"
	"ipk linux_arm64 aarch64_cortex-a53"
	"deb linux_armv7 armhf"
	"rpm linux_armv7 armv7hl"
	"apk linux_armv7 armv7"
	"ipk linux_armv7 arm_cortex-a7_neon-vfpv4"
	"ipk linux_mipsle mipsel_24kc"
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

# The packages' version. Package managers compare versions and take fewer
# characters than file names: a tag vX.Y.Z is X.Y.Z; any other version is
# a build before a release, X.Y.Z~REST (0.0.0~VERSION without a leading
# X.Y.Z), with characters other than letters, digits, dots and ~ made dots:
# v1.2.3-rc.1 is 1.2.3~rc.1, v1.2.3-4-gabcdef0 is 1.2.3~4.gabcdef0.
pkgversion=0.0.0~$version
if [[ $version =~ ^v?([0-9]+\.[0-9]+\.[0-9]+)$ ]]; then
	pkgversion=${BASH_REMATCH[1]}
elif [[ $version =~ ^v?([0-9]+\.[0-9]+\.[0-9]+)[-+](.+)$ ]]; then
	pkgversion=${BASH_REMATCH[1]}~${BASH_REMATCH[2]}
fi
pkgversion=${pkgversion//[^A-Za-z0-9.~]/.}

# package_name FORMAT ARCH: nfpm's own name for the package (rpm adds its
# release, 1).
package_name() {
	case $1 in
	rpm) echo "op25b-agent-$pkgversion-1.$2.rpm" ;;
	*) echo "op25b-agent_${pkgversion}_$2.$1" ;;
	esac
}

# files: every file made but the checksums, the signature and the key.
files() {
	for p in "${platforms[@]}"; do
		read -r label _ <<<"$p"
		name "$label"
	done
	for p in "${packages[@]}"; do
		read -r format _ arch <<<"$p"
		package_name "$format" "$arch"
	done
}

if $list; then
	files
	echo SHA256SUMS
	echo SHA256SUMS.minisig
	echo op25b-release.pub
	exit 0
fi

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${2:-$root/out/release}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
rm -f "$dir"/op25b-agent[-_]* "$dir/SHA256SUMS" "$dir/SHA256SUMS.minisig" "$dir/op25b-release.pub"

cd "$root"
nfpm=${NFPM:-$root/bin/nfpm}
if [[ ! -x $nfpm ]]; then
	echo "$0: no nfpm at $nfpm: run make tools (or set NFPM)" >&2
	exit 1
fi
for p in "${platforms[@]}"; do
	read -r label goos goarch extra <<<"$p"
	echo "building $(name "$label") (GOOS=$goos GOARCH=$goarch${extra:+ $extra})"
	env CGO_ENABLED=0 GOOS="$goos" GOARCH="$goarch" ${extra:+"$extra"} \
		"${GO:-go}" build -trimpath -ldflags "-s -w -X main.version=$version" \
		-o "$dir/$(name "$label")" ./agent/cmd/op25b-agent
done

# The packages put the binary in /usr/bin, and their systemd unit runs it
# from there.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
sed 's|/usr/local/bin/op25b-agent|/usr/bin/op25b-agent|g' deploy/systemd/op25b-agent.service >"$stage/op25b-agent.service"
for p in "${packages[@]}"; do
	read -r format label arch <<<"$p"
	f=$(package_name "$format" "$arch")
	echo "packaging $f"
	if ! out=$(RELEASE_PKG_VERSION=$pkgversion RELEASE_PKG_ARCH=$arch RELEASE_PKG_BINARY="$dir/$(name "$label")" \
		RELEASE_PKG_UNIT="$stage/op25b-agent.service" "$nfpm" package -f deploy/nfpm/op25b-agent.yaml -p "$format" -t "$dir/$f" 2>&1); then
		echo "$out" >&2
		exit 1
	fi
done

cd "$dir"
files | xargs sha256sum >SHA256SUMS
sha256sum --quiet -c SHA256SUMS
cd "$root"
"${GO:-go}" run ./deploy/releasesign --key "${RELEASE_KEY:-${XDG_CONFIG_HOME:-$HOME/.config}/op25b/release.key}" --version "$version" "$dir"
cd "$dir"
echo
echo "$dir:"
files | while read -r f; do
	bytes=$(stat -c %s "$f")
	awk -v f="$f" -v b="$bytes" 'BEGIN { printf "  %-56s %10d bytes  %5.1f MiB\n", f, b, b / 1048576 }'
done
echo "  SHA256SUMS"
echo "  SHA256SUMS.minisig (check: minisign -Vm SHA256SUMS -p op25b-release.pub)"
echo "  op25b-release.pub"

#!/usr/bin/env bash
# make demo: the measurement end to end on this machine.
#  1. a reference MTA on loopback (unprivileged ports) and one `op25b-agent
#     check` round against it, printed as the volunteer sees it;
#  2. as root, the emulated-ISP testbed: every scenario's verdicts.
set -euo pipefail
out=${1:?usage: demo.sh OUT_DIR}
work=$(mktemp -d -t op25b-demo.XXXXXX)
refmta_pid=""
cleanup() {
  [ -n "$refmta_pid" ] && kill "$refmta_pid" 2>/dev/null && wait "$refmta_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== 1. A reference MTA on loopback and one check round"
"$out/op25b-refmta" --listen 127.0.0.1 --listen ::1 --hostname refmta.demo.invalid \
  --ports 2525:smtp,5870:submission,4650:smtps --control-port 4430 \
  --http-listen 127.0.0.1:8025 --state-dir "$work/refmta" --log-level warn &
refmta_pid=$!
for _ in $(seq 1 100); do [ -s "$work/refmta/identity.json" ] && break; sleep 0.1; done
if [ ! -s "$work/refmta/identity.json" ]; then echo "demo: the reference MTA did not start" >&2; exit 1; fi
url=http://127.0.0.1:8025/.well-known/op25b-refmta.json
echo "reference MTA identity, published at $url:"
sed 's/^/  /' "$work/refmta/identity.json"
echo
echo "\$ op25b-agent check --refmta $url"
"$out/op25b-agent" check --refmta "$url" --timeout 5s
echo

echo "== 2. The emulated-ISP testbed"
if [ "$(id -u)" != 0 ]; then
  echo "skipped: the testbed builds network namespaces and needs root (sudo make demo)."
  exit 0
fi
make --no-print-directory testdeps
"$out/op25b-testbed" run --bin "$out" --report "$PWD/testbed-report.json"

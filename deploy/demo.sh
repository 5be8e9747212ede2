#!/usr/bin/env bash
# make demo: the system end to end on this machine.
#  1. a reference MTA on loopback (unprivileged ports) and one `op25b-agent
#     check` round against it, printed as the volunteer sees it;
#  2. the pipeline: the collector with its embedded PostgreSQL, a reference
#     MTA uploading its sightings, and agent daemons enrolled with tokens,
#     measuring every 30 s; the per-ASN summary and the published policy
#     classes (`op25b asns`) are printed as results arrive, and the web page
#     is at http://127.0.0.1:9090/, until Ctrl-C (or DEMO_SECONDS seconds). As root the agents run
#     inside the emulated ISPs of the testbed, each ISP its own ASN,
#     after the testbed has checked every scenario's verdicts; otherwise
#     three agents run on loopback. A volunteer's one-off `op25b-agent
#     check --submit` round is contributed too, and its page linked.
set -euo pipefail
out=${1:?usage: demo.sh OUT_DIR}
work=$(mktemp -d -t op25b-demo.XXXXXX)
refmta_pid=""
pids=()
cleanup() {
  [ -n "$refmta_pid" ] && kill "$refmta_pid" 2>/dev/null && wait "$refmta_pid" 2>/dev/null || true
  # Agents and the reference MTA first, then the collector, which stops its
  # PostgreSQL on SIGTERM.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[$i]}" 2>/dev/null || true; wait "${pids[$i]}" 2>/dev/null || true; done
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

kill "$refmta_pid"; wait "$refmta_pid" 2>/dev/null || true; refmta_pid=""

if [ "$(id -u)" = 0 ]; then
  echo "== 2. The emulated-ISP testbed, then the pipeline with an agent behind every ISP"
  make --no-print-directory testdeps
  "$out/op25b-testbed" run --bin "$out" --report "$PWD/testbed-report.json" --pipeline --hold "${DEMO_SECONDS:-0}s" --log-level warn
  exit 0
fi

echo "== 2. The pipeline on loopback (not root: no testbed): collector + embedded PostgreSQL, a reference MTA, three agents"
col="$work/collector"
# The reference MTA's identity document feeds the collector's schedule; the
# demo's ASN table maps loopback to two documentation ASNs.
"$out/op25b-refmta" identity --state-dir "$work/refmta3" --listen 127.0.0.1 --listen ::1 --hostname refmta.demo.invalid \
  --ports 2526:smtp,5871:submission,4651:smtps --control-port 4431 --log-level warn > "$work/refmta3.json"
printf '127.0.0.0\t127.255.255.255\t64500\tZZ\tDEMO-LOOPBACK-V4\n::1\t::1\t64501\tZZ\tDEMO-LOOPBACK-V6\n' > "$work/demo.ip2asn"
"$out/op25b-collector" --data-dir "$col" --listen 127.0.0.1:8443 --http-listen 127.0.0.1:9090 \
  --refmta "$work/refmta3.json" --asn "$work/demo.ip2asn" --interval 30s --jitter 10s --probe-timeout 5s --log-level warn \
  --class-min-prefixes 1 --refresh-every 10s --windows-every 10s &
pids+=($!)
for _ in $(seq 1 300); do (echo > /dev/tcp/127.0.0.1/8443) 2>/dev/null && break; sleep 0.2; done
ca="$col/tls/ca.pem"
echo "collector: gRPC 127.0.0.1:8443 (CA $ca), PostgreSQL under $col/postgres"
echo "web page http://127.0.0.1:9090/, dataset API http://127.0.0.1:9090/api/v1/asns, metrics http://127.0.0.1:9090/metrics"
rtoken=$("$out/op25b-collector" token create --data-dir "$col" --kind refmta --label "demo reference MTA" --log-level warn 2>/dev/null)
"$out/op25b-refmta" --state-dir "$work/refmta3" --listen 127.0.0.1 --listen ::1 --hostname refmta.demo.invalid \
  --ports 2526:smtp,5871:submission,4651:smtps --control-port 4431 \
  --collector 127.0.0.1:8443 --collector-ca "$ca" --enroll "$rtoken" --log-level warn &
pids+=($!)
atoken=$("$out/op25b-collector" token create --data-dir "$col" --kind agent --uses 3 --label "demo agents" --log-level warn 2>/dev/null)
for n in 1 2 3; do
  "$out/op25b-agent" run --collector 127.0.0.1:8443 --collector-ca "$ca" --enroll "$atoken" \
    --state-dir "$work/agent$n" --label "demo agent $n" --log-level warn &
  pids+=($!)
done
echo "3 agents enrolled and measuring every 30 s; the summary follows every 20 s. Ctrl-C stops everything."
echo
echo "A volunteer's one-off contribution, without enrolling:"
echo "\$ op25b-agent check --submit http://127.0.0.1:9090"
"$out/op25b-agent" check --submit http://127.0.0.1:9090 --timeout 5s || true
end=$(( $(date +%s) + ${DEMO_SECONDS:-999999999} ))
while [ "$(date +%s)" -lt "$end" ]; do
  sleep 20
  echo; echo "--- $(date -u +%H:%M:%S) results of the last hour, per ASN, family and port"
  "$out/op25b-collector" summary --data-dir "$col" --since 1h --log-level warn || true
  echo; echo "\$ op25b asns --collector http://127.0.0.1:9090   (policy classes, refreshed every 10 s)"
  "$out/op25b" asns --collector http://127.0.0.1:9090 || true
done

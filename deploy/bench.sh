#!/usr/bin/env bash
# make bench: measure, and rewrite BENCHMARKS.md with each figure next to a
# limit measured in the same run on the same machine.
set -euo pipefail
out=${1:?usage: bench.sh OUT_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d -t op25b-bench.XXXXXX)
refmta_pid=""
cleanup() { [ -n "$refmta_pid" ] && kill "$refmta_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$root"
go build -o "$work/maxrss" ./deploy/bench/maxrss
# metric FILE BENCHMARK UNIT: the median of UNIT over the runs of BENCHMARK
# (named with or without its -GOMAXPROCS suffix) in go test -bench output.
metric() {
  awk -v b="$2" -v m="$3" '$1 == b || index($1, b "-") == 1 && $1 ~ /-[0-9]+$/ {for (i = 1; i <= NF; i++) if ($i == m) print $(i-1)}' "$1" |
    sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'
}

echo "bench: agent binary size" >&2
agent_size=$(stat -c %s "$out/op25b-agent")
cat > "$work/hello.go" <<'GO'
package main

import "fmt"

func main() { fmt.Println("hello") }
GO
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$work/hello" "$work/hello.go"
hello_size=$(stat -c %s "$work/hello")

echo "bench: make release (the agent for every platform)" >&2
RELEASE_KEY="$work/release.key" deploy/release.sh bench "$work/release" >&2
# release_row LABEL GOOS GOARCH EXTRA-ENV NOTE: the row of one release
# binary, next to hello-world built the same way for its platform.
release_row() {
	local f="$work/release/op25b-agent_bench_$1" size hello
	[ -f "$f" ] || f="$f.exe"
	size=$(stat -c %s "$f")
	env CGO_ENABLED=0 GOOS="$2" GOARCH="$3" ${4:+"$4"} go build -trimpath -ldflags '-s -w' -o "$work/hello_$1" "$work/hello.go"
	hello=$(stat -c %s "$work/hello_$1")
	echo "| release binary for $2/$3$5 | $(mib "$size") | hello-world built the same way: $(mib "$hello") | $(ratio "$size" "$hello") | at most 15 MiB: $(ratio "$size" 15728640) of the goal |"
}
release_rows() {
	release_row linux_amd64 linux amd64 "" " (\`make release\`)"
	release_row linux_arm64 linux arm64 "" ""
	release_row linux_armv7 linux arm GOARM=7 " (GOARM=7)"
	release_row linux_mipsle linux mipsle GOMIPS=softfloat " (GOMIPS=softfloat, home routers)"
	release_row windows_amd64 windows amd64 "" ""
	release_row windows_arm64 windows arm64 "" ""
	release_row darwin_amd64 darwin amd64 "" ""
	release_row darwin_arm64 darwin arm64 "" ""
	release_row freebsd_amd64 freebsd amd64 "" ""
}

echo "bench: peak RSS of a check round" >&2
"$out/op25b-refmta" --listen 127.0.0.1 --listen ::1 --ports 2525:smtp,5870:submission,4650:smtps \
  --control-port 4430 --state-dir "$work/refmta" --log-level warn &
refmta_pid=$!
for _ in $(seq 1 100); do [ -s "$work/refmta/identity.json" ] && break; sleep 0.1; done
rss() { "$work/maxrss" -- "$@" 2>&1 >/dev/null | awk '/^maxrss_kib/ {print $2}'; }
check_rss=0
for _ in 1 2 3; do # the worst of three rounds
  r=$(rss "$out/op25b-agent" check --refmta "$work/refmta/identity.json" --quiet --format json)
  [ "$r" -gt "$check_rss" ] && check_rss=$r
done
floor_rss=$(rss "$out/op25b-agent" version)
kill "$refmta_pid"; wait "$refmta_pid" 2>/dev/null || true; refmta_pid=""

echo "bench: reference MTA sessions/s (go test -bench, 5 runs each)" >&2
go test -run '^$' -bench 'AcceptClose|Session' -benchtime 2s -count 5 ./refmta/smtpd | tee "$work/smtpd.txt" >&2
accept=$(metric "$work/smtpd.txt" BenchmarkAcceptClose sessions/s)
smtp=$(metric "$work/smtpd.txt" BenchmarkSessionSMTP sessions/s)
smtps=$(metric "$work/smtpd.txt" BenchmarkSessionSMTPS sessions/s)

echo "bench: ingest over gRPC vs raw COPY (go test -bench, 3 runs each)" >&2
go test -run '^$' -bench 'Ingest' -benchtime 3s -count 3 ./deploy/e2e | tee "$work/ingest.txt" >&2
ingest=$(metric "$work/ingest.txt" BenchmarkIngestGRPC/agents=32 results/s)
ingest128=$(metric "$work/ingest.txt" BenchmarkIngestGRPC/agents=128 results/s)
rawcopy=$(metric "$work/ingest.txt" BenchmarkIngestRawCopy results/s)
rawbare=$(metric "$work/ingest.txt" BenchmarkIngestRawCopyUnattributed results/s)
rawthree=$(metric "$work/ingest.txt" BenchmarkIngestRawCopyThreeRefMTAs results/s)
ackp99=$(metric "$work/ingest.txt" BenchmarkIngestGRPC/agents=32 ack-p99-ms)
ackp50=$(metric "$work/ingest.txt" BenchmarkIngestGRPC/agents=32 ack-p50-ms)
ack128p99=$(metric "$work/ingest.txt" BenchmarkIngestGRPC/agents=128 ack-p99-ms)
ack128p50=$(metric "$work/ingest.txt" BenchmarkIngestGRPC/agents=128 ack-p50-ms)
copy200=$(metric "$work/ingest.txt" BenchmarkIngestLimitCopy/rows=200 results/s)
copy10k=$(metric "$work/ingest.txt" BenchmarkIngestLimitCopy/rows=10000 results/s)
idem200=$(metric "$work/ingest.txt" BenchmarkIngestLimitIdempotent/rows=200 results/s)
idem10k=$(metric "$work/ingest.txt" BenchmarkIngestLimitIdempotent/rows=10000 results/s)
pg_ingest128=$(metric "$work/ingest.txt" BenchmarkIngestGRPC/agents=128 pg-cpu-us/result)
pg_idem10k=$(metric "$work/ingest.txt" BenchmarkIngestLimitIdempotent/rows=10000 pg-cpu-us/result)
pg_rawcopy=$(metric "$work/ingest.txt" BenchmarkIngestRawCopy pg-cpu-us/result)
rawnoidx=$(metric "$work/ingest.txt" BenchmarkIngestRawCopyNoExportIndex results/s)
pg_rawnoidx=$(metric "$work/ingest.txt" BenchmarkIngestRawCopyNoExportIndex pg-cpu-us/result)

echo "bench: webhook delivery delay (go test -bench, 3 runs of 500 events)" >&2
go test -run '^$' -bench 'Delivery' -benchtime 500x -count 3 ./collector/webhook | tee "$work/webhook.txt" >&2
hook50=$(metric "$work/webhook.txt" BenchmarkDelivery p50-ms)
hook99=$(metric "$work/webhook.txt" BenchmarkDelivery p99-ms)
hookpost=$(metric "$work/webhook.txt" BenchmarkDelivery post-p50-ms)

echo "bench: live stream: ingest with and without announcements (3 runs), fan-out at 2,000 results/s" >&2
go test -run '^$' -bench 'Ingest' -benchtime 60000x -count 3 ./collector/stream | tee "$work/stream.txt" >&2
go test -run '^$' -bench 'Fanout' -benchtime 1x -timeout 20m ./collector/stream | tee -a "$work/stream.txt" >&2
notify_off=$(metric "$work/stream.txt" BenchmarkIngest/notify=false results/s)
notify_on=$(metric "$work/stream.txt" BenchmarkIngest/notify=true results/s)
# fanout SUBS UNIT: one figure of the fan-out run with SUBS subscribers.
fanout() { metric "$work/stream.txt" "BenchmarkFanout/subs=$1" "$2"; }
fanout_rows() {
	for n in 1 100 250 500; do
		echo "| live stream at 2,000 results/s, $n SSE subscribers on loopback (readers in the same process): delay from commit to subscriber p50 / p99; $(fanout "$n" dropped) dropped, $(fanout "$n" delivered) of the events delivered | $(fanout "$n" p50_ms) / $(fanout "$n" p99_ms) ms | ingest kept $(fanout "$n" results/s) of 2,000 results/s, slowest batch $(fanout "$n" slowest_insert_ms) ms | | |"
	done
}

echo "bench: ASN lookups per core (go test -bench -cpu 1, 3 runs)" >&2
go test -run '^$' -bench 'Lookup' -cpu 1 -count 3 ./collector/asn | tee "$work/asn.txt" >&2
lpm4=$(metric "$work/asn.txt" BenchmarkLookup/IPv4 lookups/s)
lpm6=$(metric "$work/asn.txt" BenchmarkLookup/IPv6 lookups/s)
map4=$(metric "$work/asn.txt" BenchmarkMapLookup/IPv4 lookups/s)
map6=$(metric "$work/asn.txt" BenchmarkMapLookup/IPv6 lookups/s)

echo "bench: collector RSS with 10,000 agents connected" >&2
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true # 10,000 connections need as many descriptors
cdir="$work/collector"
"$out/op25b-collector" --data-dir "$cdir" --listen 127.0.0.1:18443 --http-listen 127.0.0.1:19090 \
  --rate 100000 --burst 100000 --grpc-max-conns-per-addr 0 --log-level warn & # every agent is on 127.0.0.1
cpid=$!
for _ in $(seq 1 300); do (echo > /dev/tcp/127.0.0.1/18443) 2>/dev/null && break; sleep 0.2; done
atok=$("$out/op25b-collector" token create --data-dir "$cdir" --kind agent --uses 10000 --label bench 2>/dev/null)
idle_rss=$(awk '/^VmRSS/ {print $2}' /proc/$cpid/status)
go build -o "$work/agents" ./deploy/bench/agents
mkfifo "$work/hold"
"$work/agents" --collector 127.0.0.1:18443 --ca "$cdir/tls/ca.pem" --token "$atok" --agents 10000 < "$work/hold" > "$work/agents.out" &
apid=$!
exec 9> "$work/hold" # the load generator holds its agents until this closes
for _ in $(seq 1 600); do grep -q '^connected' "$work/agents.out" && break; sleep 0.5; done
agents_line=$(cat "$work/agents.out")
agents_rss=$(awk '/^VmRSS/ {print $2}' /proc/$cpid/status)
exec 9>&-
wait "$apid" || true
kill "$cpid"; wait "$cpid" || true
echo "bench: $agents_line; collector RSS idle $idle_rss KiB, with agents $agents_rss KiB" >&2

echo "bench: collector RSS and CPU, 100,000 agents on a 15-minute schedule (3 minutes of it)" >&2
# Each agent comes by at its own offset within the interval, as real
# agents do: a new connection, GetSchedule, a round of 18 results on one
# stream, then 30 s idle before the connection closes. 3 minutes of the
# interval is the steady state: 100,000/15 min = 111 agents a second.
sdir="$work/collector-schedule"
"$out/op25b-collector" --data-dir "$sdir" --listen 127.0.0.1:18444 --http-listen 127.0.0.1:19091 \
  --rate 100000 --burst 100000 --grpc-max-conns-per-addr 0 --log-level warn &
cpid=$!
for _ in $(seq 1 300); do (echo > /dev/tcp/127.0.0.1/18444) 2>/dev/null && break; sleep 0.2; done
stok=$("$out/op25b-collector" token create --data-dir "$sdir" --kind agent --uses 100000 --label bench 2>/dev/null)
"$work/agents" --collector 127.0.0.1:18444 --ca "$sdir/tls/ca.pem" --token "$stok" --agents 100000 \
  --schedule-interval 15m --run 3m --collector-pid "$cpid" | tee "$work/schedule.txt" >&2
kill "$cpid"; wait "$cpid" || true
sch() { awk -v k="$1" '$1 == k {print $2}' "$work/schedule.txt"; }

echo "bench: dataset queries over 10M results" >&2
go build -o "$work/dataset" ./deploy/bench/dataset
"$work/dataset" --results 10000000 --asns 5000 --agents 20000 --days 30 | tee "$work/dataset.txt" >&2
ds() { awk -v k="$1" '$1 == k {print $2}' "$work/dataset.txt"; }
# dratio: a ratio that keeps two significant digits when far below 1.
dratio() { awk -v a="$1" -v b="$2" 'BEGIN {r = a/b; printf (r < 0.01 ? "%.2g" : "%.2f"), r}'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
mib() { awk -v a="$1" 'BEGIN {printf "%.1f MiB", a/1048576}'; }
kmib() { awk -v a="$1" 'BEGIN {printf "%.1f MiB", a/1024}'; }
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
# The Validity section is make validity's (root, half an hour): keep it.
validity=$([ -f BENCHMARKS.md ] && deploy/validity.sh section < BENCHMARKS.md || true)
# So is the Chaos section, make chaos's (root, about 20 minutes).
chaos=$([ -f BENCHMARKS.md ] && deploy/chaos.sh section < BENCHMARKS.md || true)

cat > BENCHMARKS.md <<MD
# Benchmarks

Written by \`make bench\` (deploy/bench.sh) on $(date -u +%Y-%m-%d), $(nproc) cores ($cpu),
$(go version | cut -d' ' -f3). Every figure stands next to a limit measured in the
same run on the same machine; goals are from the issues.

## Agent

| what | measured | limit in the same run | ratio | goal |
|---|---|---|---|---|
| static agent binary (CGO_ENABLED=0, -s -w) | $(mib "$agent_size") | hello-world built the same way: $(mib "$hello_size") | $(ratio "$agent_size" "$hello_size") | at most 15 MiB: $(ratio "$agent_size" 15728640) of the goal |
$(release_rows)
| peak RSS of a full \`check\` round (worst of 3; 1 reference MTA, IPv4 + IPv6, 3 ports + control) | $(kmib "$check_rss") | the same binary running \`version\`: $(kmib "$floor_rss") | $(ratio "$check_rss" "$floor_rss") | at most 20 MiB: $(ratio "$check_rss" 20480) of the goal |

## Reference MTA

Sessions per second on loopback, median of 5 runs of \`go test -bench\` with
GOMAXPROCS=$(nproc) parallel clients on the same machine, against a plain TCP
server that accepts and closes (the limit of the kernel and Go's net package).

| session | sessions/s | accept-and-close sessions/s | ratio |
|---|---|---|---|
| port 25: banner, EHLO with nonce, signed statement, QUIT | $smtp | $accept | $(ratio "$smtp" "$accept") |
| port 465: TLS handshake (Ed25519), banner, EHLO, statement, QUIT | $smtps | $accept | $(ratio "$smtps" "$accept") |

## Collector

Ingest: agents, each its own connection, enrolled credential and stream,
send batches of 200 results over gRPC with TLS into the collector
(validation, attribution to an ASN, \`COPY\` into a staging table kept per
connection, \`INSERT ... ON CONFLICT DO NOTHING\` into the partitioned
results table with the dataset's per-agent-day tallies in the same
statement, the batches that wait merged into one transaction (group
commit), acknowledgement after its COMMIT), each waiting for its
acknowledgement before it sends again: 32 agents, and 128, as when many
agents drain their spools after an outage (the batches waiting then fill
merged transactions of up to 10,000 rows, the limit's size). Each agent's
batch is encoded once before the timed loop and only its results' ids are
rewritten before each send, so the load generator, which in production
runs on the agents' machines, takes next to none of the collector's CPU
(as the limit's writers prepare their rows before theirs). The limit is the store-free
harness (\`BenchmarkIngestLimit*\` in deploy/e2e): exactly the rows the
store writes (\`store.CopyRows\`), made before the timed loop, written by 32
writers by plain \`COPY\` into an unindexed table, and by the cheapest
idempotent path (\`COPY\` into a temporary table kept per connection, then
\`INSERT ... ON CONFLICT DO NOTHING\` into a partitioned table with the
primary key only), in transactions of 200 rows and of 10,000. All against
the test cluster (fsync off), median of 3 runs.

| what | measured | limit in the same run | ratio | goal |
|---|---|---|---|---|
| end-to-end ingest, 128 agents | $ingest128 results/s | idempotent \`COPY\`, 10,000 rows per transaction: $idem10k results/s | $(ratio "$ingest128" "$idem10k") | at least 0.7 |
| acknowledgement latency of a batch, end to end, 128 agents, p99 (p50) | $ack128p99 ms ($ack128p50 ms) | | | |
| end-to-end ingest, 32 agents | $ingest results/s | idempotent \`COPY\`, 10,000 rows per transaction: $idem10k results/s | $(ratio "$ingest" "$idem10k") | |
| acknowledgement latency of a batch, end to end, 32 agents, p99 (p50) | $ackp99 ms ($ackp50 ms) | | | |
| PostgreSQL's CPU per result (the postmaster and all its processes), end to end, 128 agents | $pg_ingest128 µs | idempotent \`COPY\`, 10,000 rows per transaction: $pg_idem10k µs | $(dratio "$pg_ingest128" "$pg_idem10k") | |
| the store alone, PostgreSQL's CPU per result | $pg_rawcopy µs | the same rows without the index of exports by ASN (\`BenchmarkIngestRawCopyNoExportIndex\`): $pg_rawnoidx µs, $rawnoidx results/s | $(dratio "$pg_rawcopy" "$pg_rawnoidx") | |
| idempotent \`COPY\`, 200 rows per transaction (an agent's batch, unmerged) | $idem200 results/s | the same, 10,000 rows: $idem10k results/s | $(ratio "$idem200" "$idem10k") | |
| idempotent \`COPY\`, 10,000 rows per transaction | $idem10k results/s | plain \`COPY\` into an unindexed table, 10,000 rows: $copy10k results/s (200 rows: $copy200) | $(ratio "$idem10k" "$copy10k") | |
| the store alone (\`InsertResults\`, 32 writers of 200-row batches, group commit) | $rawcopy results/s | idempotent \`COPY\`, 10,000 rows: $idem10k results/s | $(ratio "$rawcopy" "$idem10k") | |
| end-to-end ingest, 32 agents | $ingest results/s | the store alone: $rawcopy results/s | $(ratio "$ingest" "$rawcopy") | |
| the store with the live stream's announcements (\`serve --stream\`, \`pg_notify\` of the public columns in the ingest transaction; 8 writers of 200-row batches, median of 3) | $notify_on results/s | the same without: $notify_off results/s | $(ratio "$notify_on" "$notify_off") | |
$(fanout_rows)
| webhook delivery delay, from the commit of a change event (its row and the notification, as a refresh logs it) to the receiver holding the signed POST, one event at a time on loopback, p50 / p99 (median of 3 runs of 500) | $hook50 / $hook99 ms | a plain POST of a delivery's size to the same receiver: $hookpost ms | $(dratio "$hook50" "$hookpost") | |
| the store's insert with the dataset's tallies (ASN attributed) | $rawcopy results/s | the same rows without an ASN (no tallies): $rawbare results/s | $(ratio "$rawcopy" "$rawbare") | |
| the same, as rounds of three reference MTAs in three networks, compared across them (docs/dataset.md, "Faults near a reference MTA") | $rawthree results/s | the same rows, one network (no comparison): $rawcopy results/s | $(ratio "$rawthree" "$rawcopy") | |
| collector RSS with 10,000 agents connected (each enrolled, on its own TLS connection, with an open upload stream that delivered a batch: $agents_line) | $(kmib "$agents_rss") | the same collector idle: $(kmib "$idle_rss") | $(ratio "$agents_rss" "$idle_rss") ($(awk -v a="$agents_rss" -v b="$idle_rss" 'BEGIN {printf "%.0f", (a-b)/10000}') KiB per agent) | |
| collector RSS, 100,000 agents on a 15-minute schedule: $(sch rounds_done) came by in $(awk -v s="$(sch run_s)" 'BEGIN {printf "%.0f", s/60}') minutes of it (each on a new connection: the schedule, a round of 18 results on one stream, 30 s idle, close; $(sch rounds_failed) failed), peak $(sch peak_connections) connections open; enrolled in $(sch enroll_s) s | peak $(kmib "$(sch collector_rss_peak_kib)") | the same collector idle: $(kmib "$(sch collector_rss_idle_kib)") | $(ratio "$(sch collector_rss_peak_kib)" "$(sch collector_rss_idle_kib)") | under 2 GiB: $(ratio "$(sch collector_rss_peak_kib)" 2097152) of the goal |
| collector CPU time over those minutes | $(sch collector_cpu_share) of one core | $(nproc) cores | | |
| collector RSS with the 100,000 agents enrolled, none connected | $(kmib "$(sch collector_rss_enrolled_kib)") | the same collector idle: $(kmib "$(sch collector_rss_idle_kib)") | $(ratio "$(sch collector_rss_enrolled_kib)" "$(sch collector_rss_idle_kib)") ($(awk -v a="$(sch collector_rss_enrolled_kib)" -v b="$(sch collector_rss_idle_kib)" 'BEGIN {printf "%.2f", (a-b)/100000}') KiB per agent) | |

ASN lookups per second on one core (GOMAXPROCS=1), longest-prefix match in
a table of 1M IPv4 and 200k IPv6 prefixes, against an exact-match Go map
holding every looked-up address (the cost of one hash probe), median of 3:

| family | LPM lookups/s | map lookups/s | ratio |
|---|---|---|---|
| IPv4 | $lpm4 | $map4 | $(ratio "$lpm4" "$map4") |
| IPv6 | $lpm6 | $map6 | $(ratio "$lpm6" "$map6") |

## Dataset

A synthetic world of $(ds world_results) results from $(ds world_agents) agents ($(ds world_agents_ipv6) also on IPv6) in
$(ds world_asns) ASNs of 60 countries over $(ds world_days) days: agents per ASN Zipf-like (the largest has
$(ds world_largest_asn_agents), most 1 to 5) in $(ds world_prefixes_ipv4) /24s and $(ds world_prefixes_ipv6) /48s, policies mixed (40% OP25B, 30%
open, 10% each intercepting, all blocked, mixed; 5% change on some day) with a
few % noise. It is loaded by \`COPY\` into a private PostgreSQL (the test
cluster's settings with shared_buffers 1GB) at $(ds load_rows_per_s) rows/s, the rollups are rebuilt,
and the dataset API answers over real HTTP on loopback. Each figure stands
next to the same answer computed by one plain SQL query over the raw results
with the published method, and the answers were checked equal (ASN table:
$(ds asn_table_equal), timelines: $(ds timeline_equal), after the refresh: $(ds refresh_equal)). Reproduce:
\`go run ./deploy/bench/dataset\` (flags for a smaller world).

| what | measured | limit in the same run | ratio | goal |
|---|---|---|---|---|
| ASN table, \`GET /api/v1/asns?window=30d\` (first page, $(ds asn_table_page_rows) rows), p50 / p99 of 200 | $(ds asn_table_p50_ms) / $(ds asn_table_p99_ms) ms | plain SQL, the whole table (median of 3): $(ds asn_table_sql_ms) ms | $(dratio "$(ds asn_table_p50_ms)" "$(ds asn_table_sql_ms)") | p50 at most 20 ms: $(dratio "$(ds asn_table_p50_ms)" 20) of the goal |
| ASN table of one country (\`&country=$(ds asn_table_country)\`), p50 / p99 of 200 | $(ds asn_table_country_p50_ms) / $(ds asn_table_country_p99_ms) ms | the same plain SQL: $(ds asn_table_sql_ms) ms | $(dratio "$(ds asn_table_country_p50_ms)" "$(ds asn_table_sql_ms)") | p50 at most 20 ms: $(dratio "$(ds asn_table_country_p50_ms)" 20) of the goal |
| ASN table, pages of 500 (\`&page_size=500\`), p50 / p99 of 200 | $(ds asn_table_500_p50_ms) / $(ds asn_table_500_p99_ms) ms | the same plain SQL: $(ds asn_table_sql_ms) ms | $(dratio "$(ds asn_table_500_p50_ms)" "$(ds asn_table_sql_ms)") | |
| the whole ASN table, every page of 5,000 ($(ds asn_table_rows) rows) | $(ds asn_table_all_pages_ms) ms | the same plain SQL: $(ds asn_table_sql_ms) ms | $(dratio "$(ds asn_table_all_pages_ms)" "$(ds asn_table_sql_ms)") | |
| ASN timeline, \`GET /api/v1/asns/{asn}?window=30d\`, 200 ASNs big and small, p50 / p99 | $(ds timeline_p50_ms) / $(ds timeline_p99_ms) ms | plain SQL timeline of the same ASNs: $(ds timeline_sql_p50_ms) / $(ds timeline_sql_p99_ms) ms | $(dratio "$(ds timeline_p50_ms)" "$(ds timeline_sql_p50_ms)") / $(dratio "$(ds timeline_p99_ms)" "$(ds timeline_sql_p99_ms)") | p50 at most 20 ms: $(dratio "$(ds timeline_p50_ms)" 20) of the goal |
| export of one day ($(ds export_rows) rows), CSV ($(ds export_csv_mib) MiB), median of 3 | $(ds export_csv_rows_per_s) rows/s | \`COPY (SELECT the same) TO STDOUT (FORMAT csv)\`: $(ds export_copy_rows_per_s) rows/s | $(dratio "$(ds export_csv_rows_per_s)" "$(ds export_copy_rows_per_s)") | |
| export of the same day, Parquet ($(ds export_parquet_mib) MiB), median of 3 | $(ds export_parquet_rows_per_s) rows/s | the same COPY: $(ds export_copy_rows_per_s) rows/s | $(dratio "$(ds export_parquet_rows_per_s)" "$(ds export_copy_rows_per_s)") | |
| daily archive of the same day ($(ds archive_rows) rows, $(ds archive_bytes_per_row) bytes a row): Parquet file written, synced and hashed, manifest, median of 3 | $(ds archive_rows_per_s) rows/s | \`COPY (SELECT the same ORDER BY measured_at, result_id) TO STDOUT\`: $(ds archive_copy_rows_per_s) rows/s | $(dratio "$(ds archive_rows_per_s)" "$(ds archive_copy_rows_per_s)") | |
| full rebuild of every rollup from the $(ds world_results) results | $(ds rebuild_s) s | one plain SQL pass computing one window (above): $(ds asn_table_sql_ms) ms | $(dratio "$(ds rebuild_s)" "$(awk -v a="$(ds asn_table_sql_ms)" 'BEGIN {print a/1000}')") | |
| incremental refresh after ingesting one more hour ($(ds refresh_rows) results through the ingest path) | $(ds refresh_s) s | the full rebuild: $(ds rebuild_s) s | $(dratio "$(ds refresh_s)" "$(ds rebuild_s)") | |
| refresh CPU under steady ingest at the design rate: $(ds steady_results) results in $(ds steady_minutes) simulated minutes at 2,000 results/s (rounds of 9 or 18: 3 ports, one family or both, 3 reference MTAs; through the store at $(ds steady_ingest_rows_per_s) results/s), the daily points refreshed every minute and the rolling windows once, as the collector's defaults do (\`--refresh-every 1m\`, \`--windows-every 15m\`), the day's roll spread over its day; CPU of the refresh's PostgreSQL backend and of the refresher | $(ds steady_cpu_share_pct)% of one core (wall time: $(ds steady_wall_share_pct)%) | one core | $(dratio "$(ds steady_cpu_share_pct)" 100) | under 5%: $(dratio "$(ds steady_cpu_share_pct)" 5) of the goal |
| of which: a refresh of the daily points ($(ds steady_days_keys) (ASN, family, day) keys, every ASN), CPU p50 / max of the $(ds steady_minutes) | $(ds steady_days_cpu_p50_ms) / $(ds steady_days_cpu_max_ms) ms | the minute between two: 60000 ms | $(dratio "$(ds steady_days_cpu_p50_ms)" 60000) | |
| of which: the refresh of the rolling windows after the $(ds steady_minutes) minutes ($(ds steady_windows_deltas) tally deltas, $(ds steady_windows_keys) (ASN, family) keys), CPU | $(ds steady_windows_cpu_ms) ms | every window recomputed from the daily tallies (the day's roll, once a day): $(awk -v a="$(ds steady_roll_cpu_s)" 'BEGIN {print a*1000}') ms | $(dratio "$(ds steady_windows_cpu_ms)" "$(awk -v a="$(ds steady_roll_cpu_s)" 'BEGIN {print a*1000}')") | |
| a refresh of both with nothing new | $(ds steady_quiet_cpu_ms) ms CPU | the minute between two: 60000 ms | $(dratio "$(ds steady_quiet_cpu_ms)" 60000) | |
| growth with the ASNs that took results: one minute at 2,000 results/s from the agents of $(ds steady_growth_asns) ASNs chosen at random ($(ds steady_growth_keys) keys), CPU of both refreshes | $(ds steady_growth_cpu_ms) ms | | grows as ASNs^$(ds steady_asns_exponent) | |
| disk used by the rollups (tallies $(ds tally_mib) MiB) | $(ds rollup_mib) MiB | the raw results with their indexes: $(ds results_mib) MiB | $(dratio "$(ds rollup_mib)" "$(ds results_mib)") | |

Reproduce: \`make bench\`.
MD
if [ -n "$validity" ]; then printf '\n%s\n' "$validity" >> BENCHMARKS.md; fi
if [ -n "$chaos" ]; then printf '\n%s\n' "$chaos" >> BENCHMARKS.md; fi
echo "bench: wrote BENCHMARKS.md" >&2
cat BENCHMARKS.md

#!/usr/bin/env bash
# make chaos (root): run the chaos run (deploy/chaos, docs/chaos.md) and put
# its "## Chaos" section into BENCHMARKS.md, replacing the previous one;
# the rest of the file is left as it was.
#
#   deploy/chaos.sh OUT_DIR     run and rewrite the section (CHAOS_FLAGS:
#                               more op25b-chaos run flags, e.g. --pg-down 5m)
#   deploy/chaos.sh section     print the section of BENCHMARKS.md on stdin
#                               (make bench keeps it this way)
set -euo pipefail
# section: the lines from "## Chaos" up to the next "## " heading.
section() { awk '/^## / {keep = ($0 == "## Chaos")} keep'; }
if [ "${1:-}" = section ]; then section; exit 0; fi
out=${1:?usage: chaos.sh OUT_DIR | chaos.sh section}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=$(mktemp -d -t op25b-chaos.XXXXXX)
trap 'rm -rf "$work"' EXIT
command="make chaos"
[ -n "${CHAOS_FLAGS:-}" ] && command="make chaos CHAOS_FLAGS='$CHAOS_FLAGS'"
# shellcheck disable=SC2086 # CHAOS_FLAGS is a list of flags
"$out/op25b-chaos" run --bin "$out" --command "$command" --markdown "$work/chaos.md" ${CHAOS_FLAGS:-}
touch BENCHMARKS.md
{
  awk '/^## / {drop = ($0 == "## Chaos")} !drop' BENCHMARKS.md | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
  echo
  cat "$work/chaos.md"
} > "$work/BENCHMARKS.md"
mv "$work/BENCHMARKS.md" BENCHMARKS.md
echo "chaos: wrote the Chaos section of BENCHMARKS.md" >&2

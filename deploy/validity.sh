#!/usr/bin/env bash
# make validity (root): run the validity benchmark in the emulated-ISP
# testbed and put its "## Validity" section into BENCHMARKS.md, replacing
# the previous one; the rest of the file is left as make bench wrote it.
#
#   deploy/validity.sh OUT_DIR     run and rewrite the section
#   deploy/validity.sh section     print the section of BENCHMARKS.md on stdin
#                                  (make bench keeps it this way)
set -euo pipefail
# section: the lines from "## Validity" up to the next "## " heading.
section() { awk '/^## / {keep = ($0 == "## Validity")} keep'; }
if [ "${1:-}" = section ]; then section; exit 0; fi
out=${1:?usage: validity.sh OUT_DIR | validity.sh section}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=$(mktemp -d -t op25b-validity.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$out/op25b-testbed" validity --bin "$out" --probes "${VALIDITY_PROBES:-1000}" \
  --report "$out/validity-report.json" --markdown "$work/validity.md"
touch BENCHMARKS.md
{
  awk '/^## / {drop = ($0 == "## Validity")} !drop' BENCHMARKS.md | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
  echo
  cat "$work/validity.md"
} > "$work/BENCHMARKS.md"
mv "$work/BENCHMARKS.md" BENCHMARKS.md
echo "validity: wrote the Validity section of BENCHMARKS.md (report: $out/validity-report.json)" >&2
cat "$work/validity.md"

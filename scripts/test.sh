#!/usr/bin/env bash
# The whole test suite: what `npm test` and .ci/run run. Installs what the tests need first.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
npx tsc -p tsconfig.json || { echo "typecheck failed"; exit 1; }

log=$(mktemp)
# tap runs the files two at a time in path order: end-to-end, integration, then unit tests.
if (($# > 0)); then files=("$@"); else mapfile -t files < <(find test/unit test/integration test/e2e -name '*.spec.ts' | sort); fi
export SC_TEST_RUN="${SC_TEST_RUN:-$$}"
# CPU seconds per file (test/helpers/cpu-account.mjs): a cpuacct cgroup per file, where the kernel has one.
cpu=""
for d in /sys/fs/cgroup/cpuacct /sys/fs/cgroup/cpu,cpuacct; do
  if [[ -f $d/cpuacct.usage ]] && mkdir -p "$d/supercloud-test-$SC_TEST_RUN" 2>/dev/null; then cpu="$d/supercloud-test-$SC_TEST_RUN"; break; fi
done
export SC_TEST_CPU_CGROUP="$cpu"
npx tap --reporter=tap "${files[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# Every namespace this run made is gone, also when a test failed.
node --import tsx test/helpers/sweep.ts || status=1

# A plain closing line for CI.
summary=$(grep -E '^# \{ total: ' "$log" | tail -n 1)
total=$(sed -nE 's/.*total: ([0-9]+).*/\1/p' <<<"$summary")
pass=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$summary")
fail=$(sed -nE 's/.*fail: ([0-9]+).*/\1/p' <<<"$summary")
skip=$(sed -nE 's/.*skip: ([0-9]+).*/\1/p' <<<"$summary")
# What failed, and the slowest files, at the very end where a CI page shows them.
if grep -qE '^ *not ok ' "$log"; then
  echo "failed (a file's failing subtests come just before the file's own line):"
  grep -E '^ *not ok ' "$log" | head -n 80
fi
echo "slowest files (s):"
grep -E '^(not )?ok [0-9]+ - test/' "$log" | sed -nE 's/^(not )?ok [0-9]+ - (test\/[^ ]+) # time=([0-9.]+)ms.*/\3 \2/p' |
  sort -rn | head -n 15 | awk '{printf "  %6.0f %s\n", $1 / 1000, $2}'
if [[ -n $cpu ]]; then
  echo "most CPU (s, the file's processes and everything they started):"
  for f in "$cpu"/*/; do [[ -f $f/cpuacct.usage ]] && echo "$(cat "$f/cpuacct.usage") ${f%/}"; done |
    sort -rn | awk -v root="$cpu/" '{ t += $1; n = substr($2, length(root) + 1); gsub(":", "/", n); if (NR <= 15) printf "  %6.0f %s\n", $1 / 1e9, n } END { printf "  %6.0f all files\n", t / 1e9 }'
  rmdir "$cpu"/*/ "$cpu" 2>/dev/null
fi
rm -f "$log"
echo "tests: ${pass:-0} passed, ${fail:-0} failed, ${skip:-0} skipped"
if [[ -z "$total" ]]; then exit 1; fi
exit "$status"

#!/usr/bin/env bash
# One session on a GPU machine: build for its GPU, the whole test suite, the benchmark, the
# profiles of the default layouts, a first-use tune on a nearly full card, and (with "all") the
# sanitizer and the fuzzer. Logs and results go to $OUT (default build/gpu-session); the summary
# is printed last. Steps run in order and each one's exit status is recorded; a failed step does
# not stop the others.
#
#   bash scripts/gpu_session.sh [quick|full|all]   (default full)
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-full}
out=${OUT:-build/gpu-session}
mkdir -p "$out"
export MLA_KV_ARCHS=${MLA_KV_ARCHS:-native}
step() {
  local name=$1; shift
  local t0=$SECONDS
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc in $((SECONDS - t0)) s" | tee -a "$out/summary.txt"
}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv > "$out/gpu.txt" 2>&1
step build bun run build --bench
step test bun test
[ "$mode" = quick ] || step bench bun run bench
if [ "$mode" != quick ]; then
  MLA_KV_CACHE_DIR="$PWD/$out/profiles" step autotune bun run autotune --force
  step full_card_1gib bun scripts/tune_on_full_card.ts --free-gib 1
  step full_card_3gib bun scripts/tune_on_full_card.ts --free-gib 3
fi
if [ "$mode" = all ]; then
  step sanitize bun run sanitize
  step fuzz bun run fuzz
fi
grep -hE "^ *\(fail\)| pass$| fail$| skip$" "$out/test.log" | tail -n 20
tail -n 45 "$out/bench.log" 2>/dev/null
grep -h "tune_on_full_card" "$out"/full_card_*.log 2>/dev/null
cat "$out/summary.txt"

#!/bin/bash
# The benchmark suite runs end to end (tiny sizes, one repetition). Smoke only: no timing is checked.
# Opt-in (SLURM_CKPT_BENCH_SMOKE=1; ~4 min): the CI's time goes to the tests on network storage.
. "$(dirname "$0")/lib.sh"
if [ "${SLURM_CKPT_BENCH_SMOKE:-0}" != 1 ]; then
    say "SKIP: opt-in (SLURM_CKPT_BENCH_SMOKE=1 tests/t90-bench-quick.sh, or scripts/bench --quick)"
    exit 0
fi
out="$JOBDIR/bench-quick.txt"
"$REPO/scripts/bench" --quick >"$out" 2>&1 || { cat "$out" >&2; fail "scripts/bench --quick failed"; }
for section in "== 1." "== 2." "== 3." "== 4." "== 5." "ratio"; do
    grep -qF -- "$section" "$out" || { cat "$out" >&2; fail "bench output lacks '$section'"; }
done
say "bench --quick ran all 5 sections"

#!/bin/bash
# scripts/soak as a smoke test: three cycles with a fixed seed (both MPI families, a fault among
# them), each must end "ok", and the report must count them. Opt-in (SLURM_CKPT_SOAK_SMOKE=1): the
# CI's time goes to the tests on network storage; scripts/soak itself is run for docs/RESULTS.md.
. "$(dirname "$0")/lib.sh"
if [ "${SLURM_CKPT_SOAK_SMOKE:-0}" != 1 ]; then
    say "SKIP: opt-in (SLURM_CKPT_SOAK_SMOKE=1 tests/t47-soak-smoke.sh)"
    exit 0
fi
record="/tmp/$TEST_NAME.record.tsv"
rm -f "$record"
"$REPO/scripts/soak" --cycles 3 --faults 50 --seed 7 --record "$record" >&2 || fail "scripts/soak failed"
[ "$(wc -l <"$record")" = 3 ] || fail "the record has $(wc -l <"$record") cycles, expected 3"
if awk -F'\t' '$8 != "ok" { bad = 1 } END { exit !bad }' "$record"; then
    cat "$record" >&2
    fail "a soak cycle failed (logs kept under $(dirname "$record")/fail-*)"
fi
"$REPO/scripts/soak" --report --record "$record" | has 'total: 3/3 cycles ok' || fail "the report does not count 3/3"
say "3/3 soak cycles ok: $(cut -f3-7 "$record" | tr '\t' ' ' | paste -sd';')"

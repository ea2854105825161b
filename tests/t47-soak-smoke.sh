#!/bin/bash
# scripts/soak as a smoke test: three cycles with a fixed seed (both MPI families, a fault among
# them), each must end "ok", and the report must count them.
. "$(dirname "$0")/lib.sh"
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

#!/usr/bin/env bash
# Mutation check of the modules whose promises the docs state (issue 32), with cosmic-ray.
#
#   bash bench/mutation.sh                 # every module below (hours on 2 cores)
#   bash bench/mutation.sh kernel/runners.py kernel/missions.py
#
# Each module is mutated in a scratch copy of the committed tree (never in this
# checkout), against the tests that cover it; the last lines give killed/survived
# per module, and the survivors are listed in bench/out/mutation/MODULE.txt. Not in
# CI's default lane: it runs each module's tests once per mutant. Needs cosmic-ray
# (`.venv/bin/pip install cosmic-ray==8.7.0`).
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD
py=$here/.venv/bin/python
[ -x "$here/.venv/bin/cosmic-ray" ] || { echo "install cosmic-ray first: .venv/bin/pip install cosmic-ray==8.7.0" >&2; exit 2; }

# module -> the tests that cover it (the fast, in-process ones where they suffice; the
# runners' kill-a-kernel test takes 10 s of each 12: its rules run in-process beside it)
declare -A TESTS=(
  [image/copy.py]="tests/test_copy_rules.py tests/test_image_copy.py -m unit"
  [image/snapshot.py]="tests/test_snapshot.py tests/test_snapshot_rules.py -m unit"
  [prototypes/persist.py]="tests/test_persist_rules.py tests/test_prototypes.py tests/test_isolation.py -m unit"
  [prototypes/capabilities.py]="tests/test_capabilities_rules.py tests/test_isolation.py tests/test_extend.py -m unit"
  [prototypes/isolation.py]="tests/test_isolation.py -m unit"
  [kernel/missions.py]="tests/test_missions_rules.py tests/test_runners.py tests/test_psm.py -m unit"
  [kernel/runners.py]="tests/test_runners_rules.py tests/test_runners.py -m unit --deselect tests/test_runners.py::test_a_kernel_killed_mid_mission_loses_nothing_committed"
  [night/lineage.py]="tests/test_lineage_rules.py"
)
modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=(image/copy.py image/snapshot.py prototypes/persist.py
  prototypes/capabilities.py prototypes/isolation.py kernel/missions.py kernel/runners.py
  night/lineage.py)

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
git archive HEAD | tar -x -C "$scratch"
ln -s "$here/.venv" "$scratch/.venv"
out=$here/bench/out/mutation
mkdir -p "$out"
summary=()
for m in "${modules[@]}"; do
  t=${TESTS[$m]:-}
  [ -n "$t" ] || { echo "no tests listed for $m" >&2; exit 2; }
  name=${m//\//_}
  # the tests must pass, and select some, on the unmutated tree: pytest's "no tests
  # collected" (exit 5) would otherwise count every mutant as killed
  (cd "$scratch" && $py -m pytest -x -q -p no:cacheprovider $t > "$scratch/$name.baseline" 2>&1) || {
    echo "$m: its tests ($t) fail or select nothing on the unmutated tree:" >&2
    tail -5 "$scratch/$name.baseline" >&2; exit 2; }
  cfg=$scratch/$name.toml
  cat > "$cfg" <<TOML
[cosmic-ray]
module-path = "$m"
timeout = 120.0
excluded-modules = []
test-command = "$py -m pytest -x -q -p no:cacheprovider $t"

[cosmic-ray.distributor]
name = "local"

# bitwise, shift, power and modulo stand-ins for arithmetic: a module with no
# arithmetic of that kind gets dozens of them per '/' and '-' alone
[cosmic-ray.filters.operators-filter]
exclude-operators = ["core/ReplaceBinaryOperator_.*_(BitOr|BitAnd|BitXor|LShift|RShift|Pow|Mod|FloorDiv)"]
TOML
  (cd "$scratch" && "$here/.venv/bin/cosmic-ray" init "$cfg" "$name.sqlite" >/dev/null \
     && "$here/.venv/bin/cr-filter-operators" "$name.sqlite" "$cfg" \
     && "$here/.venv/bin/cosmic-ray" exec "$cfg" "$name.sqlite" \
     && "$here/.venv/bin/cr-report" --show-diff --surviving-only "$name.sqlite" > "$out/$name.txt")
  line=$("$py" - "$scratch/$name.sqlite" "$m" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = db.execute("select test_outcome, count(*) from work_results where lower(worker_outcome) "
                  "!= 'skipped' group by test_outcome").fetchall()
c = {str(k).lower(): v for k, v in rows}
killed, survived, incompetent = c.get("killed", 0), c.get("survived", 0), c.get("incompetent", 0)
total = killed + survived
print(f"{sys.argv[2]}: {killed} killed, {survived} survived, {incompetent} incompetent; "
      f"{100 * killed / total if total else 0:.1f}% killed")
PY
)
  echo "$line"
  summary+=("$line")
done
echo
echo "mutation check (cosmic-ray 8.7.0; survivors in bench/out/mutation/):"
printf '  %s\n' "${summary[@]}"

#!/usr/bin/env bash
# The main job on the embedded defaults, as `make demo` runs it: no PostgreSQL, Redis or
# PACS. Sandbox PACS -> query -> pseudonymized batch transfer into a folder -> leak scan
# -> a summary table. Everything lands in DEMO_DIR (default .demo/), so it can be looked
# at afterwards; each run starts afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
wb=".venv/bin/adit-workbench"
demo=${DEMO_DIR:-$PWD/.demo}

# Stop a sandbox left running by an earlier demo before its data dir goes away.
[ -d "$demo" ] && ADIT_WB_DATA_DIR="$demo" "$wb" sandbox stop >/dev/null 2>&1 || true
rm -rf "$demo" && mkdir -p "$demo/research"
export ADIT_WB_DATA_DIR="$demo/data"
export ADIT_WB_SANDBOX_PORT=${ADIT_WB_SANDBOX_PORT:-11120}
export ADIT_WB_RECEIVER_PORT=${ADIT_WB_RECEIVER_PORT:-11121}
trap '"$wb" sandbox stop >/dev/null 2>&1 || true' EXIT

step() { printf '\n== %s\n' "$*"; }

step "settings (secrets masked)"
"$wb" config
step "sandbox PACS with synthetic patients, registered as node SANDBOX"
"$wb" sandbox start
"$wb" nodes add-folder RESEARCH "$demo/research"
"$wb" nodes list
"$wb" nodes echo SANDBOX
"$wb" nodes probe SANDBOX
step "a first query"
"$wb" query SANDBOX --level study --modality CT --limit 5
step "batch query: three patients' CT studies"
printf 'PatientID,Modality,Pseudonym\nSYN0001,CT,DEMO-001\nSYN0002,CT,DEMO-002\nSYN0003,CT,DEMO-003\n' \
    > "$demo/queries.csv"
"$wb" batch-query "$demo/queries.csv" --from SANDBOX --wait
"$wb" jobs export 1 "$demo/found.xlsx"
step "pseudonymized batch transfer of what was found into the RESEARCH folder"
"$wb" batch-transfer "$demo/found.xlsx" --from SANDBOX --to RESEARCH --project demo \
    --trial-id DEMO --wait
step "leak scan: the originals, fetched again from the PACS, against the delivered files"
"$wb" jobs leak-scan 2
step "summary"
"$wb" jobs list
"$wb" jobs show 2
printf '\nDelivered files: %s (under %s)\n' \
    "$(find "$demo/research" -name '*.dcm' | wc -l)" "$demo/research"

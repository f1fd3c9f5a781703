#!/usr/bin/env bash
# Diagnostic for the GPU machine: builds the random Falcon-7B in several graph variants (--graph-tuning) and times
# raw decode steps of each with bench/profile-webgpu.js (KV placement alloc; KV=share for the in-place diagnostic), in one call so every number
# has its baseline next to it.
#   bash .device/gpu-env.sh bash bench/gpu-graph-variants.sh "grouped-top-k=0" ""
# Environment: BATCH (default 1,64,256), PAST (192), STEPS (24). Results: $OUT/variants.log.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${OUT:-/tmp}
log="$out/variants.log"
batch=${BATCH:-1,64,256}
past=${PAST:-192}
steps=${STEPS:-24}
for variant in "$@"; do
  dir=/tmp/variant-model
  rm -rf "$dir"
  echo "=== variant '${variant:-default}'" | tee -a "$log"
  start=$(date +%s)
  node dist/apps/cli/src/main.js model random --shape falcon-7b --target gpu --out "$dir" ${variant:+--graph-tuning "$variant"} >/dev/null 2>>"$log" || { echo "build failed" | tee -a "$log"; continue; }
  echo "built in $(( $(date +%s) - start )) s" | tee -a "$log"
  for kv in ${KV:-alloc}; do
    timeout 240 node bench/profile-webgpu.js "$dir" --ep webgpu --batch "$batch" --steps "$steps" --past "$past" --kv "$kv" 2>&1 | grep -v '^\s*$' | tee -a "$log"
  done
done
rm -rf /tmp/variant-model

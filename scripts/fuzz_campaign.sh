#!/usr/bin/env bash
# A libFuzzer campaign over the parsers (docs/FUZZING.md): each target in turn for SECS seconds
# of wall time on one core, starting from its committed seeds plus the corpus grown by earlier
# runs in WORK, restarted after a finding (the crashing input is kept in WORK/<target>/findings).
# At the end each target's corpus is minimised with -merge=1 into WORK/<target>/merged, and a
# summary line per target (wall seconds, CPU seconds of the fuzzer, executions, cov, ft, corpus
# files and KiB, findings) goes to WORK/summary.tsv. Copy merged/ over fuzz/seeds/<target>/ to commit the grown corpus.
#
#   SECS=600 WORK=/tmp/fuzzrun bash scripts/fuzz_campaign.sh [target ...]
#
# Needs the -DAWQ_FUZZ=ON build in build-fuzz (clang; docs/FUZZING.md shows the cmake line).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-600}
WORK=${WORK:-/tmp/fuzzrun}
BUILD=${BUILD:-build-fuzz}
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(gguf_fuzz safetensors_fuzz hf_config_fuzz tokenizer_fuzz rdata_fuzz calibration_fuzz
           quant_config_fuzz awq_checkpoint_fuzz)
fi
mkdir -p "$WORK"
# CPU time (user + system, in clock ticks) of this shell's finished children: the fuzzer runs.
child_ticks() { awk '{print $16 + $17}' /proc/$$/stat; }
hz=$(getconf CLK_TCK)
for t in "${targets[@]}"; do
  bin="$BUILD/fuzz/$t"
  [[ -x "$bin" ]] || { echo "fuzz_campaign: $bin is missing; build it with -DAWQ_FUZZ=ON" >&2; exit 1; }
  dir="$WORK/$t"
  mkdir -p "$dir/corpus" "$dir/findings"
  cp -n fuzz/seeds/"$t"/* "$dir/corpus/" 2>/dev/null || true
  start=$(date +%s)
  ticks0=$(child_ticks)
  left=$SECS
  execs=0
  findings=0
  cov=0
  ft=0
  while (( left > 0 )); do
    log="$dir/run-$(date +%s).log"
    set +e
    "$bin" "$dir/corpus" -max_total_time="$left" -timeout=20 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$dir/findings/" >"$log" 2>&1
    rc=$?
    set -e
    # No log means the fuzzer never ran (WORK removed or unwritable): stop rather than retry.
    [[ -f "$log" ]] || { echo "fuzz_campaign: cannot write $log; stopping" >&2; exit 1; }
    n=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    execs=$((execs + ${n:-0}))
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    c=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
    f=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
    cov=${c:-$cov}
    ft=${f:-$ft}
    if (( rc != 0 )); then
      findings=$((findings + 1))
      echo "fuzz_campaign: $t found something (exit $rc), see $log" >&2
      # A finding without the exit-time stats: count executions from the last status line.
      if [[ -z "$n" ]]; then
        e=$(grep -oE '^#[0-9]+' <<<"$last" | tr -d '#' || true)
        execs=$((execs + ${e:-0}))
      fi
    fi
    left=$((SECS - ($(date +%s) - start)))
  done
  secs=$(($(date +%s) - start))
  cpu=$((($(child_ticks) - ticks0) / hz))
  rm -rf "$dir/merged" && mkdir -p "$dir/merged"
  "$bin" -merge=1 "$dir/merged" fuzz/seeds/"$t" "$dir/corpus" >"$dir/merge.log" 2>&1 || true
  files=$(find "$dir/merged" -type f | wc -l)
  kib=$(du -sk "$dir/merged" | cut -f1)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$secs" "$cpu" "$execs" "$cov" "$ft" "$files" \
    "$kib" "$findings" | tee -a "$WORK/summary.tsv"
done

# Shared by scripts/test.sh and scripts/test-repeat.sh (sourced, not run).

# One busy loop per core, at normal priority: the tests then run on a machine as busy as a shared CI runner.
cpu_hogs=()
start_cpu_hog() {
  local core
  for core in $(seq "$(nproc)"); do
    ( trap - EXIT; while :; do :; done ) &
    cpu_hogs+=("$!")
  done
  echo "test: $(nproc) busy loops keep every core busy while the tests run (pids ${cpu_hogs[*]})" >&2
}
stop_cpu_hog() {
  [ "${#cpu_hogs[@]}" -gt 0 ] || return 0
  kill "${cpu_hogs[@]}" 2>/dev/null || true
  wait "${cpu_hogs[@]}" 2>/dev/null || true
  cpu_hogs=()
}

# "N passed, M failed" from a `swift test` log (Swift Testing's per-test lines; the run's own line is not a test).
swift_test_counts() {
  local passed failed
  passed=$(grep -E '^✔ Test .* passed after' "$1" | grep -vc '^✔ Test run ' || true)
  failed=$(grep -E '^✘ Test .* failed after' "$1" | grep -vc '^✘ Test run ' || true)
  echo "${passed} passed, ${failed} failed"
}

# Adds up cargo's "test result:" lines, Playwright's closing "N passed" / "N failed" lines and
# pytest's closing "N passed, M failed" line into one total.
/^test result:/ { cp += $4; cf += $6; next }
/^ +[0-9]+ (passed|failed|flaky)/ && FILENAME ~ /e2e/ {
  if ($2 == "passed") ep += $1; else ef += $1
  next
}
/ (passed|failed)/ && FILENAME ~ /conformance/ {
  for (i = 1; i < NF; i++) {
    w = $(i + 1); gsub(/[^a-z]/, "", w)
    if (w == "passed") sp += $i
    if (w == "failed" || w == "errors" || w == "error") sf += $i
  }
}
END {
  printf "cargo tests: %d passed, %d failed\n", cp, cf
  printf "dashboard e2e (Chromium): %d passed, %d failed\n", ep, ef
  printf "conformance (providers' SDKs): %d passed, %d failed\n", sp, sf
  printf "total: %d passed, %d failed\n", cp + ep + sp, cf + ef + sf
}

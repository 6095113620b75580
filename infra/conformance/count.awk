# Adds up cargo's "test result:" lines and pytest's closing "N passed, M failed" line into one total.
/^test result:/ { cp += $4; cf += $6; next }
/ (passed|failed)/ && FILENAME ~ /conformance/ {
  for (i = 1; i < NF; i++) {
    w = $(i + 1); gsub(/[^a-z]/, "", w)
    if (w == "passed") sp += $i
    if (w == "failed" || w == "errors" || w == "error") sf += $i
  }
}
END {
  printf "cargo tests: %d passed, %d failed\n", cp, cf
  printf "conformance (providers' SDKs): %d passed, %d failed\n", sp, sf
  printf "total: %d passed, %d failed\n", cp + sp, cf + sf
}

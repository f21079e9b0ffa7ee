#!/usr/bin/env bash
# The project's test command (README "Quick start"; .ci/run calls exactly this).
# Installs the Debian packages the tests use when they are missing and we are root (chromium: the web page's
# browser test; VLM_SKIP_BROWSER_TEST=1 skips that test instead).
set -euo pipefail
cd "$(dirname "$0")"

need=()
ldconfig -p 2>/dev/null | grep -q 'libopenblas.so.0' || need+=(libopenblas0-pthread)
ldconfig -p 2>/dev/null | grep -q 'libturbojpeg.so.0' || need+=(libturbojpeg0)
if [ "${VLM_SKIP_BROWSER_TEST:-}" != 1 ] && [ -z "${VLM_CHROMIUM:-}" ]; then
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need+=(chromium)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${need[*]} ..."
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "note: missing ${need[*]} (not root: tests needing them will fail; run: sudo apt-get install ${need[*]}," >&2
    echo "      or set VLM_SKIP_BROWSER_TEST=1 to skip the browser test)" >&2
  fi
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
dotnet test Vlm.slnx -c Release "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One closing line in the plain 'N passed, N failed' form, summed over the test assemblies.
awk '/(Passed|Failed)!/ { for (i = 1; i <= NF; i++) { g = $(i+1); gsub(/,/, "", g);
       if ($i == "Failed:") f += g; if ($i == "Passed:") p += g; if ($i == "Skipped:") s += g } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$rc"

#!/usr/bin/env bash
# Side-by-side model figures, Vlm against PyTorch, alternated so both see the same machine (docs/performance.md).
# The machines are shared VMs whose speed drifts by 20-50% within minutes, so a figure is only compared with its
# partner from the same round: each round runs fma_peak, then for each case Vlm and torch back to back (the order
# flips every round), and the summary prints per-round ratios and their median.
# Usage: benchmarks/compare.sh [rounds (default 3)] [case ...]
#   cases default: vit_b16_forward_b1 vit_b16_forward_b8 train_step_6l_b8 bridgetower_base_forward_b1 bridgetower_base_forward_b8
# Output: JSON lines in $OUT (default compare-<time>.jsonl), then a table.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"; root="$(dirname "$here")"
rounds="${1:-3}"; shift || true
cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=(vit_b16_forward_b1 vit_b16_forward_b8 train_step_6l_b8 bridgetower_base_forward_b1 bridgetower_base_forward_b8)
out="${OUT:-compare-$(date -u +%Y%m%dT%H%M%S).jsonl}"
export DOTNET_TieredCompilation=0
"$root/vlm" bench --list >/dev/null   # build once, outside the timed rounds
vlm_dll="$root/.build/cli/vlm.dll"   # where ./vlm builds
reps_for() { case "$1" in *_b8|train_*) echo 3 ;; *) echo 5 ;; esac; }
: > "$out"
for ((r = 1; r <= rounds; r++)); do
  dotnet "$vlm_dll" bench --json --reps 3 --filter fma_peak | sed "s/^{/{\"round\":$r,/" >> "$out"
  for c in "${cases[@]}"; do
    n=$(reps_for "$c")
    v() { dotnet "$vlm_dll" bench --json --reps "$n" --filter "$c" | grep "\"name\":\"$c\"" | grep '"backend":"vlm"' | sed "s/^{/{\"round\":$r,/" >> "$out"; }
    t() { "$here/run_torch.sh" 2 --filter "$c" --reps "$n" | grep "\"name\": \"$c\"" | sed "s/^{/{\"round\": $r, /" >> "$out"; }
    if (( r % 2 )); then v; t; else t; v; fi
    echo "round $r $c done ($(uptime | sed 's/.*load/load/'))" >&2
  done
done
python3 - "$out" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peak = {}
for x in rows:
    if x["name"] == "fma_peak": peak.setdefault(x["round"], {})[x["backend"]] = x["gflops"]
names = [n for n in dict.fromkeys(x["name"] for x in rows) if n != "fma_peak"]
print(f"{'case':30} {'round':>5} {'vlm ms':>9} {'torch ms':>9} {'vlm/torch':>9} {'vlm GF/s':>9} {'torch GF/s':>10} {'peak GF/s':>9}")
for n in names:
    ratios = []
    for r in sorted({x["round"] for x in rows}):
        v = [x for x in rows if x["name"] == n and x["round"] == r and x["backend"] == "vlm"]
        t = [x for x in rows if x["name"] == n and x["round"] == r and x["backend"] == "torch"]
        if not v or not t: continue
        ratio = v[0]["ms"] / t[0]["ms"]; ratios.append(ratio)
        pk = max(peak.get(r, {}).values(), default=0)
        print(f"{n:30} {r:5} {v[0]['ms']:9.1f} {t[0]['ms']:9.1f} {ratio:9.3f} {v[0]['gflops']:9.1f} {t[0]['gflops']:10.1f} {pk:9.1f}")
    if ratios: print(f"{n:30} {'med':>5} {'':9} {'':9} {st.median(ratios):9.3f}")
PY

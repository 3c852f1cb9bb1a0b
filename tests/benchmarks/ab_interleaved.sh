#!/usr/bin/env bash
# Interleaved A/B of the default command between checkouts, against ../shared/tools/floor.py --mp, on the 60 s
# real clip or the one in $AB_CLIP (wall and CPU medians, /usr/bin/time). For changes smaller than one
# pytest-benchmark run's noise:
# every round runs the floor, then each checkout, so slow and fast minutes hit all of them alike.
#   bash tests/benchmarks/ab_interleaved.sh ROUNDS CHECKOUT...     (e.g. a `git worktree` of the commit before)
# Each checkout runs its own package (`python -m driftbench` from its root) in the current Python environment.
set -euo pipefail
ROUNDS=$1; shift
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHARED=${DRIFTBENCH_SHARED:-$(cd "$ROOT/.." && pwd)/shared}
export DRIFTBENCH_MODELS=${DRIFTBENCH_MODELS:-$SHARED/models}
CLIPS=$(mktemp -d); OUT=$(mktemp -d); trap 'rm -rf "$CLIPS" "$OUT"' EXIT
CLIP=${AB_CLIP:-$SHARED/data/video/real/edtalk_pose_source2.mp4}
NAME=$(basename "$CLIP")
ln -s "$(cd "$(dirname "$CLIP")" && pwd)/$NAME" "$CLIPS/"
for _ in $(seq 1 "$ROUNDS"); do
  /usr/bin/time -f "floor %e %U %S" python "$SHARED/tools/floor.py" "$CLIPS/$NAME" --mp 2>&1 >/dev/null | tail -1
  for d in "$@"; do
    rm -rf "$OUT/run"
    (cd "$d" && /usr/bin/time -f "$d %e %U %S" python -m driftbench run model=folder "model.path=$CLIPS" \
      reference=first_frame cache.enabled=false "output.dir=$OUT/run" 2>&1 >/dev/null | tail -1)
  done
done | PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" python3 -c '
import collections, statistics, sys
from tests.benchmarks.roundstats import round_median_ci
runs = collections.defaultdict(list)
for line in sys.stdin:
    name, wall, user, system = line.split()
    runs[name].append((float(wall), float(user) + float(system)))
floor = [w for w, _ in runs["floor"]]
fw = statistics.median(floor); fc = statistics.median(c for _, c in runs["floor"])
first = None
for name, v in runs.items():
    w = statistics.median(x for x, _ in v); c = statistics.median(x for _, x in v)
    print(f"{name}: wall {w:.2f} s ({w / fw:.2f}x)  cpu {c:.2f} s ({c / fc:.2f}x)  rounds", " ".join(f"{x:.2f}" for x, _ in v))
    if name == "floor":
        continue
    ratios = [x / f for (x, _), f in zip(v, floor)]
    lo, hi = round_median_ci(ratios)
    line = f"  median of round ratios {statistics.median(ratios):.3f}x (95 % CI {lo:.3f}-{hi:.3f})"
    if first is None:
        first = v
    else:  # paired with the first checkout, round by round
        diff = [x - y for (x, _), (y, _) in zip(v, first)]
        dlo, dhi = round_median_ci(diff)
        line += (f"; minus {sys.argv[1]}, per round: median {statistics.median(diff):+.3f} s "
                 f"(95 % CI {dlo:+.3f}..{dhi:+.3f}), faster in {sum(d < 0 for d in diff)} of {len(diff)}")
    print(line)
' "$1"

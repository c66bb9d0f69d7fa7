#!/usr/bin/env bash
# Runs experiment 3 of the kernel lab on a GPU machine: builds the lab, checks and times every
# design for both benchmarked layouts, profiles the n = 1 launches with ncu, and dumps the SASS
# of the kernels compared. Everything lands in $OUT (or build/lab-out).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-build/lab-out}
mkdir -p "$out" build
arch=${LAB_ARCH:-90a}
nvcc -O3 -std=c++17 -gencode=arch=compute_${arch},code=sm_${arch} -Xptxas=-v -o build/designs_lab bench/lab/designs_lab.cu \
  > "$out/lab-ptxas.log" 2>&1 || { cat "$out/lab-ptxas.log"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv > "$out/gpu.txt" 2>&1
for layout in bf16 u8; do
  build/designs_lab --layout "$layout" --csv "$out/lab-$layout.csv" > "$out/lab-$layout.txt" 2>&1
  echo "lab $layout rc=$?"
done
if command -v cuobjdump >/dev/null; then
  cuobjdump -sass build/designs_lab > "$out/lab.sass" 2>&1
  awk '/Function :/{name=$3} /^ +\/\*[0-9a-f]{4}\*\//{cnt[name]++} END{for(n in cnt) print cnt[n], n}' "$out/lab.sass" | sort -k2 > "$out/sass-counts.txt"
fi
if command -v ncu >/dev/null && [ -z "${LAB_NO_NCU:-}" ]; then
  for v in "plain" "plain-early" "seed-row" "generic w4r1" "specialized w4r1" "spread w0r1"; do
    for pdl in "" "--pdl"; do
      tag=$(echo "$v$pdl" | tr -c 'a-z0-9' '_')
      timeout 120 ncu --clock-control none --target-processes all -k 'regex:Plain|SeedRow|Specialized|Spread|Vector' --launch-count 1 \
        --section LaunchStats --section WarpStateStats --section SchedulerStats --section SpeedOfLight \
        --metrics gpu__time_duration.sum,sm__cycles_elapsed.max,smsp__inst_executed.sum,smsp__cycles_active.max \
        build/designs_lab --one "$v" --n 1 $pdl >> "$out/ncu-n1.txt" 2>&1
      echo "== $v $pdl done" >> "$out/ncu-n1.txt"
    done
  done
fi
grep -hE "^ *[0-9]+ +[0-9]|PDL" "$out/lab-bf16.txt" "$out/lab-u8.txt"

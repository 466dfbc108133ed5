#!/usr/bin/env bash
# CPU benchmarks of the final code on a quiet many-core machine, pinned to 2 cores (issue 8):
# builds gradstep's CPU module in place, then bench/compare_conv.py twice (all rows, both
# libraries interleaved) and bench/compare.py once, all under `taskset -c 0,1` with 2 threads.
#
#   OUT=/some/dir bash tools/device_cpu_bench.sh            # from the repository root
#   REPEATS=3 OUT=/tmp/x bash tools/device_cpu_bench.sh     # a quick smoke run
#
# Needs: python (3.12) with numpy, torch, pybind11, scikit-build-core, cmake, ninja; the
# scipy-openblas32 wheel in .whl/ (installed with --no-index --no-deps if the import fails);
# no network. compare_conv.py feeds random inputs of each network's shape, so mnist1d is not
# needed; compare.py skips its scikit-learn row and OpenBLAS yardstick when sklearn or
# threadpoolctl is missing (and says so). Writes to $OUT: env.txt, build.log,
# compare_conv_1.txt, compare_conv_2.txt, compare.txt, and scaling_<threads>.txt (compare.py's
# batch-128/512 rows at 1, 2, 4, 8, 16 and all cores, unpinned). About 5 minutes on 16 cores.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the folder for the results}
REPEATS=${REPEATS:-11}        # interleaved rounds per row (each ~40 ms per library)
mkdir -p "$OUT"
py=$(command -v python)

{
  date -u
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) x $(nproc)"
  echo "load: $(cat /proc/loadavg)"
  "$py" -c 'import sys, numpy, torch; print("python", sys.version.split()[0], "numpy", numpy.__version__, "torch", torch.__version__)'
  "$py" -c 'import torch; v = torch.__version__
if not v.startswith("2.13"): print(f"NOTE: PyTorch here is {v}, not the 2.13 of the dev machine'"'"'s numbers in bench/README.md")'
  echo "git: $(git rev-parse HEAD 2>/dev/null || echo 'no git')"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

{
  if ! "$py" -c 'import scipy_openblas32' 2>/dev/null; then
    "$py" -m pip install -q --no-index --no-deps .whl/*.whl
  fi
  # tools/devbuild.sh's cmake call, in a fresh build folder (a carried build/dev would point at
  # another machine's paths) and with all cores
  rm -rf build/device-cpu python/gradstep/_core*.so
  cmake -S . -B build/device-cpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$py" \
    -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" \
    -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/python/gradstep" &&
  cmake --build build/device-cpu -- -j"$(nproc)" &&
  ls python/gradstep/_core*.so
} > "$OUT/build.log" 2>&1
rc=$?
tail -3 "$OUT/build.log"
if [[ $rc -ne 0 ]]; then
  echo "build failed (rc $rc): see $OUT/build.log"
  exit 1
fi

export PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH} OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2
pin="taskset -c 0,1"
command -v taskset >/dev/null || { echo "taskset not found: running unpinned"; pin=""; }

for run in 1 2; do
  echo "== compare_conv.py run $run =="
  $pin "$py" bench/compare_conv.py --threads 2 --repeats "$REPEATS" 2>&1 | tee "$OUT/compare_conv_$run.txt"
done
echo "== compare.py =="
$pin "$py" bench/compare.py --threads 2 --repeats "$REPEATS" 2>&1 | tee "$OUT/compare.txt"

# Issue 13: do GEMMs and the step use more than two cores? The batch-128 and batch-512 rows,
# unpinned, at 1 to all cores (gradstep and PyTorch at the same count), plus the governor's
# back-offs (compare.py prints them): scaling_<threads>.txt.
for t in $(printf "%s\n" 1 2 4 8 16 "$(nproc)" | sort -un); do
  (( t > $(nproc) )) && continue
  echo "== compare.py, rows 1-2, $t threads, unpinned =="
  OMP_NUM_THREADS=$t "$py" bench/compare.py --threads "$t" --rows 1,2 --runs 2 --no-sklearn \
    --repeats "$REPEATS" 2>&1 | tee "$OUT/scaling_$t.txt"
done

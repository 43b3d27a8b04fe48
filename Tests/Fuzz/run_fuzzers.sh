#!/usr/bin/env bash
# Builds libFuzzer+ASan binaries for the checkpoint readers and the activation-store validation, and runs each
# for SECONDS (default 600).
#
#   Tests/Fuzz/run_fuzzers.sh [SECONDS] [TARGET…]      (make fuzz: 600 s each; make test: a 15 s smoke run)
#
# Targets: safetensors zipDirectory unpickler checkpoint activationStore (default: all five, run in parallel).
# activationStore turns its input into a recipe for an HDF5 file (random shapes, types, attributes; huge declared
# extents) written in /dev/shm, then validates and reads it with ActivationStore.
# The package has no executable fuzz targets (that needs a Package.swift change), so this script compiles
# Sources/_CKASupport, Sources/CKATensor and Sources/CKACheckpoint directly with swiftc -sanitize=fuzzer,address. Seeds come from
# Tests/CKACheckpointTests/Fixtures (whole files, their data.pkl records and safetensors headers).
# Regression inputs: Tests/Fuzz/regressions/TARGET/ (crash files found earlier), replayed before fuzzing.
# FUZZ_SEED fixes libFuzzer's seed (make test uses 1; 0, the default, picks one at random).
# Work folder: ${FUZZ_DIR:-/tmp/cka-checkpoint-fuzz} (corpus/, crash files, logs). Exit status 1 if any crash.
set -euo pipefail
SECONDS_PER_TARGET=${1:-600}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(safetensors zipDirectory unpickler checkpoint activationStore)
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=${FUZZ_DIR:-/tmp/cka-checkpoint-fuzz}
mkdir -p "$WORK/build"
export SWIFT_BACKTRACE=enable=no   # otherwise the backtracer eats the crash and no crash file is written

FLAGS=(-O -g -sanitize=fuzzer,address -parse-as-library -package-name ViTCKA -I "$ROOT/Sources/CBLAS" -I "$ROOT/Sources/CCrypto"
    -I "$ROOT/Sources/CGramKernel/include" -I "$WORK/build")
HDF5_INCLUDE=$(pkg-config --cflags-only-I hdf5 | sed 's/^-I//; s/ *$//')
quiet() { grep -v "Cannot export local symbol" || true; }   # harmless ld.gold warnings under ASan
clang -O2 -g -fsanitize=address -c "$ROOT/Sources/CGramKernel/shifted_gram.c" -I "$ROOT/Sources/CGramKernel/include" \
    -o "$WORK/build/CGramKernel.o"
swiftc "${FLAGS[@]}" -wmo -module-name _CKASupport -emit-module -emit-module-path "$WORK/build/_CKASupport.swiftmodule" \
    -c "$ROOT"/Sources/_CKASupport/*.swift -o "$WORK/build/_CKASupport.o" 2>&1 | quiet
swiftc "${FLAGS[@]}" -wmo -module-name CKATensor -emit-module -emit-module-path "$WORK/build/CKATensor.swiftmodule" \
    -c "$ROOT"/Sources/CKATensor/*.swift -o "$WORK/build/CKATensor.o" 2>&1 | quiet
swiftc "${FLAGS[@]}" -wmo -module-name CKACheckpoint -emit-module -emit-module-path "$WORK/build/CKACheckpoint.swiftmodule" \
    -c "$ROOT"/Sources/CKACheckpoint/*.swift -o "$WORK/build/CKACheckpoint.o" 2>&1 | quiet
swiftc "${FLAGS[@]}" -wmo -module-name CKAIO -I "$ROOT/Sources/CHDF5" -Xcc -I"$HDF5_INCLUDE" -emit-module \
    -emit-module-path "$WORK/build/CKAIO.swiftmodule" -c "$ROOT"/Sources/CKAIO/*.swift -o "$WORK/build/CKAIO.o" 2>&1 | quiet

# Seed corpus.
python3 - "$ROOT/Tests/CKACheckpointTests/Fixtures" "$WORK" <<'PY'
import os, sys, zipfile, struct, hashlib
src, work = sys.argv[1], sys.argv[2]
def put(target, data):
    d = os.path.join(work, "corpus", target); os.makedirs(d, exist_ok=True)
    open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb").write(data)
for n in sorted(os.listdir(src)):
    p = os.path.join(src, n); data = open(p, "rb").read()
    if n.endswith((".pth", ".tar")):
        put("checkpoint", data); put("zipDirectory", data)
        try:
            z = zipfile.ZipFile(p)
            for i in z.infolist():
                if i.filename.endswith("data.pkl"): put("unpickler", z.read(i))
        except zipfile.BadZipFile:
            put("unpickler", data)
    elif n.endswith(".safetensors"):
        put("checkpoint", data); put("safetensors", data)
        (k,) = struct.unpack("<Q", data[:8]); put("safetensors", data[:8 + k])
PY

pids=()
for t in "${TARGETS[@]}"; do
    swiftc "${FLAGS[@]}" -I "$ROOT/Sources/CHDF5" -Xcc -I"$HDF5_INCLUDE" "$HERE/fuzz_$t.swift" "$WORK/build/_CKASupport.o" \
        "$WORK/build/CKATensor.o" "$WORK/build/CGramKernel.o" "$WORK/build/CKACheckpoint.o" "$WORK/build/CKAIO.o" \
        $(pkg-config --libs-only-L hdf5) -lhdf5_serial -lopenblas -llapacke -lcrypto -o "$WORK/build/fuzz_$t" 2>&1 | quiet
    [ -x "$WORK/build/fuzz_$t" ] || { echo "build of fuzz_$t failed"; exit 2; }
    mkdir -p "$WORK/corpus/$t" "$WORK/crashes/$t"
    # Inputs that once crashed a target are replayed first; each must now run clean.
    if compgen -G "$HERE/regressions/$t/*" > /dev/null; then
        "$WORK/build/fuzz_$t" -rss_limit_mb=2048 -timeout=10 "$HERE"/regressions/"$t"/* > "$WORK/$t.regressions.log" 2>&1 ||
            { echo "$t: a committed regression input crashes again (see $WORK/$t.regressions.log)"; exit 1; }
    fi
    (cd "$WORK/crashes/$t" && "$WORK/build/fuzz_$t" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 \
        -max_len=262144 -timeout=10 -seed="${FUZZ_SEED:-0}" -print_final_stats=1 "$WORK/corpus/$t" > "$WORK/$t.log" 2>&1) &
    pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then status=1; echo "${TARGETS[$i]}: CRASH (see $WORK/${TARGETS[$i]}.log, $WORK/crashes/${TARGETS[$i]})"; fi
done
for t in "${TARGETS[@]}"; do
    echo "== $t: $(grep -E '^stat::number_of_executed_units' "$WORK/$t.log" | awk '{print $2}') runs, " \
         "corpus $(ls "$WORK/corpus/$t" | wc -l) files, $(grep -cE 'ERROR|deadly signal' "$WORK/$t.log" || true) crash reports"
done
exit $status

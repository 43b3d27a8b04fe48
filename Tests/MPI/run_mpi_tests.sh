#!/usr/bin/env bash
# The MPI test (run by `make test`, so by CI): `cka` under `mpirun -n 1|2|3` gives the data of one process, bit
# for bit, on a tiny seeded 12-block ViT over 40 bundled CIFAR-10 images (4 per class):
#   - extract: every dataset of the store (activations, pooled, Grams, pixels; image folder and /inputs/pixels);
#   - compare (memory-mapped, HDF5-read with stored Grams, shuffled passes) and compare-all: identical outputs;
#   - knn, probe and landscape (with Hessian λ_max) when those commands are distributed (see below);
#   - hessian (top eigenvalues, trace, density): HDF5 data and CSV;
#   - errors: a bad input under mpirun is one line naming the rank, exit ≠ 0, no output file; a rank killed
#     (SIGKILL) in the middle of a run ends the job with exit ≠ 0, a line naming the rank and no partial output.
# Prints one line per check and a closing "N passed, M failed"; exits non-zero on any failure.
# Needs: the release `cka` (swift build -c release --product cka), mpirun (openmpi-bin), python3 with h5py/numpy.
# Environment: CKA (binary), KEEP=1 keeps the work folder.
set -uo pipefail
cd "$(dirname "$0")/../.."
CKA=$(realpath "${CKA:-.build/release/cka}")
SECONDS=0
export OPENBLAS_NUM_THREADS=1
PASS=0 FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $*"; }
finish() { echo "MPI test: ${SECONDS} s"; echo "$PASS passed, $FAIL failed"; [ "$FAIL" = 0 ]; exit $?; }

command -v mpirun > /dev/null || { bad "no mpirun (apt-get install openmpi-bin libopenmpi-dev: make deps)"; finish; }
[ -x "$CKA" ] || { bad "no $CKA (swift build -c release --product cka)"; finish; }
python3 -c 'import h5py, numpy' 2> /dev/null || { bad "python3 needs h5py and numpy (make deps-test)"; finish; }
MPIRUN=(mpirun --oversubscribe)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cka-mpi.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then echo "work folder: $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi
for dir in demo/images/cifar10/*/; do
  files=("$dir"*)
  mkdir -p "$WORK/images/$(basename "$dir")"
  cp "${files[@]:0:4}" "$WORK/images/$(basename "$dir")/"
done
python3 Tests/Notebooks/make_tiny_vit.py "$WORK/tiny-vit.safetensors" > /dev/null
cd "$WORK"

# Same datasets, dtypes, shapes and bytes in two HDF5 files (attributes aside).
cat > same_h5.py << 'EOF'
import sys, h5py
def datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out
a, b = datasets(sys.argv[1]), datasets(sys.argv[2])
def same(x, y):
    if x.dtype != y.dtype or x.shape != y.shape: return False
    return x.tolist() == y.tolist() if x.dtype == object else x.tobytes() == y.tobytes()
bad = [k for k in sorted(set(a) | set(b)) if k not in a or k not in b or not same(a[k], b[k])]
print(f"{len(a)} datasets" + (f", {len(bad)} differ: " + ", ".join(bad[:5]) if bad else ", identical"))
sys.exit(1 if bad or not a else 0)
EOF

# run NAME N CMD...: CMD under mpirun -n N (N = 0: without mpirun); output in NAME.log.
run() {
  local name=$1 n=$2; shift 2
  if [ "$n" = 0 ]; then "$@" > "$name.log" 2>&1; else "${MPIRUN[@]}" -n "$n" "$@" > "$name.log" 2>&1; fi
}

# --- extract
EX=(--checkpoint tiny-vit.safetensors --store activations,pooled,grams,pixels --batch-size 6 --gram-batch-size 4 --quiet)
run extract0 0 "$CKA" extract "${EX[@]}" --images images --out ex0.h5 || { cat extract0.log; bad "extract without mpirun"; finish; }
for n in 1 2 3; do
  if run extract$n $n "$CKA" extract "${EX[@]}" --images images --out ex$n.h5 && python3 same_h5.py ex0.h5 ex$n.h5 > same.txt
  then ok "extract -n $n (image folder): $(cat same.txt)"; else cat extract$n.log same.txt 2> /dev/null; bad "extract -n $n (image folder)"; fi
done
PX=(--checkpoint tiny-vit.safetensors --inputs ex0.h5 --store pooled,grams --batch-size 8 --gram-batch-size 8 --quiet)
run px0 0 "$CKA" extract "${PX[@]}" --out px0.h5 --random-init 3 --model random
if run px3 3 "$CKA" extract "${PX[@]}" --out px3.h5 --random-init 3 --model random && python3 same_h5.py px0.h5 px3.h5 > same.txt
then ok "extract -n 3 (/inputs/pixels, random init): $(cat same.txt)"; else cat px3.log same.txt; bad "extract -n 3 (/inputs/pixels)"; fi
if run px7 7 "$CKA" extract "${PX[@]}" --out px7.h5 --random-init 3 --model random --limit 12 && run px7s 0 "$CKA" extract "${PX[@]}" --out px7s.h5 --random-init 3 --model random --limit 12 && python3 same_h5.py px7s.h5 px7.h5 > same.txt
then ok "extract -n 7 on 12 inputs (more ranks than batches): $(cat same.txt)"; else cat px7.log same.txt; bad "extract -n 7 (more ranks than batches)"; fi

# --- compare, compare-all (ex0: trained, rnd: random init; token activations and Grams of batch 4)
run rnd 0 "$CKA" extract "${EX[@]}" --images images --out rnd.h5 --random-init 5 --model random || { cat rnd.log; bad "random-init extract"; }
L='blocks.*.norm1,blocks.*.mlp.fc1,blocks.*'
cmp_runs() {   # NAME ARGS...: the CSV of one process vs -n 1, 2, 3
  local name=$1; shift
  run ${name}0 0 "$CKA" compare "$@" --csv ${name}0.csv --quiet || { cat ${name}0.log; bad "$name without mpirun"; return; }
  for n in 1 2 3; do
    if run $name$n $n "$CKA" compare "$@" --csv $name$n.csv --quiet && cmp -s ${name}0.csv $name$n.csv
    then ok "compare -n $n ($name): CSV identical"; else cat $name$n.log; bad "compare -n $n ($name)"; fi
  done
}
cmp_runs mapped ex0.h5 rnd.h5 --layers "$L" --batch-size 4 --grams activations
cmp_runs stored ex0.h5 rnd.h5 --layers 'blocks.*.norm1,blocks.*.mlp.fc1' --batch-size 4 --grams stored
cmp_runs read ex0.h5 rnd.h5 --layers "$L" --batch-size 4 --grams activations --no-mmap
cmp_runs shuffled ex0.h5 --layers "$L" --batch-size 4 --shuffle 7 --passes 3
cmp_runs debiased ex0.h5 px0.h5 --layers 'blocks.*:cls' --estimator debiased
cp ex0.h5 twin.h5
run all0 0 "$CKA" compare-all ex0.h5 rnd.h5 twin.h5 --layers "$L" --batch-size 8 --out-dir all0 --quiet
for n in 2 3; do
  if run all$n $n "$CKA" compare-all ex0.h5 rnd.h5 twin.h5 --layers "$L" --batch-size 8 --out-dir all$n --quiet && diff -r all0 all$n > /dev/null
  then ok "compare-all -n $n: $(ls all$n | wc -l) files identical (CSVs and pictures)"; else cat all$n.log; bad "compare-all -n $n"; fi
done

# --- knn (leave-one-out over every pooled layer): CSV and printed table identical
run knn0 0 "$CKA" knn ex0.h5 --k 3,5 --csv knn0.csv --quiet
for n in 2 3; do
  if run knn$n $n "$CKA" knn ex0.h5 --k 3,5 --csv knn$n.csv --quiet && cmp -s knn0.csv knn$n.csv && cmp -s knn0.log knn$n.log
  then ok "knn -n $n: $(($(wc -l < knn$n.csv) - 1)) rows identical (CSV and table)"
  else cat knn$n.log; bad "knn -n $n"; fi
done

# --- probe (every pooled layer, seeded split): CSV and printed table identical
run probe0 0 "$CKA" probe ex0.h5 --csv probe0.csv --quiet
for n in 2 3; do
  if run probe$n $n "$CKA" probe ex0.h5 --csv probe$n.csv --quiet && cmp -s probe0.csv probe$n.csv && cmp -s probe0.log probe$n.log
  then ok "probe -n $n: $(($(wc -l < probe$n.csv) - 1)) rows identical (CSV and table)"
  else cat probe$n.log; bad "probe -n $n"; fi
done

# --- landscape: a cross-entropy surface of a probe head, flatness and Hessian λ_max; same datasets and attributes
run probe 0 "$CKA" probe ex0.h5 --layers 'norm:cls' --save probe.h5 --quiet || { cat probe.log; bad "probe --save"; }
LS=(landscape --checkpoint tiny-vit.safetensors --loss ce --head probe.h5 --images images --examples 20 --batch-size 10
    --hessian-iterations 4 --flatness-radius 0.1 --flatness-samples 2 --quiet)
cat > same_attrs.py << 'EOF'
import sys, h5py
a, b = (h5py.File(p, "r").attrs for p in sys.argv[1:3])
keys = sorted((set(a) | set(b)) - {"directions"})
bad = [k for k in keys if k not in a or k not in b or str(a[k]) != str(b[k])]
print(f"{len(keys)} attributes" + (f", differ: {bad}" if bad else f" identical (λ_max {a['hessian_max_eigenvalue']})"))
sys.exit(1 if bad or "hessian_max_eigenvalue" not in a else 0)
EOF
same_surface() {   # A B: same datasets, and the same attributes apart from the direction file's name
  python3 same_h5.py "$1" "$2" > same.txt && python3 same_attrs.py "$1" "$2" >> same.txt
}
run land0 0 "$CKA" "${LS[@]}" --grid -1:1:5 --out land0.h5 || { cat land0.log; bad "landscape without mpirun"; }
for n in 1 2 3; do
  if run land$n $n "$CKA" "${LS[@]}" --grid -1:1:5 --out land$n.h5 && same_surface land0.h5 land$n.h5
  then ok "landscape -n $n (5×5, flatness, Hessian): $(tr '\n' ' ' < same.txt)"; else cat land$n.log same.txt; bad "landscape -n $n"; fi
done
if run land7 7 "$CKA" "${LS[@]}" --grid -1:1:2 --dims 1 --out land7.h5 && run land7s 0 "$CKA" "${LS[@]}" --grid -1:1:2 --dims 1 --out land7s.h5 && same_surface land7s.h5 land7.h5
then ok "landscape -n 7 on 2 points (more ranks than points): identical"; else cat land7.log same.txt; bad "landscape -n 7 on 2 points"; fi
# --curvature-map: each point's task returns the loss and the Hessian's extreme eigenvalues (Lanczos), so the
# /curvature datasets are those of one process too
LC=(landscape --checkpoint tiny-vit.safetensors --loss ce --head probe.h5 --images images --examples 20 --batch-size 10
    --hessian-iterations 0 --curvature-map --curvature-steps 4 --grid -1:1:3 --dims 1 --quiet)
if run curv1 1 "$CKA" "${LC[@]}" --out curv1.h5 && run curv2 2 "$CKA" "${LC[@]}" --out curv2.h5 \
  && python3 same_h5.py curv1.h5 curv2.h5 > same.txt && python3 -c 'import h5py,sys; sys.exit(0 if "curvature/ratio" in h5py.File("curv1.h5","r") else 1)'
then ok "landscape --curvature-map -n 1 vs -n 2 (3 points): $(tr '\n' ' ' < same.txt)"; else cat curv1.log curv2.log same.txt; bad "landscape --curvature-map -n 2"; fi

# --- hessian: Lanczos, Hutchinson and SLQ, the gradients of every Hessian-vector product split over the ranks (2
# batches: -n 2 takes a whole batch per rank, -n 3 single gradients); HDF5 data and CSV identical to one process
HS=(hessian --checkpoint tiny-vit.safetensors --loss ce --head probe.h5 --images images --examples 20 --batch-size 10
    --top-k 2 --lanczos-steps 4 --trace-samples 2 --density-runs 1 --density-bins 50 --quiet)
run hess0 0 "$CKA" "${HS[@]}" --out hess0.h5 --csv hess0.csv || { cat hess0.log; bad "hessian without mpirun"; }
for n in 1 2 3; do
  if run hess$n $n "$CKA" "${HS[@]}" --out hess$n.h5 --csv hess$n.csv && cmp -s hess0.csv hess$n.csv && python3 same_h5.py hess0.h5 hess$n.h5 > same.txt
  then ok "hessian -n $n (Lanczos, Hutchinson, SLQ): CSV and $(cat same.txt)"; else cat hess$n.log same.txt 2> /dev/null; bad "hessian -n $n"; fi
done

# --- errors: one line naming the rank, exit ≠ 0, nothing written
run missing 2 "$CKA" compare ex0.h5 nope.h5 --csv missing.csv
if [ $? != 0 ] && [ "$(grep -c '^error:' missing.log)" = 1 ] && grep -q '^error: rank 0: .*nope.h5' missing.log && [ ! -e missing.csv ]
then ok "a missing input under mpirun -n 2: one error line naming the rank and the file"; else cat missing.log; bad "missing input under mpirun"; fi
# Six images, the last unreadable: with batches of 1 it is input 5, which rank 1 decodes.
mkdir -p broken/a && cp images/airplane/* broken/a/ && cp "$(ls images/automobile/* | head -1)" broken/a/0004.jpg && printf 'not a jpeg' > broken/a/zz_broken.jpg
run strict 2 "$CKA" extract --checkpoint tiny-vit.safetensors --images broken --out strict.h5 --store pooled --batch-size 1 --strict --quiet
if [ $? != 0 ] && grep -q '^error: rank 1: .*zz_broken.jpg' strict.log && [ "$(grep -c '^error:' strict.log)" = 1 ] && ! ls strict.h5* > /dev/null 2>&1
then ok "an unreadable image on rank 1 (--strict): one line naming rank 1 and the file, no output"; else cat strict.log; bad "unreadable image under mpirun"; fi

# --- a rank killed in the middle: exit ≠ 0, a line naming the rank, no partial or final output
rank_pid() {   # RANK MPIRUN_PID: the pid of that rank among mpirun's children
  local p
  for p in $(pgrep -P "$2"); do
    tr '\0' '\n' < /proc/$p/environ 2> /dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" && { echo "$p"; return; }
  done
}
python3 - << 'EOF'
import h5py, numpy as np
with h5py.File("ex0.h5", "r") as f, h5py.File("many.h5", "w") as g:
    px = f["inputs/pixels"][()]
    g["inputs/pixels"] = np.concatenate([px] * 50)
    g["inputs/ids"] = np.array([f"{i}" for i in range(len(px) * 50)], dtype=h5py.string_dtype())
    for k, v in f.attrs.items(): g.attrs[k] = v
EOF
"${MPIRUN[@]}" -n 2 "$CKA" extract --checkpoint tiny-vit.safetensors --inputs many.h5 --out killed.h5 --store activations,grams --batch-size 4 --gram-batch-size 4 --quiet > killed.log 2>&1 &
MP=$!
for _ in $(seq 100); do pid=$(rank_pid 1 $MP); [ -n "$pid" ] && break; sleep 0.1; done
sleep 1.5
if [ -n "${pid:-}" ] && kill -0 "$pid" 2> /dev/null; then
  kill -9 "$pid"; wait $MP; rc=$?
  if [ $rc != 0 ] && grep -qi 'rank 1' killed.log && ! ls killed.h5* > /dev/null 2>&1
  then ok "rank 1 killed during extract: exit $rc, '$(grep -i -m1 'rank 1' killed.log | sed 's/^ *//')', no output"
  else cat killed.log; ls killed.h5* 2> /dev/null; bad "rank 1 killed during extract"; fi
else wait $MP; cat killed.log; bad "could not find rank 1 of a running extract to kill"; fi

# --- a rank killed in the middle of a landscape: the surface keeps the points done; a rerun resumes and ends with
# the values of an uninterrupted run
KL=("${LS[@]}" --grid -1:1:9 --hessian-iterations 2)
"${MPIRUN[@]}" -n 2 "$CKA" "${KL[@]}" --out killed-land.h5 > killed-land.log 2>&1 &
MP=$!
for _ in $(seq 400); do [ -f killed-land.h5 ] && break; sleep 0.025; done
pid=$(rank_pid 1 $MP)
if [ -n "$pid" ] && [ -f killed-land.h5 ] && kill -9 "$pid" 2> /dev/null; then
  wait $MP; rc=$?
  partial=$(python3 -c 'import h5py; print(int((h5py.File("killed-land.h5", "r")["done"][()] != 0).sum()))' 2>&1)
  if [ $rc != 0 ] && grep -qi 'rank 1' killed-land.log && [ "$partial" -lt 81 ] 2> /dev/null
  then ok "rank 1 killed during landscape: exit $rc, '$(grep -i -m1 'rank 1' killed-land.log | sed 's/^ *//')', $partial of 81 points kept"
  else cat killed-land.log; echo "points kept: $partial"; bad "rank 1 killed during landscape"; fi
  run land-full 0 "$CKA" "${KL[@]}" --out land-full.h5
  if run resumed 3 "$CKA" "${KL[@]}" --out killed-land.h5 && same_surface land-full.h5 killed-land.h5
  then ok "landscape rerun -n 3 resumes the killed run: $(tr '\n' ' ' < same.txt)"; else cat resumed.log same.txt; bad "landscape resume after a kill"; fi
else wait $MP; cat killed-land.log; bad "could not kill rank 1 of a running landscape (finished too soon?)"; fi

finish

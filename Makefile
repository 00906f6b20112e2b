# Two commands do all the set-up on a fresh machine:  make demo  and  make test.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv system-deps bench lint

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

# Debian packages the tests and the synthetic worlds use (ffmpeg CLI for the benchmark baseline,
# espeak-ng voices and fluidsynth soundfonts for the worlds). Skipped when already present.
system-deps:
	@bash scripts/system-deps.sh

# The four jobs on shipped clips (assets/demo/README.md), each with a report.html to open in a browser, then
# where each wrote its results.
DEMO_OUT := out/demo out/sync-offset out/separate out/localize out/localize-faces out/recognize
demo: venv
	$(VENV)/bin/avlearn demo --out out/demo
	$(VENV)/bin/avlearn sync-offset assets/demo/speakers/test/000001.mp4 --shift-audio-ms 200 --out out/sync-offset --report
	$(VENV)/bin/avlearn separate assets/demo/speakers/test/000001.mp4 --out out/separate --report
	$(VENV)/bin/avlearn localize assets/demo/instruments/test/000000.mp4 --out out/localize --report
	$(VENV)/bin/avlearn localize assets/demo/speakers/test/000001.mp4 --out out/localize-faces --report
	$(VENV)/bin/avlearn recognize assets/demo/actions/test/000000.mp4 --out out/recognize --report
	@echo; echo "make demo wrote:"; for d in $(DEMO_OUT); do echo "  $$d/: $$(cd $$d && ls | tr '\n' ' ')"; done

test: venv system-deps
	$(VENV)/bin/python -m pytest -q

bench: venv system-deps
	$(PY) benchmarks/decode.py

lint: venv
	$(VENV)/bin/ruff check avlearn tests benchmarks && $(VENV)/bin/ruff format --check avlearn tests benchmarks

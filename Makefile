# The two commands of the README: `make demo` (search -> export -> QEMU on digits) and `make test`.
PY ?= python3
STAMP := .setup.stamp

.PHONY: setup test demo bench lint clean

$(STAMP): pyproject.toml scripts/setup.sh
	PY=$(PY) bash scripts/setup.sh
	@touch $@

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -rs

demo: $(STAMP)
	$(PY) -m mcuformer demo --out demo --force

bench: $(STAMP)
	$(PY) benchmarks/run.py
	$(PY) benchmarks/firmware.py

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf demo build .pytest_cache $(STAMP)

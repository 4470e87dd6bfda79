# Two commands for a new user: `make demo` and `make test`. Both set up everything.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: demo test install data services clean bench

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall when the dependency list changes.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[all,test]"
	touch $(STAMP)

install: $(STAMP)

# Fashion-MNIST: Debian's package when we are root with apt, else coach's own
# checksummed download into the cache.
data: $(STAMP)
	@if [ -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ]; then \
	  echo "Fashion-MNIST: $(FASHION_DIR)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null)) \
	  || $(PY) -m coach datasets --fetch fashion-mnist; \
	else \
	  $(PY) -m coach datasets --fetch fashion-mnist; \
	fi

# Servers the tests use, from Debian: headless Chromium renders the HTML reports, PostgreSQL
# backs multi-machine search. The tests start them on loopback themselves; skipped if absent.
SERVICES_PKGS := chromium postgresql
services:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	   ! (command -v chromium >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1); then \
	  apt-get install -y -qq $(SERVICES_PKGS) >/dev/null 2>&1 || \
	  (apt-get update -qq >/dev/null && apt-get install -y -qq $(SERVICES_PKGS) >/dev/null) || \
	  echo "could not install $(SERVICES_PKGS): the tests that need them will be skipped"; \
	fi

# The main job: the autopilot on Fashion-MNIST under a 15-minute budget; prints where the report is.
demo: data
	$(PY) -m coach demo --budget 15m --out runs/demo

test: data services
	$(PY) -m pytest -q --durations=15  # the slowest tests, so the suite is kept under ~10 minutes

bench: $(STAMP)
	$(PY) bench/overhead.py

clean:
	rm -rf $(VENV) .pytest_cache runs

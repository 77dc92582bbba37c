# keyquorum: the two set-up commands are `make run` and `make test`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEV_DIR ?= dev-cluster
TYPECHECK := build/typecheck

.PHONY: run test lint typecheck tables check-tables proto check-proto unit bench-codec bench bench-replication conformance chaos fuzz clean

# Install (or refresh) the virtualenv whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Start a local 3-node cluster in the foreground; Ctrl-C stops every node.
run: $(STAMP)
	$(BIN)/keyquorum dev --nodes 3 --dir $(DEV_DIR)

# Everything CI checks: lint, types, generated tables, the test suite.
test: lint typecheck check-tables check-proto unit

lint: $(STAMP)
	$(BIN)/ruff check .

# mypy needs a directory named like the package, so it reads the folders through
# a tree of symbolic links shaped like the installed `keyquorum` package.
typecheck: $(STAMP)
	mkdir -p $(TYPECHECK)/keyquorum
	for d in kmip cluster proto; do ln -sfn ../../../$$d $(TYPECHECK)/keyquorum/$$d; done
	cd $(TYPECHECK) && MYPYPATH=. ../../$(BIN)/mypy --config-file ../../pyproject.toml \
		-p keyquorum.kmip -p keyquorum.cluster -p keyquorum.proto

tables: $(STAMP)
	$(BIN)/python -m keyquorum.kmip.gen_tables

check-tables: $(STAMP)
	$(BIN)/python -m keyquorum.kmip.gen_tables --check

# Regenerate proto/replication_pb2*.py from proto/replication.proto.
proto: $(STAMP)
	$(BIN)/python -m keyquorum.proto.generate

check-proto: $(STAMP)
	$(BIN)/python -m keyquorum.proto.generate --check

unit: $(STAMP)
	$(BIN)/pytest

# Every OASIS test case against a follower of a fresh 3-node cluster; writes
# docs/conformance.md. Not part of `make test`: it takes about a minute.
conformance: $(STAMP)
	$(BIN)/python tests/conformance_report.py

# Seeded fault runs (four seeds of five minutes) and the hostile-input suite against
# clusters in network namespaces; writes docs/reliability.md. Needs root and iproute2.
# `make test` runs a 75 s share of it (tests/chaos).
chaos: $(STAMP)
	$(BIN)/python tests/chaos/run_chaos.py --seeds 1,2,3,4 --duration 300

# Decode and encode rates of vCenter's Create request, beside PyKMIP's, in one run.
bench-codec: $(STAMP)
	$(BIN)/python bench/codec_bench.py

# Coverage-guided fuzzing of the decoder and the request handler, 10 minutes each;
# make test runs a short fixed-seed pass (tests/fuzz/test_fuzz.py).
FUZZ_SECONDS ?= 600
fuzz: $(STAMP)
	mkdir -p build/fuzz/decoder build/fuzz/service
	for target in decoder service; do \
		$(BIN)/python -c "import sys; sys.path.insert(0, 'tests/fuzz'); \
			from fuzz_kmip import write_seed_corpus; from pathlib import Path; \
			write_seed_corpus(Path('build/fuzz/$$target'))" && \
		$(BIN)/python tests/fuzz/fuzz_kmip.py $$target -max_total_time=$(FUZZ_SECONDS) \
			-max_len=4096 -artifact_prefix=build/fuzz/ build/fuzz/$$target || exit 1; \
	done

# keyquorum's 3-node cluster beside PyKMIP's server and a TLS echo ceiling, then a node
# holding 100,000 keys; writes docs/performance.md, .png and .json. About 15 minutes.
bench: $(STAMP)
	$(BIN)/python bench/kmip_bench.py

# Replication lag p50/p99 on a performance secondary under a steady Create load on the
# primary (two 3-node clusters); writes a section of docs/replication.md. About a minute.
bench-replication: $(STAMP)
	$(BIN)/python bench/replication_bench.py

clean:
	rm -rf $(VENV) build $(DEV_DIR) .pytest_cache .mypy_cache .ruff_cache .hypothesis

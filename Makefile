# Two entry points for a fresh machine: `make run` and `make test`.
# Each creates the virtual environment in .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The exact torch pin takes the CPU wheel; a looser one pulls a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0
RUN_OUT ?= runs/tiny-tensorpoly-1

.PHONY: venv run test docs clean

$(BIN)/tensorpoly-tn: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet $(TORCH_PIN) -e ".[dev,hub,notebooks,docs]"
	touch $(BIN)/tensorpoly-tn

venv: $(BIN)/tensorpoly-tn

run: venv
	$(BIN)/tensorpoly-tn t0 --preset tiny --method tensorpoly-1 --out $(RUN_OUT)

test: venv
	$(BIN)/python -m pytest tests notebooks --nbval --nbval-sanitize-with notebooks/sanitize.cfg -p no:cacheprovider

# The site goes to site/ (git-ignored); tests/test_docs_build.py runs the same strict build.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs .pytest_cache

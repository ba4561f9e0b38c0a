# make demo: set up .venv, build the demo data, train on it (CPU: 4 to 6 min on 2 AMX or AVX-512 BF16 cores),
#            export the generator and translate the val split with it.
# make test: set up .venv and run the test suite.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: demo test venv clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m pix2pix_tf.datasets demo --output=datasets/demo
	$(PY) -m pix2pix_tf.train --flagfile=configs/demo.flags
	$(PY) -m pix2pix_tf.predict --saved_model=runs/demo/export --paired \
	    --input=datasets/demo/val --output=runs/demo/results
	@echo "Results page (input | generated | target): runs/demo/results/index.html"
	@echo "Draw label maps and translate them in the browser:"
	@echo "  $(PY) -m pix2pix_tf.serve --saved_model=runs/demo/export   # then open http://127.0.0.1:8000/"

# Two worker processes: most tests keep one core busy. Modules stay whole on
# one worker (--dist loadscope), so each module-scoped fixture trains once.
# The 20 slowest tests are listed at the end.
TEST_WORKERS ?= 2

# The browser test of `export --format=web` runs the page on the runtime it
# ships, onnxruntime-web, fetched once from the npm registry into Keras's
# cache and checked by its sha256 (offline, that test is skipped). Its path
# is the only line on stdout (the progress bar goes to stderr).
define FETCH_WEB_RUNTIME
import contextlib, sys
from pix2pix_tf.serving import web_export
with contextlib.redirect_stdout(sys.stderr):
    path = web_export.fetch_runtime()
print(path)
endef
export FETCH_WEB_RUNTIME
test: venv
	PIX2PIX_WEB_RUNTIME="$$($(PY) -c "$$FETCH_WEB_RUNTIME")" \
	    $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope --durations=20 tests

clean:
	rm -rf $(VENV) runs/demo datasets/demo

# ehead: the commands a developer runs. `make install` then `make test` on a fresh machine.
PYTHON ?= python3
# The CPU build of torch 2.13.0 is installed only when no torch is present, so a machine that
# already has its own (CUDA) build keeps it.
TORCH_PIN ?= torch==2.13.0

.PHONY: install test test-all test-browser lint format sample-data demo demo-avatar bench bench-gpu bench-serve \
	test-gpu vendor-js

install:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "$(TORCH_PIN)"
	# the landmarks extra (MediaPipe) is the default tracker of `ehead prepare` and `ehead avatar fit`:
	# installed here so that `make test` exercises it
	$(PYTHON) -m pip install -e ".[dev,landmarks]"
	# the listener's SpeechTokenizer loader: the package's model code only (its declared dependencies
	# are for training, and torchaudio has no build for torch 2.13)
	$(PYTHON) -m pip install --no-deps "speechtokenizer==1.0.1" "einops>=0.7"

# The default suite (under 3 minutes on 2 cores); `test-all` adds the slow tests (compiled sampler,
# overfitting, building and installing the wheel). -rs lists every skipped test with its reason.
test:
	$(PYTHON) -m pytest -q -rs -m "not slow and not browser" --durations=15

test-all:
	$(PYTHON) -m pytest -q -rs --durations=15

# The ehead serve page in headless Chromium (Debian: apt-get install chromium); skipped without it.
test-browser:
	@command -v chromium >/dev/null || echo "chromium is not installed (apt-get install chromium): the test is skipped"
	$(PYTHON) -m pytest -q -m browser -rs

lint:
	$(PYTHON) -m ruff check ehead_cli tests

format:
	$(PYTHON) -m ruff format ehead_cli tests

# Regenerate sample_data/ (needs the Debian package espeak-ng: apt-get install espeak-ng).
sample-data:
	$(PYTHON) -m ehead_cli.sampledata --out sample_data

# The main job on a sample clip with the shipped demo model: out/conv009_fr.mp4 and .npz.
demo:
	ehead generate --audio sample_data/clips/conv009_fr.flac --states sample_data/clips/conv009_fr.csv --out out/

# The same job rendered by the shipped demo avatar (a real person, fitted on one GRID corpus video):
# out/avatar/conv009_fr.mp4 at 256 px.
demo-avatar:
	ehead generate --audio sample_data/clips/conv009_fr.flac --states sample_data/clips/conv009_fr.csv \
		--avatar models/avatar-grid-bbaf2n --out out/avatar/

# The CPU benchmark (paper preset, built-in audio encoder; then the listener run LISTENER, default
# runs/lm, when it exists); the JSON is named after the device.
LISTENER ?= runs/lm
bench:
	ehead bench --fps --device cpu --preset paper --batch-sizes 1,8 --steps 1,4 --json benchmarks/
	@if [ -d "$(LISTENER)" ]; then ehead bench --family listener --checkpoint $(LISTENER) --device cpu --threads 1 \
		--batch-sizes 1,8,64 --json benchmarks/; else echo "listener skipped: no $(LISTENER) (LISTENER=RUN_DIR)"; fi
	ehead bench --stage2 --device cpu --preset small --batch-sizes 4 --frames-per-window 4 --size 128 --repeats 5 \
		--json benchmarks/
	ehead bench --stage2 --device cpu --preset small --batch-sizes 4 --frames-per-window 4 \
		--avatar models/avatar-grid-bbaf2n --repeats 3 --json benchmarks/

# ehead serve under load: N = 1, 8, 32 real-time clients on 127.0.0.1, small and paper presets
# (random weights, built-in audio encoder); writes benchmarks/serve-<device>.json.
bench-serve:
	$(PYTHON) benchmarks/serve_load.py --presets small,paper --hops 4,10,100 --clients 1,8 --threads 2

# Rebuild the page's vendored three.js bundle from the npm registry (needs Node.js and npm).
vendor-js:
	scripts/vendor-three.sh

# The GPU benchmark: bf16 eager (with the renderer and the whole job), then bf16 compiled with
# CUDA graphs (motion only). Each writes its own JSON, named after the device and settings.
bench-gpu:
	ehead bench --fps --device cuda --preset paper --dtype bf16 --batch-sizes 1,64,1024,4096 --steps 1,4 \
		--render-batch-sizes 1,64,256,1024 --json benchmarks/
	ehead bench --fps --device cuda --preset paper --dtype bf16 --batch-sizes 1,64,1024,4096 --steps 1,4 \
		--no-render --compile --json benchmarks/
	ehead bench --stage2 --device cuda --preset paper --batch-sizes 1,4,16 --json benchmarks/
	ehead bench --stage2 --device cuda --preset paper --batch-sizes 1,4,16 --avatar models/avatar-grid-bbaf2n \
		--json benchmarks/
	@if [ -d "$(LISTENER)" ]; then ehead bench --family listener --checkpoint $(LISTENER) --device cuda \
		--batch-sizes 1,64,512 --json benchmarks/; else echo "listener skipped: no $(LISTENER) (LISTENER=RUN_DIR)"; fi

# The tests that need a GPU (skipped by `make test` without one): CPU parity, bf16, CUDA graphs,
# training eager and compiled, the renderer.
test-gpu:
	$(PYTHON) -m pytest -q tests/test_cuda.py tests/test_render.py -k cuda

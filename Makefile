# GPT-2 pipeline-parallel trainer. `make test` runs everything that needs no GPU.
CC ?= gcc
PYTHON ?= python3
CFLAGS ?= -O3 -march=native
CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -fopenmp -I.
LDLIBS = -lm
CUDA_HOME ?= /usr/local/cuda
NVCC ?= $(CUDA_HOME)/bin/nvcc

# Matmuls go through OpenBLAS when it links (about 5x faster on 2 cores); else, or with NO_BLAS=1, plain C.
# A header proves nothing: libblas-dev ships a cblas.h without OpenBLAS. OPENBLAS=none tests the fallback.
OPENBLAS ?= openblas
OPENBLAS_LIBS := $(or $(shell pkg-config --libs $(OPENBLAS) 2> /dev/null),-l$(OPENBLAS))
HAVE_OPENBLAS := $(if $(NO_BLAS),,$(shell echo 'char cblas_sgemm(void); char openblas_set_num_threads(void); \
  int main(void) { return cblas_sgemm() + openblas_set_num_threads(); }' | $(CC) -x c - $(OPENBLAS_LIBS) -o /dev/null 2> /dev/null && echo 1))
BLAS_CFLAGS := $(if $(HAVE_OPENBLAS),-DUSE_BLAS $(shell pkg-config --cflags $(OPENBLAS) 2> /dev/null))
BLAS_LDLIBS := $(if $(HAVE_OPENBLAS),$(OPENBLAS_LIBS))
NO_BLAS_NOTICE = $(if $(HAVE_OPENBLAS),,@echo "notice: no OpenBLAS ($(if $(NO_BLAS),NO_BLAS=1,$(OPENBLAS_LIBS) does not link)): plain-C matmuls about 5x slower; apt install libopenblas-dev")

# One MPI rank per pipeline stage when an MPI compiler wrapper is installed (Open MPI or MPICH); NO_MPI=1 (or no
# mpicc) runs every stage in one process. Both builds run the same schedules and give the same bits.
MPICC := $(if $(NO_MPI),,$(shell command -v mpicc 2> /dev/null))
TRAIN_CC = $(or $(MPICC),$(CC))
TRAIN_MPI = $(if $(MPICC),-DUSE_MPI)

HEADERS = $(wildcard llmc/*.h)

.PHONY: all test test_reference test_cpu test_scripts clean
all: train_gpt2_pp_cpu test_gpt2_pp_cpu

train_gpt2_pp_cpu: train_gpt2_pp.c $(HEADERS)
	$(NO_BLAS_NOTICE)
	$(TRAIN_CC) $(CFLAGS) $(BLAS_CFLAGS) $(TRAIN_MPI) $< -o $@ $(BLAS_LDLIBS) $(LDLIBS)

# the test includes the trainer, whose main() and CLI helpers it does not use
test_gpt2_pp_cpu: test_gpt2_pp.c train_gpt2_pp.c dev/test/reference.h $(HEADERS)
	$(CC) $(CFLAGS) $(BLAS_CFLAGS) -Wno-unused-function $< -o $@ $(BLAS_LDLIBS) $(LDLIBS)

# the plain-C matmuls, checked against the same references
build/test_gpt2_pp_cpu_noblas: test_gpt2_pp.c train_gpt2_pp.c dev/test/reference.h $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) -Wno-unused-function $< -o $@ $(LDLIBS)

# NumPy references for two shapes (see dev/reference/FORMAT.md)
REF_COMMON = --beta1 0.9 --beta2 0.95 --eps 1e-8 --seed 1
build/ref_a.bin: dev/reference/gpt2_ref.py dev/reference/ref_file.py
	@mkdir -p build
	$(PYTHON) dev/reference/gpt2_ref.py --L 4 --C 64 --NH 4 --V 101 --Vp 128 --maxT 32 --B 2 --T 16 --M 4 --K 3 \
	  --lr 1e-3 --wd 0.1 --clip 1.0 $(REF_COMMON) --out $@ --log build/ref_a.log
build/ref_b.bin: dev/reference/gpt2_ref.py dev/reference/ref_file.py
	@mkdir -p build
	$(PYTHON) dev/reference/gpt2_ref.py --L 2 --C 48 --NH 3 --V 77 --Vp 128 --maxT 24 --B 3 --T 24 --M 2 --K 3 \
	  --lr 3e-3 --wd 0.0 --clip 0 $(REF_COMMON) --out $@ --log build/ref_b.log

# the full vocabulary (50,257), small otherwise: a float softmax sum is visible there (test_gpt2_pp.c)
build/ref_v.bin: dev/reference/gpt2_ref.py dev/reference/ref_file.py
	@mkdir -p build
	$(PYTHON) dev/reference/gpt2_ref.py --L 1 --C 32 --NH 2 --V 50257 --Vp 50304 --maxT 16 --B 2 --T 8 --M 2 --K 1 \
	  --lr 1e-3 --wd 0.0 --clip 0 $(REF_COMMON) --out $@ --log build/ref_v.log

include dev/test/schedule.mk
include dev/simt/simt.mk
include dev/cuda/cuda.mk

# ---- the CUDA trainer. Real build: nvcc (GPU_COMPUTE_CAPABILITY=80 or 90, else detected with nvidia-smi,
# else sm_80 and sm_90), MPI flags from the wrapper (`mpicc -show` prints them in Open MPI and MPICH alike).
PRECISION ?= BF16
GPU_COMPUTE_CAPABILITY ?= $(shell nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2> /dev/null | sort -n | head -n 1 | tr -d .)
# (the commas of -gencode would split $(if ...)'s arguments, hence the two variables)
NVCC_ARCH_ONE = -gencode arch=compute_$(GPU_COMPUTE_CAPABILITY),code=[compute_$(GPU_COMPUTE_CAPABILITY),sm_$(GPU_COMPUTE_CAPABILITY)]
NVCC_ARCH_BOTH = -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
NVCC_ARCH = $(if $(GPU_COMPUTE_CAPABILITY),$(NVCC_ARCH_ONE),$(NVCC_ARCH_BOTH))
MPI_SHOW := $(if $(MPICC),$(shell $(MPICC) -show 2> /dev/null))
comma := ,
NVCC_MPI_FLAGS = $(if $(MPICC),-DUSE_MPI $(filter -I% -D%,$(MPI_SHOW)))
NVCC_MPI_LIBS = $(filter -L% -l%,$(MPI_SHOW)) $(patsubst -Wl$(comma)%,-Xlinker %,$(filter -Wl$(comma)%,$(MPI_SHOW)))
# NCCL_HOME: where NCCL is when it is not in the CUDA toolkit or the system's library path
NVCC_LIBS = -L$(CUDA_HOME)/lib64 $(if $(NCCL_HOME),-L$(NCCL_HOME)/lib) -lcublas -lcublasLt -lnccl $(NVCC_MPI_LIBS)
NVCC_FLAGS = -std=c++17 -O3 -Xcompiler -fopenmp -I. $(if $(NCCL_HOME),-I$(NCCL_HOME)/include) -DENABLE_$(PRECISION) $(NVCC_ARCH) $(NVCC_MPI_FLAGS)
CUDA_HEADERS = $(wildcard llmc/*.cuh) llmc/cuda_common.h llmc/cublas_common.h $(HEADERS)

train_gpt2_pp: train_gpt2_pp.cu $(CUDA_HEADERS)
	$(NVCC) $(NVCC_FLAGS) $< -o $@ $(NVCC_LIBS)

# nvcc for sm_80 and sm_90 in every precision, -Xptxas -v; fails on any register spill in our kernels
NVCC_CHECK_FLAGS = -std=c++17 -O3 -I. $(if $(NCCL_HOME),-I$(NCCL_HOME)/include) $(NVCC_ARCH_BOTH) -Xptxas -v -DENABLE_$(notdir $(@D))
define nvcc_check_build
@mkdir -p $(@D)
$(NVCC) $(NVCC_CHECK_FLAGS) $< -o $@ $(NVCC_LIBS) 2> $@.ptxas.log || { cat $@.ptxas.log; exit 1; }
$(PYTHON) dev/simt/ptxas_summary.py $@.ptxas.log > $@.registers.txt || { cat $@.registers.txt; rm -f $@; exit 1; }
endef
build/nvcc/%/train_gpt2_pp: train_gpt2_pp.cu $(CUDA_HEADERS)
	$(nvcc_check_build)
build/nvcc/%/test_gpt2_pp: test_gpt2_pp.cu dev/test/reference.h $(CUDA_HEADERS)
	$(nvcc_check_build)

# ---- the same .cu files under the SIMT CPU runtime (dev/simt), one build per precision
build/sim/%/train_gpt2_pp: $(SIMT_BUILD)/rel-%/train_gpt2_pp.cu.o $(SIMT_BUILD)/rel/libsimt.a
	@mkdir -p $(@D)
	$(call simt_link,rel)
build/sim/%/test_gpt2_pp: $(SIMT_BUILD)/rel-%/test_gpt2_pp.cu.o $(SIMT_BUILD)/rel/libsimt.a
	@mkdir -p $(@D)
	$(call simt_link,rel)

# ---- tests: each suite's runs (which binary, which arguments, which thread orders) are in dev/test/run_suite.sh
test_reference:
	$(PYTHON) dev/reference/test_gpt2_ref.py

test_cpu: test_gpt2_pp_cpu build/test_gpt2_pp_cpu_noblas build/ref_a.bin build/ref_b.bin build/ref_v.bin
	bash dev/test/run_suite.sh $@

# dev/test/NAME.sh, the trainer's command line: bad and hostile input, resume, equivalence across splits,
# profiles, rank failures
TEST_SCRIPTS = test_bad_input test_hostile_input test_resume test_pipeline_equiv test_profile
TEST_SCRIPTS_MPI = test_rank_failure test_data_parallel
test_scripts: $(TEST_SCRIPTS) $(TEST_SCRIPTS_MPI)
$(TEST_SCRIPTS) $(TEST_SCRIPTS_MPI): train_gpt2_pp_cpu
	bash dev/test/$@.sh
test_profile: build/schedule_tool

SIM_PRECISIONS = FP32 BF16 FP16
SIM_TRAINER_BINS = $(foreach p,$(SIM_PRECISIONS),build/sim/$(p)/train_gpt2_pp build/sim/$(p)/test_gpt2_pp)
test_cuda_sim: $(SIM_TRAINER_BINS) build/ref_a.bin build/ref_b.bin build/ref_v.bin train_gpt2_pp_cpu
	bash dev/test/run_suite.sh $@

# scripts/gpu_check.sh's own logic, on the SIMT builds with a stand-in nvidia-smi
test_gpu_check: $(SIM_TRAINER_BINS) $(CUDA_SIMT_BINS) build/ref_a.bin build/ref_b.bin train_gpt2_pp_cpu
	bash dev/test/test_gpu_check.sh

NVCC_TRAINER_BINS = train_gpt2_pp $(foreach p,$(SIM_PRECISIONS),build/nvcc/$(p)/train_gpt2_pp build/nvcc/$(p)/test_gpt2_pp)
nvcc_check: $(NVCC_TRAINER_BINS)
	bash dev/test/run_suite.sh $@

# `make test` runs every suite whose tools are here and prints one line per suite it skips; CI runs them all.
SIMT_SUITES = test_simt test_cuda_kernels test_cuda_sim test_gpu_check
NVCC_SUITES = nvcc_check_simt nvcc_check check_sass
SIMT_HEADERS_FOUND := $(shell $(SIMT_CXX) -x c++ -E -I$(CUDA_HOME)/include -include cuda_runtime.h /dev/null > /dev/null 2>&1 && echo 1)
SIMT_MISSING := $(if $(SIMT_HEADERS_FOUND),,needs $(SIMT_CXX) and the CUDA headers (no cuda_runtime.h in $(CUDA_HOME)/include))
NVCC_MISSING := $(if $(shell command -v $(NVCC) 2> /dev/null),,needs nvcc (no $(NVCC); set CUDA_HOME or NVCC))
MPI_MISSING := $(if $(and $(MPICC),$(shell command -v mpirun 2> /dev/null)),,needs MPI (mpicc and mpirun; apt install libopenmpi-dev openmpi-bin))
suites_or_skips = $(if $(2),$(1:%=skip/%),$(1))
$(SIMT_SUITES:%=skip/%): WHY = $(SIMT_MISSING)
$(NVCC_SUITES:%=skip/%): WHY = $(NVCC_MISSING)
$(TEST_SCRIPTS_MPI:%=skip/%): WHY = $(MPI_MISSING)
skip/%:
	@echo "$*: skipped, $(WHY)"$(if $(CI),; echo "error: CI must run every suite"; exit 1)

FUZZ_MISSING := $(if $(shell echo 'int LLVMFuzzerTestOneInput(const char* d, long n) { return 0; }' | \
  clang -x c - -fsanitize=fuzzer -o /dev/null 2> /dev/null && echo 1),,needs clang with libFuzzer (apt install clang libclang-rt-dev))
$(call suites_or_skips,test_fuzz,x): WHY = $(FUZZ_MISSING)

# Compiling is about half of `make test` on 2 cores, so every binary the suites run is built first on all cores
# (TEST_JOBS); the suites then run one at a time, because several time their runs or start one process per rank.
TEST_JOBS ?= $(shell nproc 2> /dev/null || echo 2)
TEST_BINARIES = train_gpt2_pp_cpu test_gpt2_pp_cpu build/test_gpt2_pp_cpu_noblas build/ref_a.bin build/ref_b.bin \
  build/ref_v.bin build/test_schedule build/schedule_tool \
  $(if $(SIMT_MISSING),,$(SIMT_TESTS:%=$(SIMT_BUILD)/rel/bin/%) $(SIMT_TESTS:%=$(SIMT_BUILD)/asan/bin/%) $(CUDA_SIMT_BINS) $(SIM_TRAINER_BINS)) \
  $(if $(NVCC_MISSING),,$(NVCC_TRAINER_BINS) $(CUDA_SASS_BINS))
test:
	$(MAKE) -j$(TEST_JOBS) test_binaries
	$(MAKE) -j1 test_suites
test_binaries: $(TEST_BINARIES)
test_suites: test_reference test_cpu test_schedule $(TEST_SCRIPTS) $(call suites_or_skips,test_fuzz,$(FUZZ_MISSING)) $(call suites_or_skips,$(TEST_SCRIPTS_MPI),$(MPI_MISSING)) \
      $(call suites_or_skips,$(SIMT_SUITES),$(SIMT_MISSING)) $(call suites_or_skips,$(NVCC_SUITES),$(NVCC_MISSING))

# libFuzzer on every parser (dev/fuzz/), FUZZ_SECONDS each (make test: 30)
fuzz:
	bash dev/fuzz/run.sh
test_fuzz:
	FUZZ_SECONDS=30 FUZZ_SEED=1 bash dev/fuzz/run.sh

# everything scripts/gpu_check.sh runs, prebuilt with nvcc for a GPU machine without compilers
gpu_bundle:
	bash dev/gpu_bundle.sh

clean:
	rm -rf build train_gpt2_pp_cpu test_gpt2_pp_cpu train_gpt2_pp

.PHONY: $(TEST_SCRIPTS) $(TEST_SCRIPTS_MPI) test_cuda_sim test_gpu_check nvcc_check fuzz test_fuzz gpu_bundle test_binaries test_suites

# GPT-2 pipeline-parallel trainer. `make test` runs everything that needs no GPU.
CC ?= gcc
PYTHON ?= python3
CFLAGS ?= -O3 -march=native
CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -fopenmp -I.
LDLIBS = -lm

# Matmuls go through OpenBLAS when it is installed (about 5x faster on 2 cores); NO_BLAS=1 keeps plain C.
ifeq ($(NO_BLAS),)
  ifneq ($(wildcard /usr/include/x86_64-linux-gnu/cblas.h /usr/include/cblas.h /usr/include/openblas/cblas.h),)
    CFLAGS += -DUSE_BLAS $(if $(wildcard /usr/include/openblas/cblas.h),-I/usr/include/openblas)
    LDLIBS += -lopenblas
  endif
endif

# One MPI rank per pipeline stage when OpenMPI is installed; NO_MPI=1 (or no mpicc) runs every stage in one
# process. Both builds run the same schedules and give the same bits.
MPICC := $(if $(NO_MPI),,$(shell command -v mpicc 2> /dev/null))
TRAIN_CC = $(if $(MPICC),$(MPICC),$(CC))
TRAIN_MPI = $(if $(MPICC),-DUSE_MPI)

HEADERS = $(wildcard llmc/*.h)

.PHONY: all test test_reference test_cpu test_scripts clean
all: train_gpt2_pp_cpu test_gpt2_pp_cpu

train_gpt2_pp_cpu: train_gpt2_pp.c $(HEADERS)
	$(TRAIN_CC) $(CFLAGS) $(TRAIN_MPI) $< -o $@ $(LDLIBS)

# the test includes the trainer, whose main() and CLI helpers it does not use
test_gpt2_pp_cpu: test_gpt2_pp.c train_gpt2_pp.c dev/test/reference.h $(HEADERS)
	$(CC) $(CFLAGS) -Wno-unused-function $< -o $@ $(LDLIBS)

# the plain-C matmuls, checked against the same references
build/test_gpt2_pp_cpu_noblas: test_gpt2_pp.c train_gpt2_pp.c $(HEADERS) | build
	$(CC) $(filter-out -DUSE_BLAS -I/usr/include/openblas,$(CFLAGS)) -Wno-unused-function $< -o $@ -lm

build:
	mkdir -p build

# NumPy references for two shapes (see dev/reference/FORMAT.md); regenerated on every test run
REF_COMMON = --beta1 0.9 --beta2 0.95 --eps 1e-8 --seed 1
build/ref_a.bin: dev/reference/gpt2_ref.py dev/reference/ref_file.py | build
	$(PYTHON) dev/reference/gpt2_ref.py --L 4 --C 64 --NH 4 --V 101 --Vp 128 --maxT 32 --B 2 --T 16 --M 4 --K 3 \
	  --lr 1e-3 --wd 0.1 --clip 1.0 $(REF_COMMON) --out $@ --log build/ref_a.log
build/ref_b.bin: dev/reference/gpt2_ref.py dev/reference/ref_file.py | build
	$(PYTHON) dev/reference/gpt2_ref.py --L 2 --C 48 --NH 3 --V 77 --Vp 128 --maxT 24 --B 3 --T 24 --M 2 --K 3 \
	  --lr 3e-3 --wd 0.0 --clip 0 $(REF_COMMON) --out $@ --log build/ref_b.log

test_reference:
	$(PYTHON) dev/reference/test_gpt2_ref.py

# P = 1 checks every activation; P = 2..4 (stages in one process) under both schedules check the loss,
# every gradient and the parameters after each step against the same reference
test_cpu: test_gpt2_pp_cpu build/test_gpt2_pp_cpu_noblas build/ref_a.bin build/ref_b.bin
	./test_gpt2_pp_cpu build/ref_a.bin
	./test_gpt2_pp_cpu build/ref_b.bin
	build/test_gpt2_pp_cpu_noblas build/ref_a.bin
	build/test_gpt2_pp_cpu_noblas build/ref_b.bin
	for P in 2 3 4; do for S in gpipe 1f1b; do ./test_gpt2_pp_cpu build/ref_a.bin $$P $$S || exit 1; done; done
	./test_gpt2_pp_cpu build/ref_b.bin 2 1f1b

# command-line behaviour of the trainer: bad input, resume
test_scripts: train_gpt2_pp_cpu
	bash dev/test/test_bad_input.sh
	bash dev/test/test_resume.sh
	bash dev/test/test_pipeline_equiv.sh
	bash dev/test/test_rank_failure.sh

include dev/test/schedule.mk
include dev/simt/simt.mk
include dev/cuda/cuda.mk

# everything that runs without a GPU; the nvcc builds compile the real binaries (no GPU needed to compile)
test: test_reference test_cpu test_scripts test_schedule test_simt nvcc_check_simt test_cuda_kernels test_cuda_sim nvcc_check

clean:
	rm -rf build train_gpt2_pp_cpu test_gpt2_pp_cpu train_gpt2_pp

# ---- the CUDA trainer. Real build: nvcc (GPU_COMPUTE_CAPABILITY=80 or 90, else detected with nvidia-smi,
# else sm_80 and sm_90). Sim build: the same .cu under the SIMT CPU runtime (dev/simt), one per precision.
PRECISION ?= BF16
NVCC ?= $(CUDA_HOME)/bin/nvcc
GPU_COMPUTE_CAPABILITY ?= $(shell nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2> /dev/null | sort -n | head -n 1 | tr -d .)
# (the commas of -gencode would split $(if ...)'s arguments, hence the two variables)
NVCC_ARCH_ONE = -gencode arch=compute_$(GPU_COMPUTE_CAPABILITY),code=[compute_$(GPU_COMPUTE_CAPABILITY),sm_$(GPU_COMPUTE_CAPABILITY)]
NVCC_ARCH_BOTH = -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
NVCC_ARCH = $(if $(GPU_COMPUTE_CAPABILITY),$(NVCC_ARCH_ONE),$(NVCC_ARCH_BOTH))
NVCC_FLAGS = -std=c++17 -O3 -Xcompiler -fopenmp -I. -DENABLE_$(PRECISION) $(NVCC_ARCH) $(if $(MPICC),-DUSE_MPI $(shell mpicc --showme:compile))
NVCC_LIBS = -lcublas -lcublasLt -lnccl $(if $(MPICC),$(shell mpicc --showme:link))
CUDA_HEADERS = $(wildcard llmc/*.cuh) llmc/cuda_common.h llmc/cublas_common.h $(HEADERS)

train_gpt2_pp: train_gpt2_pp.cu $(CUDA_HEADERS)
	$(NVCC) $(NVCC_FLAGS) $< -o $@ $(NVCC_LIBS)

SIM_PRECISIONS = FP32 BF16 FP16
define sim_trainer_rules
build/sim/$(1)/%.o: $(SIMT_BUILD)/pp/%.cu.cpp $(SIMT_HEADERS)
	@mkdir -p $$(dir $$@)
	$(SIMT_CXX) $(SIMT_CXXFLAGS) -ffp-contract=off -DENABLE_$(1) -I. -include $(SIMT_DIR)/simt.h -MMD -MP -c $$< -o $$@
build/sim/$(1)/%: build/sim/$(1)/%.o $(SIMT_BUILD)/rel/libsimt.a
	$(SIMT_CXX) $(SIMT_CXXFLAGS) $$< $(SIMT_BUILD)/rel/libsimt.a $(SIMT_LDLIBS) -o $$@
endef
$(foreach p,$(SIM_PRECISIONS),$(eval $(call sim_trainer_rules,$(p))))
-include $(wildcard build/sim/*/*.d)

# the CUDA trainer and its test under SIMT, in every precision, against both references; then the sim-mode
# trainer on the shipped data against the CPU trainer
SIM_BINS = $(foreach p,$(SIM_PRECISIONS),build/sim/$(p)/train_gpt2_pp build/sim/$(p)/test_gpt2_pp)
test_cuda_sim: $(SIM_BINS) build/ref_a.bin build/ref_b.bin train_gpt2_pp_cpu
	@for p in $(SIM_PRECISIONS); do for r in a b; do \
	  echo "test_gpt2_pp $$p ref_$$r: `build/sim/$$p/test_gpt2_pp build/ref_$$r.bin > build/sim/test_$$p_$$r.log 2>&1; tail -n 1 build/sim/test_$$p_$$r.log`"; \
	  tail -n 1 build/sim/test_$$p_$$r.log | grep -q ' 0 failed' || { grep FAIL build/sim/test_$$p_$$r.log | head -20; exit 1; }; \
	done; done
	bash dev/test/test_sim_trainer.sh

# nvcc for sm_80 and sm_90 in every precision, -Xptxas -v; fails on any register spill in our kernels
NVCC_CHECK_FLAGS = -std=c++17 -O3 -I. -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -Xptxas -v
nvcc_check: train_gpt2_pp $(foreach p,$(SIM_PRECISIONS),build/nvcc/$(p)/train_gpt2_pp build/nvcc/$(p)/test_gpt2_pp)
	@if ! command -v nvidia-smi > /dev/null; then \
	  build/nvcc/FP32/train_gpt2_pp -x 1 > build/nvcc/nodevice.txt 2>&1; rc=$$?; \
	  if [ $$rc -ne 0 ] && grep -q 'error: no CUDA device' build/nvcc/nodevice.txt; then echo "without a GPU: `cat build/nvcc/nodevice.txt`"; \
	  else echo "FAIL: the GPU trainer without a GPU should say 'no CUDA device' (rc=$$rc)"; cat build/nvcc/nodevice.txt; exit 1; fi; \
	fi
build/nvcc/%/train_gpt2_pp build/nvcc/%/test_gpt2_pp: train_gpt2_pp.cu test_gpt2_pp.cu dev/test/reference.h $(CUDA_HEADERS)
	@mkdir -p build/nvcc/$*
	$(NVCC) $(NVCC_CHECK_FLAGS) -DENABLE_$* train_gpt2_pp.cu -o build/nvcc/$*/train_gpt2_pp $(NVCC_LIBS) 2> build/nvcc/$*/train.ptxas.log || { cat build/nvcc/$*/train.ptxas.log; exit 1; }
	$(PYTHON) dev/simt/ptxas_summary.py build/nvcc/$*/train.ptxas.log > build/nvcc/$*/registers.txt || { cat build/nvcc/$*/registers.txt; exit 1; }
	$(NVCC) $(NVCC_CHECK_FLAGS) -DENABLE_$* test_gpt2_pp.cu -o build/nvcc/$*/test_gpt2_pp $(NVCC_LIBS) 2> build/nvcc/$*/test.ptxas.log || { cat build/nvcc/$*/test.ptxas.log; exit 1; }
	$(PYTHON) dev/simt/ptxas_summary.py build/nvcc/$*/test.ptxas.log > /dev/null

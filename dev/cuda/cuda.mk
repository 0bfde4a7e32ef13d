# dev/cuda/cuda.mk -- GNU make fragment for the kernel tests dev/cuda/*.cu (one per llmc/*.cuh kernel),
# included by the top-level Makefile (or run alone: make -f dev/cuda/cuda.mk test_cuda_kernels).
#
#   make test_cuda_kernels   every test in FP32, BF16 and FP16 under the SIMT CPU runtime (dev/simt), each in three
#                            thread orders, plus a BF16 build with ASan + UBSan (dev/test/run_suite.sh runs them).
#                            Binaries: build/simt/rel-<PREC>/bin/dev/cuda/<test>, build/simt/asan-BF16/bin/dev/cuda/<test>
#   make check_sass          the nvcc builds' SASS (dev/cuda/check_sass.sh): 128-bit global loads in every memory-bound
#                            kernel, HMMA in flash attention, no local memory or spills; needs cuobjdump (see there)
#   make nvcc_kernels        every test compiled by nvcc for sm_80 and sm_90 in every precision, linked against the
#                            real cuBLAS/cuBLASLt (build/cuda/nvcc/<PREC>/<test>, runnable on a GPU). Fails on any
#                            register spill; registers, shared memory and spills of every kernel are summarised in
#                            build/cuda/nvcc/ptxas_summary.txt.
# A subset: make test_cuda_kernels CUDA_TESTS="adamw gelu" CUDA_PRECISIONS=BF16
# The host code of the tests is compiled with -ffp-contract=off (simt.mk's precision variants): the CPU references
# (and, under SIMT, the kernels) then round every operation as written, which the bitwise AdamW/encoder checks rely on.

ifeq ($(SIMT_PP),)
include dev/simt/simt.mk
endif

CUDA_TESTS      ?= $(sort $(basename $(notdir $(wildcard dev/cuda/*.cu))))
CUDA_PRECISIONS ?= FP32 BF16 FP16
CUDA_BUILD      ?= build/cuda
CUDA_NVCC_FLAGS ?= -std=c++17 -O3 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -Xptxas -v -Xcompiler -ffp-contract=off
CUDA_NVCC_LIBS  ?= -L$(CUDA_HOME)/lib64 -lcublas -lcublasLt
CUDA_TEST_HEADERS := dev/cuda/common.h $(wildcard llmc/*.cuh) llmc/cuda_common.h llmc/cublas_common.h

CUDA_SIMT_BINS := $(foreach p,$(CUDA_PRECISIONS),$(CUDA_TESTS:%=$(SIMT_BUILD)/rel-$(p)/bin/dev/cuda/%)) \
                  $(CUDA_TESTS:%=$(SIMT_BUILD)/asan-BF16/bin/dev/cuda/%)
test_cuda_kernels: $(CUDA_SIMT_BINS)
	CUDA_TESTS="$(CUDA_TESTS)" CUDA_PRECISIONS="$(CUDA_PRECISIONS)" bash dev/test/run_suite.sh $@

# nvcc, one rule per precision (the precision is the name of the binary's directory)
define cuda_nvcc_build
@mkdir -p $(@D)
$(NVCC) $(CUDA_NVCC_FLAGS) -DENABLE_$(notdir $(@D)) $< -o $@ $(CUDA_NVCC_LIBS) > $@.ptxas.log 2>&1 || { cat $@.ptxas.log; exit 1; }
@$(SIMT_PYTHON) $(SIMT_DIR)/ptxas_summary.py $@.ptxas.log > $@.registers.txt || { cat $@.registers.txt; rm -f $@; exit 1; }
endef
$(CUDA_BUILD)/nvcc/FP32/%: dev/cuda/%.cu $(CUDA_TEST_HEADERS)
	$(cuda_nvcc_build)
$(CUDA_BUILD)/nvcc/BF16/%: dev/cuda/%.cu $(CUDA_TEST_HEADERS)
	$(cuda_nvcc_build)
$(CUDA_BUILD)/nvcc/FP16/%: dev/cuda/%.cu $(CUDA_TEST_HEADERS)
	$(cuda_nvcc_build)

CUDA_NVCC_BINS := $(foreach p,$(CUDA_PRECISIONS),$(CUDA_TESTS:%=$(CUDA_BUILD)/nvcc/$(p)/%))
nvcc_kernels: $(CUDA_NVCC_BINS)
	tail -n +1 $(CUDA_NVCC_BINS:%=%.registers.txt) > $(CUDA_BUILD)/nvcc/ptxas_summary.txt
	@echo "nvcc_kernels: $(words $(CUDA_NVCC_BINS)) binaries for sm_80 + sm_90, no register spills;" \
	  "registers per kernel: $(CUDA_BUILD)/nvcc/ptxas_summary.txt"

# SASS checks of the nvcc builds (dev/cuda/check_sass.sh's table of binaries and kernels), every precision; the
# binaries are built only where cuobjdump is found (run_suite.sh prints the skip, or fails under CI=true)
CUDA_SASS_TESTS := $(shell bash dev/cuda/check_sass.sh --list)
CUDA_SASS_TOOL := $(shell bash dev/cuda/check_sass.sh --probe > /dev/null 2>&1 && echo 1)
CUDA_SASS_BINS := $(if $(CUDA_SASS_TOOL),$(foreach p,$(CUDA_PRECISIONS),$(CUDA_SASS_TESTS:%=$(CUDA_BUILD)/nvcc/$(p)/%)))
check_sass: $(CUDA_SASS_BINS)
	CUDA_PRECISIONS="$(CUDA_PRECISIONS)" bash dev/test/run_suite.sh $@

.PHONY: test_cuda_kernels nvcc_kernels check_sass

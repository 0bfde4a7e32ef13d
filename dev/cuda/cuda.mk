# dev/cuda/cuda.mk -- GNU make fragment for the kernel tests in dev/cuda/*.cu (one per llmc/*.cuh kernel).
# Include it from the repository root after dev/simt/simt.mk (it includes simt.mk itself if that is missing):
#     -include dev/simt/simt.mk
#     -include dev/cuda/cuda.mk
# or run it directly: make -f dev/cuda/cuda.mk test_cuda_kernels
#
#   make test_cuda_kernels   every test, in FP32, BF16 and FP16, under the SIMT CPU runtime (dev/simt), each in
#                            three thread orders (SIMT_SCHED=forward, reverse, random:$(SIMT_SEED)), plus a BF16
#                            build with ASan + UBSan. Binaries: build/cuda/simt-rel/<PREC>/<test> and
#                            build/cuda/simt-asan/BF16/<test>; logs: build/cuda/logs/<test>.<PREC>[.order|.asan].log.
#                            Each test ends with "N passed, N failed" and exits non-zero on a failure.
#   make nvcc_kernels        every test compiled by nvcc for sm_80 and sm_90 in all three precisions, linked
#                            against the real cuBLAS/cuBLASLt (build/cuda/nvcc/<PREC>/<test>, runnable on a GPU).
#                            Fails if ptxas reports a spill store or load in any kernel; the registers, shared
#                            memory and spills of every kernel are summarised in build/cuda/nvcc/ptxas_summary.txt.
#   make clean_cuda_kernels
#
# Variables: CUDA_TESTS (default: every dev/cuda/*.cu), CUDA_PRECISIONS (FP32 BF16 FP16).
# The host code of the tests is compiled with -ffp-contract=off: the CPU references (and, under SIMT, the
# kernels) then round every operation as written, which the bitwise AdamW/encoder checks rely on.

ifeq ($(SIMT_PP),)
include dev/simt/simt.mk
endif

CUDA_KERNELS_SAVED_DEFAULT_GOAL := $(.DEFAULT_GOAL)

CUDA_TESTS      ?= $(sort $(basename $(notdir $(wildcard dev/cuda/*.cu))))
CUDA_PRECISIONS ?= FP32 BF16 FP16
CUDA_BUILD      ?= build/cuda
CUDA_NVCC       ?= $(CUDA_HOME)/bin/nvcc
CUDA_NVCC_ARCHS := -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
CUDA_NVCC_FLAGS ?= -std=c++17 -O3 $(CUDA_NVCC_ARCHS) -Xptxas -v -Xcompiler -ffp-contract=off
CUDA_NVCC_LIBS  ?= -lcublas -lcublasLt
CUDA_TEST_HEADERS := dev/cuda/common.h $(wildcard llmc/*.cuh) llmc/cuda_common.h llmc/cublas_common.h

# ---- SIMT CPU runtime: dev/simt/simt.mk rewrites dev/cuda/X.cu into $(SIMT_BUILD)/pp/dev/cuda/X.cu.cpp
# (headers mirrored); we compile that once per precision and variant and link it with that variant's libsimt.a.
# Variants as in simt.mk: rel (clang, -O2) and asan (gcc, ASan + UBSan).
define cuda_simt_rules
$(CUDA_BUILD)/simt-$(2)/$(1)/%.o: $(SIMT_BUILD)/pp/dev/cuda/%.cu.cpp $(SIMT_HEADERS)
	@mkdir -p $$(dir $$@)
	$(SIMT_CXX_$(2)) $(SIMT_CXXFLAGS) $(SIMT_FLAGS_$(2)) -ffp-contract=off -DENABLE_$(1) -Idev/cuda -include $(SIMT_DIR)/simt.h -MMD -MP -c $$< -o $$@
$(CUDA_BUILD)/simt-$(2)/$(1)/%: $(CUDA_BUILD)/simt-$(2)/$(1)/%.o $(SIMT_BUILD)/$(2)/libsimt.a
	$(SIMT_CXX_$(2)) $(SIMT_CXXFLAGS) $(SIMT_FLAGS_$(2)) $$< $(SIMT_BUILD)/$(2)/libsimt.a $(SIMT_LDLIBS) -o $$@
endef
$(foreach p,$(CUDA_PRECISIONS),$(eval $(call cuda_simt_rules,$(p),rel)))
$(eval $(call cuda_simt_rules,BF16,asan))

CUDA_SIMT_BINS := $(foreach p,$(CUDA_PRECISIONS),$(addprefix $(CUDA_BUILD)/simt-rel/$(p)/,$(CUDA_TESTS)))
CUDA_ASAN_BINS := $(addprefix $(CUDA_BUILD)/simt-asan/BF16/,$(CUDA_TESTS))
CUDA_LOGS := $(CUDA_BUILD)/logs
# each run: binary directory : SIMT_SCHED (thread order) : log suffix
CUDA_RUNS := $(foreach p,$(CUDA_PRECISIONS),simt-rel/$(p):forward:$(p) simt-rel/$(p):reverse:$(p).reverse \
               simt-rel/$(p):random\:$(SIMT_SEED):$(p).random) simt-asan/BF16:random\:$(SIMT_SEED):BF16.asan

cuda_kernels_simt: $(CUDA_SIMT_BINS) $(CUDA_ASAN_BINS)

# Every test in every precision under three thread orders (forward, reverse, random), plus a BF16 ASan+UBSan
# build. Runs everything even after a failure, prints each run's last line, then fails if any run failed.
test_cuda_kernels: $(CUDA_SIMT_BINS) $(CUDA_ASAN_BINS)
	@mkdir -p $(CUDA_LOGS)
	@fails=0; start=$$(date +%s); \
	for run in $(CUDA_RUNS); do \
	  dir=$${run%%:*}; rest=$${run#*:}; sched=$${rest%:*}; suffix=$${rest##*:}; sched=$$(echo "$$sched" | tr -d '\\'); \
	  for t in $(CUDA_TESTS); do \
	    log=$(CUDA_LOGS)/$$t.$$suffix.log; \
	    if OPENBLAS_NUM_THREADS=1 SIMT_SCHED=$$sched $(CUDA_BUILD)/$$dir/$$t > $$log 2>&1; then \
	      printf '%-20s %-14s %s\n' "$$t" "$$suffix" "`tail -n 1 $$log`"; \
	    else cat $$log; printf '%-20s %-14s FAILED (log: %s)\n' "$$t" "$$suffix" "$$log"; fails=$$((fails + 1)); fi; \
	  done; \
	done; \
	echo "test_cuda_kernels: $$fails failing runs, $$(( $$(date +%s) - start )) s"; \
	test $$fails -eq 0

# ---- nvcc: sm_80 + sm_90, spill check, real cuBLAS/cuBLASLt
define cuda_nvcc_precision_rules
$(CUDA_BUILD)/nvcc/$(1)/%: dev/cuda/%.cu $(CUDA_TEST_HEADERS)
	@mkdir -p $$(dir $$@)
	$(CUDA_NVCC) $(CUDA_NVCC_FLAGS) -DENABLE_$(1) $$< -o $$@ $(CUDA_NVCC_LIBS) > $$@.ptxas.log 2>&1 || { cat $$@.ptxas.log; exit 1; }
	@if grep -E "[1-9][0-9]* bytes spill (stores|loads)" $$@.ptxas.log; then \
	  echo "ERROR: register spills in $$@ (see $$@.ptxas.log)"; rm -f $$@; exit 1; fi
endef
$(foreach p,$(CUDA_PRECISIONS),$(eval $(call cuda_nvcc_precision_rules,$(p))))

CUDA_NVCC_BINS := $(foreach p,$(CUDA_PRECISIONS),$(addprefix $(CUDA_BUILD)/nvcc/$(p)/,$(CUDA_TESTS)))

nvcc_kernels: $(CUDA_NVCC_BINS)
	@for p in $(CUDA_PRECISIONS); do for t in $(CUDA_TESTS); do \
	  echo "== $$p $$t"; $(SIMT_PYTHON) $(SIMT_DIR)/ptxas_summary.py $(CUDA_BUILD)/nvcc/$$p/$$t.ptxas.log || exit 1; \
	done; done > $(CUDA_BUILD)/nvcc/ptxas_summary.txt
	@echo "nvcc_kernels: $(words $(CUDA_NVCC_BINS)) binaries for sm_80 + sm_90, no register spills;" \
	  "registers per kernel: $(CUDA_BUILD)/nvcc/ptxas_summary.txt"

clean_cuda_kernels:
	rm -rf $(CUDA_BUILD)

.PHONY: test_cuda_kernels nvcc_kernels cuda_kernels_simt clean_cuda_kernels
.SECONDARY: $(addsuffix .o,$(CUDA_SIMT_BINS) $(CUDA_ASAN_BINS))
.DEFAULT_GOAL := $(CUDA_KERNELS_SAVED_DEFAULT_GOAL)

-include $(wildcard $(CUDA_BUILD)/simt-*/*/*.d)

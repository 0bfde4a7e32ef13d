# dev/simt/simt.mk -- GNU make fragment for sim mode: build this project's .cu files for the CPU
# with the SIMT runtime (dev/simt/README.md), and check the same files with nvcc.
# Include it from the repo root (the top-level Makefile does `include dev/simt/simt.mk`), or run
# it directly: `make -f dev/simt/simt.mk test_simt`. All outputs go under build/simt/.
#
# Building your own .cu in sim mode (VARIANT is rel, or asan for ASan+UBSan):
#   build/simt/pp/foo.cu.cpp       foo.cu after simt_pp.py (quoted headers mirrored under pp/inc/)
#   build/simt/VARIANT/foo.cu.o    that, compiled by $(SIMT_CXX) with -include dev/simt/simt.h
#   build/simt/VARIANT/bar.cpp.o   a host-only C++ file (no rewriting), bar.c.o a C file
#   build/simt/VARIANT/libsimt.a   the runtime + cuBLAS/cuBLASLt + NCCL shims
# and one line makes a program:
#   $(eval $(call simt_program,test_foo,dev/cuda/test_foo.cu dev/cuda/ref.c))   # -> build/simt/rel/bin/test_foo
#   $(eval $(call simt_program,test_foo,dev/cuda/test_foo.cu,asan))            # -> build/simt/asan/bin/test_foo
# or link by hand in a recipe:  $(call simt_link,rel)   (links the .o files among $^).
# nvcc: build/simt/nvcc/foo.cu.o (sm_80 + sm_90, -Xptxas -v; fails on register spills), and
#   $(call simt_nvcc_link) links the .o files among $^ against the real cuBLAS/cuBLASLt/NCCL.

SIMT_SAVED_DEFAULT_GOAL := $(.DEFAULT_GOAL)  # restored at the end: including us must not change `make`'s default
SIMT_DIR    ?= dev/simt
SIMT_BUILD  ?= build/simt
CUDA_HOME   ?= /usr/local/cuda
SIMT_CXX    ?= clang++
SIMT_CC     ?= clang
# The sanitizer build uses gcc: clang 14's UBSan does not check the alignment of whole-struct
# loads such as *(const int4*)p (it emits a memcpy), and that is how 128-bit loads are written.
# (gcc ignores the shared-memory section for statics in templates, so that build poisons less
# shared memory; the three clang runs cover it.)
SIMT_ASAN_CXX ?= g++
SIMT_ASAN_CC  ?= gcc
SIMT_PYTHON ?= python3
SIMT_NVCC   ?= $(CUDA_HOME)/bin/nvcc
# Directories searched for quoted #includes (by the rewriter and the compiler).
SIMT_INCLUDES ?= .

# OpenBLAS for the GEMMs (apt: libopenblas-dev); without it a plain loop, about 6x slower.
SIMT_HAVE_OPENBLAS := $(shell printf '\#include <cblas.h>\n' | $(SIMT_CXX) -E -x c++ - >/dev/null 2>&1 && echo 1)
ifeq ($(SIMT_HAVE_OPENBLAS),1)
SIMT_BLAS_LIBS :=-lopenblas
else
SIMT_BLAS_LIBS :=
SIMT_BLAS_DEFS := -DSIMT_NO_OPENBLAS
endif

# -fno-omit-frame-pointer: crash, stack-overflow and watchdog reports walk the frame pointers to
# name the kernel's source lines; DWARF 4 because binutils' addr2line misreads clang's DWARF 5;
# stack-clash protection so that a big local array cannot jump over a fiber stack's guard page.
SIMT_COMMON   := -g -gdwarf-4 -fno-omit-frame-pointer -fstack-clash-protection -DSIMT_CPU -I$(CUDA_HOME)/include -I$(SIMT_DIR) $(addprefix -I,$(SIMT_INCLUDES))
SIMT_CXXFLAGS ?= -std=c++17 -O2 $(SIMT_COMMON) -Wall -Wno-unused-function -Wno-sign-compare $(SIMT_BLAS_DEFS)
SIMT_CFLAGS   ?= -std=gnu11 -O2 $(SIMT_COMMON) -Wall
SIMT_LDLIBS   ?= $(SIMT_BLAS_LIBS) -lpthread -ldl -lm
# Per-variant extra flags. asan: out-of-bounds (heap, dynamic smem), misaligned vector accesses,
# static-smem index overruns; any finding aborts the run.
SIMT_FLAGS_rel  :=
SIMT_FLAGS_asan := -O1 -fsanitize=address,undefined -fno-sanitize-recover=all
SIMT_CXX_rel := $(SIMT_CXX)
SIMT_CC_rel  := $(SIMT_CC)
SIMT_CXX_asan := $(SIMT_ASAN_CXX)
SIMT_CC_asan  := $(SIMT_ASAN_CC)
SIMT_VARIANTS   := rel asan

SIMT_HEADERS := $(SIMT_DIR)/simt.h $(SIMT_DIR)/simt_host.h $(SIMT_DIR)/simt_compat.h $(SIMT_DIR)/simt_test_util.h
SIMT_PP      := $(SIMT_DIR)/simt_pp.py

# ---- rewriting (variant independent)
$(SIMT_BUILD)/pp/%.cu.cpp: %.cu $(SIMT_PP)
	@mkdir -p $(dir $@)
	$(SIMT_PYTHON) $(SIMT_PP) $(addprefix -I ,$(SIMT_INCLUDES)) --mirror $(SIMT_BUILD)/pp/inc --depfile $@.d $< $@

# ---- compiling, per variant
define simt_variant_rules
$(SIMT_BUILD)/$(1)/%.cu.o: $(SIMT_BUILD)/pp/%.cu.cpp $(SIMT_HEADERS)
	@mkdir -p $$(dir $$@)
	$(SIMT_CXX_$(1)) $(SIMT_CXXFLAGS) $(SIMT_FLAGS_$(1)) -I$$(dir $$*) -include $(SIMT_DIR)/simt.h -MMD -MP -c $$< -o $$@
$(SIMT_BUILD)/$(1)/%.cpp.o: %.cpp
	@mkdir -p $$(dir $$@)
	$(SIMT_CXX_$(1)) $(SIMT_CXXFLAGS) $(SIMT_FLAGS_$(1)) -MMD -MP -c $$< -o $$@
$(SIMT_BUILD)/$(1)/%.c.o: %.c
	@mkdir -p $$(dir $$@)
	$(SIMT_CC_$(1)) $(SIMT_CFLAGS) $(SIMT_FLAGS_$(1)) -MMD -MP -c $$< -o $$@
$(SIMT_BUILD)/$(1)/libsimt.a: $(SIMT_BUILD)/$(1)/$(SIMT_DIR)/simt_runtime.cpp.o $(SIMT_BUILD)/$(1)/$(SIMT_DIR)/cublas_cpu.cpp.o \
                              $(SIMT_BUILD)/$(1)/$(SIMT_DIR)/nccl_cpu.cpp.o
	rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach v,$(SIMT_VARIANTS),$(eval $(call simt_variant_rules,$(v))))

# $(call simt_link,VARIANT): recipe line that links the .o files among $^ with the runtime
simt_link = $(SIMT_CXX_$(1)) $(SIMT_CXXFLAGS) $(SIMT_FLAGS_$(1)) $(filter %.o,$^) $(SIMT_BUILD)/$(1)/libsimt.a $(SIMT_LDLIBS) -o $@
simt_objs = $(patsubst %,$(SIMT_BUILD)/$(2)/%.o,$(1))
# $(eval $(call simt_program,NAME,SOURCES[,VARIANT])) -> build/simt/VARIANT/bin/NAME
define simt_program
$(SIMT_BUILD)/$(or $(3),rel)/bin/$(1): $(call simt_objs,$(2),$(or $(3),rel)) $(SIMT_BUILD)/$(or $(3),rel)/libsimt.a
	@mkdir -p $$(dir $$@)
	$$(call simt_link,$(or $(3),rel))
endef

# ---- nvcc: the same .cu for sm_80 and sm_90; register/spill report kept next to the object
SIMT_NVCC_ARCHS := -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
SIMT_NVCC_FLAGS ?= -std=c++17 -O2 $(SIMT_NVCC_ARCHS) -Xptxas -v,-warn-spills,-warn-lmem-usage -I$(SIMT_DIR) $(addprefix -I,$(SIMT_INCLUDES))
SIMT_NVCC_LIBS  ?= -lcublas -lcublasLt -lnccl
$(SIMT_BUILD)/nvcc/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(SIMT_NVCC) $(SIMT_NVCC_FLAGS) -c $< -o $@ 2> $@.ptxas.log || { cat $@.ptxas.log; exit 1; }
	@$(SIMT_PYTHON) $(SIMT_DIR)/ptxas_summary.py $@.ptxas.log || { rm -f $@; exit 1; }  # a rerun must fail too
simt_nvcc_link = $(SIMT_NVCC) $(SIMT_NVCC_ARCHS) $(filter %.o,$^) -o $@ $(SIMT_NVCC_LIBS)

# ---- the runtime's own tests
$(eval $(call simt_program,simt_selftest,$(SIMT_DIR)/tests/simt_selftest.cu))
$(eval $(call simt_program,simt_selftest,$(SIMT_DIR)/tests/simt_selftest.cu,asan))
$(eval $(call simt_program,simt_libs_test,$(SIMT_DIR)/tests/simt_libs_test.cu))
$(eval $(call simt_program,simt_libs_test,$(SIMT_DIR)/tests/simt_libs_test.cu,asan))
$(eval $(call simt_program,simt_bench,$(SIMT_DIR)/tests/simt_bench.cu))

SIMT_SEED ?= 1
# name:variant:SIMT_SCHED for each run of `make test_simt`
SIMT_RUNS := forward:rel:forward reverse:rel:reverse random:rel:random:$(SIMT_SEED) asan:asan:random:$(SIMT_SEED)
SIMT_LOGS := $(SIMT_BUILD)/logs

# Each run writes a log and prints its last line; a failing run prints its whole log.
define simt_run_rule
simt_run_$(word 1,$(subst :, ,$(1))): $(SIMT_BUILD)/$(word 2,$(subst :, ,$(1)))/bin/simt_selftest $(SIMT_BUILD)/$(word 2,$(subst :, ,$(1)))/bin/simt_libs_test
	@mkdir -p $(SIMT_LOGS)
	@for t in simt_selftest simt_libs_test; do \
	  log=$(SIMT_LOGS)/$$$$t.$(word 1,$(subst :, ,$(1))).log; \
	  if SIMT_SCHED=$(subst $(word 1,$(subst :, ,$(1))):$(word 2,$(subst :, ,$(1))):,,$(1)) $(SIMT_BUILD)/$(word 2,$(subst :, ,$(1)))/bin/$$$$t > $$$$log 2>&1; then \
	    echo "$$$$t [$(word 1,$(subst :, ,$(1)))]: `tail -n 1 $$$$log`"; \
	  else cat $$$$log; echo "$$$$t [$(word 1,$(subst :, ,$(1)))]: FAILED (log: $$$$log)"; exit 1; fi; \
	done
.PHONY: simt_run_$(word 1,$(subst :, ,$(1)))
endef
$(foreach r,$(SIMT_RUNS),$(eval $(call simt_run_rule,$(r))))

simt_run_pp: $(SIMT_PP)
	@mkdir -p $(SIMT_LOGS)
	@if $(SIMT_PYTHON) $(SIMT_DIR)/tests/test_simt_pp.py > $(SIMT_LOGS)/test_simt_pp.log 2>&1; then \
	  echo "test_simt_pp: `tail -n 1 $(SIMT_LOGS)/test_simt_pp.log`"; \
	else cat $(SIMT_LOGS)/test_simt_pp.log; echo "test_simt_pp: FAILED"; exit 1; fi

# All self-tests: three thread orders, one ASan+UBSan run, and the rewriter's tests.
test_simt: $(foreach r,$(SIMT_RUNS),simt_run_$(word 1,$(subst :, ,$(r)))) simt_run_pp

# Micro-benchmarks quoted in dev/simt/README.md.
bench_simt: $(SIMT_BUILD)/rel/bin/simt_bench
	$(SIMT_BUILD)/rel/bin/simt_bench

# nvcc for sm_80 and sm_90: compile (fails on any register spill), print registers per kernel,
# and link against the real cuBLAS, cuBLASLt and NCCL (runs only on a GPU machine).
$(SIMT_BUILD)/nvcc/bin/simt_libs_test: $(SIMT_BUILD)/nvcc/$(SIMT_DIR)/tests/simt_libs_test.cu.o
	@mkdir -p $(dir $@)
	$(simt_nvcc_link)
nvcc_check_simt: $(SIMT_BUILD)/nvcc/bin/simt_libs_test $(SIMT_BUILD)/nvcc/$(SIMT_DIR)/tests/simt_bench.cu.o

clean_simt:
	rm -rf $(SIMT_BUILD)

.PHONY: test_simt simt_run_pp bench_simt nvcc_check_simt clean_simt
.PRECIOUS: $(SIMT_BUILD)/pp/%.cu.cpp  # keep the rewritten sources for reading and for debuggers
.DEFAULT_GOAL := $(SIMT_SAVED_DEFAULT_GOAL)

-include $(shell find $(SIMT_BUILD) -name '*.d' 2>/dev/null)

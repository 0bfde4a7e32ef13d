# dev/simt/simt.mk -- GNU make fragment for sim mode: build this project's .cu files for the CPU with the
# SIMT runtime (dev/simt/README.md), and check the same files with nvcc. Included by the top-level Makefile
# (or run alone: make -f dev/simt/simt.mk test_simt); all outputs go under build/simt/.
#
#   build/simt/pp/foo.cu.cpp     foo.cu after simt_pp.py (quoted headers mirrored under pp/inc/)
#   build/simt/V/foo.cu.o        that, compiled with -include dev/simt/simt.h, for the variant V:
#                                  rel   clang -O2
#                                  asan  gcc, ASan + UBSan (any finding aborts the run)
#                                  rel-BF16, asan-FP32, ...: either, with -DENABLE_<precision> -ffp-contract=off
#   build/simt/V/foo.cpp.o       host C++ (not rewritten); foo.c.o host C
#   build/simt/V/bin/foo         a program made of foo.cu alone
#   $(call simt_link,V)          a recipe line that links the .o files among $^ (several sources)
#   build/simt/nvcc/foo.cu.o     nvcc for sm_80 + sm_90, -Xptxas -v; fails on any register spill

SIMT_DIR    ?= dev/simt
SIMT_BUILD  ?= build/simt
CUDA_HOME   ?= /usr/local/cuda
NVCC        ?= $(CUDA_HOME)/bin/nvcc
SIMT_CXX    ?= clang++
SIMT_CC     ?= clang
# The sanitizer build uses gcc: clang 14's UBSan does not check the alignment of whole-struct loads such as
# *(const int4*)p (it emits a memcpy), and that is how 128-bit loads are written. (gcc ignores the
# shared-memory section for statics in templates, so that build poisons less shared memory; the three clang
# runs cover it.)
SIMT_ASAN_CXX ?= g++
SIMT_ASAN_CC  ?= gcc
SIMT_PYTHON ?= python3
# Directories searched for quoted #includes (by the rewriter and the compiler).
SIMT_INCLUDES ?= .
SIMT_PRECISIONS := FP32 BF16 FP16

# OpenBLAS for the GEMMs when it links (apt: libopenblas-dev); else a plain loop, about 6x slower.
# A header proves nothing: libblas-dev ships a cblas.h without OpenBLAS. OPENBLAS=none tests the fallback.
OPENBLAS ?= openblas
SIMT_OPENBLAS_LIBS := $(or $(shell pkg-config --libs $(OPENBLAS) 2> /dev/null),-l$(OPENBLAS))
SIMT_HAVE_OPENBLAS := $(shell echo 'char cblas_sgemm(void); int main(void) { return cblas_sgemm(); }' | \
                        $(SIMT_CC) -x c - $(SIMT_OPENBLAS_LIBS) -o /dev/null 2> /dev/null && echo 1)
SIMT_BLAS_LIBS := $(if $(SIMT_HAVE_OPENBLAS),$(SIMT_OPENBLAS_LIBS))
SIMT_BLAS_DEFS := $(if $(SIMT_HAVE_OPENBLAS),$(shell pkg-config --cflags $(OPENBLAS) 2> /dev/null),-DSIMT_NO_OPENBLAS)

# -fno-omit-frame-pointer: crash, stack-overflow and watchdog reports walk the frame pointers to name the
# kernel's source lines; DWARF 4 because binutils' addr2line misreads clang's DWARF 5; stack-clash protection
# so that a big local array cannot jump over a fiber stack's guard page.
SIMT_COMMON   := -g -gdwarf-4 -fno-omit-frame-pointer -fstack-clash-protection -DSIMT_CPU -I$(CUDA_HOME)/include -I$(SIMT_DIR) $(addprefix -I,$(SIMT_INCLUDES))
SIMT_CXXFLAGS ?= -std=c++17 -O2 $(SIMT_COMMON) -Wall -Wno-unused-function -Wno-sign-compare $(SIMT_BLAS_DEFS)
SIMT_CFLAGS   ?= -std=gnu11 -O2 $(SIMT_COMMON) -Wall
SIMT_LDLIBS   ?= $(SIMT_BLAS_LIBS) -lpthread -ldl -lm
SIMT_CXX_rel  := $(SIMT_CXX)
SIMT_CC_rel   := $(SIMT_CC)
SIMT_FLAGS_rel :=
SIMT_CXX_asan := $(SIMT_ASAN_CXX)
SIMT_CC_asan  := $(SIMT_ASAN_CC)
SIMT_FLAGS_asan := -O1 -fsanitize=address,undefined -fno-sanitize-recover=all
# A precision variant is its base variant plus these (the CPU references round every operation as written,
# which the bitwise checks rely on); it links its base's libsimt.a.
SIMT_FLAGS_PREC = -ffp-contract=off -DENABLE_$(1)

SIMT_HEADERS := $(SIMT_DIR)/simt.h $(SIMT_DIR)/simt_host.h $(SIMT_DIR)/simt_compat.h $(SIMT_DIR)/simt_test_util.h
SIMT_HEADERS += $(SIMT_DIR)/simt_wmma.h
SIMT_PP      := $(SIMT_DIR)/simt_pp.py

$(SIMT_BUILD)/pp/%.cu.cpp: %.cu $(SIMT_PP)
	@mkdir -p $(dir $@)
	$(SIMT_PYTHON) $(SIMT_PP) $(addprefix -I ,$(SIMT_INCLUDES)) --mirror $(SIMT_BUILD)/pp/inc --depfile $@.d $< $@

# $(1): variant, $(2): its base (rel or asan), $(3): its flags
define simt_variant_rules
$(SIMT_BUILD)/$(1)/%.cu.o: $(SIMT_BUILD)/pp/%.cu.cpp $(SIMT_HEADERS)
	@mkdir -p $$(dir $$@)
	$(SIMT_CXX_$(2)) $(SIMT_CXXFLAGS) $(3) -I$$(dir $$*) -include $(SIMT_DIR)/simt.h -MMD -MP -c $$< -o $$@
$(SIMT_BUILD)/$(1)/%.cpp.o: %.cpp
	@mkdir -p $$(dir $$@)
	$(SIMT_CXX_$(2)) $(SIMT_CXXFLAGS) $(3) -MMD -MP -c $$< -o $$@
$(SIMT_BUILD)/$(1)/%.c.o: %.c
	@mkdir -p $$(dir $$@)
	$(SIMT_CC_$(2)) $(SIMT_CFLAGS) $(3) -MMD -MP -c $$< -o $$@
$(SIMT_BUILD)/$(1)/bin/%: $(SIMT_BUILD)/$(1)/%.cu.o $(SIMT_BUILD)/$(2)/libsimt.a
	@mkdir -p $$(dir $$@)
	$$(call simt_link,$(2))
endef
$(foreach b,rel asan,$(eval $(call simt_variant_rules,$(b),$(b),$(SIMT_FLAGS_$(b)))) \
  $(foreach p,$(SIMT_PRECISIONS),$(eval $(call simt_variant_rules,$(b)-$(p),$(b),$(SIMT_FLAGS_$(b)) $(call SIMT_FLAGS_PREC,$(p))))))

SIMT_LIB_SOURCES := simt_runtime cublas_cpu nccl_cpu
$(SIMT_BUILD)/rel/libsimt.a: $(SIMT_LIB_SOURCES:%=$(SIMT_BUILD)/rel/$(SIMT_DIR)/%.cpp.o)
	rm -f $@ && ar rcs $@ $^
$(SIMT_BUILD)/asan/libsimt.a: $(SIMT_LIB_SOURCES:%=$(SIMT_BUILD)/asan/$(SIMT_DIR)/%.cpp.o)
	rm -f $@ && ar rcs $@ $^

# $(call simt_link,BASE): links the .o files among $^ with the runtime (BASE: rel or asan)
simt_link = $(SIMT_CXX_$(1)) $(SIMT_CXXFLAGS) $(SIMT_FLAGS_$(1)) $(filter %.o,$^) $(SIMT_BUILD)/$(1)/libsimt.a $(SIMT_LDLIBS) -o $@

# nvcc: the same .cu for sm_80 and sm_90; the register/spill report is kept next to the object
SIMT_NVCC_ARCHS := -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
SIMT_NVCC_FLAGS ?= -std=c++17 -O2 $(SIMT_NVCC_ARCHS) -Xptxas -v,-warn-spills,-warn-lmem-usage -I$(SIMT_DIR) $(addprefix -I,$(SIMT_INCLUDES))
SIMT_NVCC_LIBS  ?= -L$(CUDA_HOME)/lib64 -lcublas -lcublasLt -lnccl
$(SIMT_BUILD)/nvcc/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(SIMT_NVCC_FLAGS) -c $< -o $@ 2> $@.ptxas.log || { cat $@.ptxas.log; exit 1; }
	@$(SIMT_PYTHON) $(SIMT_DIR)/ptxas_summary.py $@.ptxas.log || { rm -f $@; exit 1; }  # a rerun must fail too

# the runtime's own tests (dev/test/run_suite.sh test_simt runs them) and benchmarks
SIMT_TESTS := $(SIMT_DIR)/tests/simt_selftest $(SIMT_DIR)/tests/simt_libs_test
test_simt: $(SIMT_TESTS:%=$(SIMT_BUILD)/rel/bin/%) $(SIMT_TESTS:%=$(SIMT_BUILD)/asan/bin/%)
	bash dev/test/run_suite.sh $@

bench_simt: $(SIMT_BUILD)/rel/bin/$(SIMT_DIR)/tests/simt_bench
	OPENBLAS_NUM_THREADS=1 $<

# nvcc for sm_80 and sm_90: compile (fails on any register spill), print registers per kernel, and link
# against the real cuBLAS, cuBLASLt and NCCL (the binary runs only on a GPU machine)
$(SIMT_BUILD)/nvcc/bin/simt_libs_test: $(SIMT_BUILD)/nvcc/$(SIMT_DIR)/tests/simt_libs_test.cu.o
	@mkdir -p $(dir $@)
	$(NVCC) $(SIMT_NVCC_ARCHS) $^ -o $@ $(SIMT_NVCC_LIBS)
nvcc_check_simt: $(SIMT_BUILD)/nvcc/bin/simt_libs_test $(SIMT_BUILD)/nvcc/$(SIMT_DIR)/tests/simt_bench.cu.o

.PHONY: test_simt bench_simt nvcc_check_simt
.SECONDARY:  # keep the objects and the rewritten sources (for reading, and for debuggers)

-include $(shell find $(SIMT_BUILD) -name '*.d' 2> /dev/null)

# Make fragment for the pipeline schedule / partition unit tests (pure C, no GPU).
# Include it from the top-level Makefile, which runs from the repo root:
#   include dev/test/schedule.mk
# Targets:
#   make test_schedule   build build/test_schedule with $(CC) (C11, -Wall -Wextra -Werror),
#                        run it, then check that the headers and the test compile as C++
#   make schedule_tool   build build/schedule_tool (print / simulate / trace a schedule)

SCHED_CFLAGS ?= -O2 -std=c11 -Wall -Wextra -Werror
SCHED_CXX ?= $(CXX)
SCHED_CXXFLAGS ?= -std=c++17 -Wall -Wextra -Werror
SCHED_HEADERS := llmc/schedule.h llmc/schedule_text.h llmc/schedule_sim.h llmc/schedule_auto.h llmc/partition.h

.PHONY: test_schedule test_schedule_cxx schedule_tool

build/test_schedule: dev/test/test_schedule.c $(SCHED_HEADERS)
	@mkdir -p build
	$(CC) $(SCHED_CFLAGS) -I. $< -o $@ -lm

build/schedule_tool: dev/test/schedule_tool.c $(SCHED_HEADERS)
	@mkdir -p build
	$(CC) $(SCHED_CFLAGS) -I. $< -o $@ -lm

# the CUDA trainer includes the same headers: they must also be valid C++
test_schedule_cxx: $(SCHED_HEADERS) dev/test/test_schedule.c
	printf '#include "llmc/schedule.h"\n#include "llmc/schedule_text.h"\n#include "llmc/schedule_sim.h"\n#include "llmc/schedule_auto.h"\n#include "llmc/partition.h"\n' | $(SCHED_CXX) -x c++ $(SCHED_CXXFLAGS) -fsyntax-only -I. -
	$(SCHED_CXX) -x c++ $(SCHED_CXXFLAGS) -fsyntax-only -I. dev/test/test_schedule.c

test_schedule: build/test_schedule test_schedule_cxx
	./build/test_schedule

schedule_tool: build/schedule_tool

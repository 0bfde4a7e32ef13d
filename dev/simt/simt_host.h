// simt_host.h -- host-side entry points of the SIMT runtime, for code that does not include
// simt.h (the cuBLAS/NCCL shims, test harnesses compiled as plain host C++). Sim mode only.
#pragma once
#include <cstddef>
namespace simt {
bool device_range_ok(const void* p, size_t bytes);  // [p, p+bytes) inside one cudaMalloc'd allocation
bool is_device_ptr(const void* p);                   // inside (or one past) such an allocation
void report_error(const char* kind, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
int errors_reported();                               // SIMT ERROR reports so far
void clear_errors();                                 // forget them, so the exit status stays the program's
unsigned long long switch_count();                   // fiber switches so far (benchmarks)
void set_watchdog_seconds(int s);                    // like SIMT_WATCHDOG_S; 0 turns the watchdog off
}  // namespace simt

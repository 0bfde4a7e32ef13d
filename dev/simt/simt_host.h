// simt_host.h -- host-side entry points of the SIMT runtime, for code that does not include
// simt.h (the cuBLAS/NCCL shims, test harnesses compiled as plain host C++). Sim mode only.
#pragma once
#include <cstddef>
#include <string>
namespace simt {
bool device_range_ok(const void* p, size_t bytes);  // [p, p+bytes) inside one cudaMalloc'd allocation
bool is_device_ptr(const void* p);                   // inside (or one past) such an allocation
void report_error(const char* kind, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
// An API misuse, reported once per call site as "SIMT ERROR [kind]: f.cu:N: ..." where f.cu:N is the
// first caller outside the runtime and the CUDA headers (symbolised with llvm-symbolizer/addr2line).
void report_at_caller(const char* kind, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
int errors_reported();                               // SIMT ERROR reports so far
void clear_errors();                                 // forget them, so the exit status stays the program's
unsigned long long switch_count();                   // fiber switches so far (benchmarks)
void set_watchdog_seconds(int s);                    // like SIMT_WATCHDOG_S; 0 turns the watchdog off

// Devices (SIMT_DEVICES, default 1). Every device allocation, stream, event and library handle
// belongs to the device that was current on its host thread when it was created.
void set_device_count(int n);             // like SIMT_DEVICES, for a test
int current_device();
int device_of(const void* p);             // owner of the cudaMalloc allocation holding p; -1: none (host, pinned, managed)
bool can_access(int dev, int owner);      // owner < 0, owner == dev, or cudaDeviceEnablePeerAccess(owner) on dev
int stream_device(const void* stream);    // 0/legacy/per-thread: the current device; -1: not a live stream
// Where an object was created: the caller's frames, symbolised only when a report needs them.
struct Site { void* pc[8]; int n; };
Site capture_site();
std::string site_str(const Site& s);       // "f.cu:N", or "?" without a symboliser
// An NCCL operation of this thread that waits for a peer, on `stream` of device `dev`: while it is
// pending, another rank's cudaMalloc/cudaFree/device-wide sync or implicitly synchronising stream
// work on that device is a deadlock hazard (reported by the runtime). Returns a token for the end.
int nccl_pending_begin(int dev, const void* stream, const std::string& what);
void nccl_pending_end(int token);
int nccl_pending(int dev);                // how many such operations wait on device dev now (for tests)

// Stream ordering (the stream-race rule, simt_runtime.cpp): one operation on `stream` (of the current
// device) that reads or writes these byte ranges. Ranges outside device allocations are ignored.
// `what` names the operation in reports ("ncclRecv from rank 1 (16 elements)").
struct MemAccess { const void* p; size_t bytes; bool write; };
enum StreamOpKind { SO_KERNEL, SO_BLAS, SO_COPY, SO_NCCL };
void stream_op(const void* stream, StreamOpKind kind, const char* what, const MemAccess* acc, int n);
}  // namespace simt

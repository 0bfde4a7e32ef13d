// simt_runtime.cpp -- fiber scheduler, bug checks and the CUDA runtime API subset for sim mode.
//
// A launch runs its blocks one after another on the calling host thread. A block's threads are
// fibers with mmap'd stacks (guard region below). A fiber runs until it reaches __syncthreads or a
// warp intrinsic, then switches DIRECTLY to the next runnable fiber of the block (one switch per
// thread per sync point); the last fiber returns to the scheduler. Nothing runnable while threads
// are alive is a deadlock. Every problem is reported as
//   SIMT ERROR [kind] in kernel K (launched at f.cu:L), block (x,y,z) thread (x,y,z): f.cu:N: ...
// after which the launch returns an error, and the process exits with status 1 at the end
// (unless SIMT_KEEP_EXIT_STATUS=1), so an unchecked failure still fails CI.
#include "simt.h"
#include "simt_api.h"

#include <dlfcn.h>
#include <elf.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <cstdarg>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#if !defined(__x86_64__) && !defined(SIMT_UCONTEXT)
#define SIMT_UCONTEXT 1  // portable fallback (about 7x slower: swapcontext makes a syscall)
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SIMT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIMT_ASAN 1
#endif
#endif
#if defined(SIMT_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/lsan_interface.h>
// UBSan findings abort (SIGABRT), so that our signal handler adds the kernel, block and thread
// even where UBSan is a separate runtime from ASan (gcc).
extern "C" const char* __ubsan_default_options() { return "abort_on_error=1:print_stacktrace=1"; }
#endif
// uninitialized-read needs the x86-64 page-fault error code (read or write) and SIGSEGV; ASan owns
// SIGSEGV and needs exact-size heap blocks for device memory, so that build goes without the rule.
#if defined(__x86_64__) && !defined(SIMT_ASAN)
#define SIMT_HAVE_INITCHECK 1
#endif

extern "C" {
uint3 threadIdx;
uint3 blockIdx;
dim3 blockDim;
dim3 gridDim;
// Linker-provided bounds of the section that holds every static __shared__ variable.
extern char __start_simt_shared[] __attribute__((weak));
extern char __stop_simt_shared[] __attribute__((weak));
}

// ------------------------------------------------------------------ context switch (x86-64 SysV)
// Saves the callee-saved registers on the old stack, stores its sp, loads the new sp, restores.
#if !defined(SIMT_UCONTEXT)
extern "C" void simt_ctx_switch(void** save_sp, void* new_sp);
extern "C" void simt_fiber_trampoline();
asm(R"(
  .text
  .globl simt_ctx_switch
  .type simt_ctx_switch,@function
simt_ctx_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size simt_ctx_switch,.-simt_ctx_switch
  .globl simt_fiber_trampoline
  .type simt_fiber_trampoline,@function
simt_fiber_trampoline:
  movq %r12, %rdi
  call simt_fiber_main
  ud2
  .size simt_fiber_trampoline,.-simt_fiber_trampoline
  .section .note.GNU-stack,"",@progbits
  .text
)");
#endif

namespace simt {

enum FState : uint8_t { F_RUNNABLE, F_BAR, F_WARP, F_EXITED };

struct Fiber {
  void* sp = nullptr;
#if defined(SIMT_UCONTEXT)
  ucontext_t uc;
#endif
  char* stack_lo = nullptr;  // usable stack is [stack_lo, stack_lo + stack_size)
  uint3 tid{};
  int lane = 0, warp = 0;
  FState state = F_RUNNABLE;
  // pending warp op or barrier
  int op = 0, src = -1, bytes = 0, pred = 0, bar_result = 0;
  unsigned mask = 0, vote = 0;
  alignas(16) unsigned char in[16], out[16];
  const char* file = nullptr; int line = 0;
  bool fenced = false;  // executed __threadfence() since its block started (ticket-fence)
};
// Fixed-size copies inline to a move or two; a variable-size memcpy is a libc call per lane.
static inline void copy_payload(void* d, const void* s, int bytes) {
  switch (bytes) {
    case 4: memcpy(d, s, 4); break;
    case 8: memcpy(d, s, 8); break;
    case 16: memcpy(d, s, 16); break;
    default: memcpy(d, s, (size_t)bytes);
  }
}
struct Group { unsigned mask = 0, arrived = 0; int op = 0, bytes = 0; const char* file = nullptr; int line = 0; };
// Pending warp ops, one group per distinct mask; g[0..nact) are active (usually just one).
struct Warp { unsigned exists = 0, exited = 0; int nact = 0; Group g[32]; };

static const char* op_name(int op) {
  static const char* n[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
                            "__syncwarp", "__ballot_sync", "__any_sync", "__all_sync"};
  return n[op];
}
static const char* bar_name(int mode) {
  static const char* n[] = {"__syncthreads", "__syncthreads_count", "__syncthreads_and", "__syncthreads_or"};
  return n[mode];
}
static double now_s() { timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static int env_int(const char* name, int def) { const char* s = getenv(name); return s && *s ? atoi(s) : def; }

struct Alloc { size_t size; int kind; int dev; };  // kind: 0 device, 1 pinned host, 2 managed; dev: owner
enum { A_DEVICE, A_PINNED, A_MANAGED };

const int kMaxDevices = 16;
struct Runtime {
  // configuration (environment, read once)
  size_t stack_size = 64 * 1024, guard_size = 4096;
  int sched = 0;             // 0 forward, 1 reverse, 2 random
  unsigned seed = 1;
  bool strict_barriers = true, strict_shfl = false, abort_on_error = false, poison = true, keep_exit = false;
  bool initcheck = false;    // uninitialized-read: device pages start PROT_NONE
  std::atomic<int> watchdog_s{120};
  // the running launch (all under launch_mu)
  std::mutex launch_mu;
  std::vector<Fiber> fibers;
  std::vector<char*> stacks;
  std::vector<int> order, pos_of;  // scheduling order and its inverse
  std::vector<Warp> warps;
  int nthreads = 0, live = 0, cur = -1, first_exit = -1;
  int bar_arrived = 0, bar_count = 0, bar_and = 1, bar_or = 0, bar_mode = 0;
  const char* bar_file = nullptr; int bar_line = 0;
  void* sched_sp = nullptr;
#if defined(SIMT_UCONTEXT)
  ucontext_t sched_uc;
#endif
  bool failed = false;
  bool uninit_reported = false;  // this launch reported an uninitialized-read (once per launch)
  void (*call)(void*) = nullptr; void* closure = nullptr;
  LaunchInfo info{};
  unsigned char* dyn_smem = nullptr; size_t dyn_bytes = 0;
  unsigned long long switches = 0;
  // watchdog
  std::atomic<double> launch_t0{0.0};
  pthread_t launch_thread{};
  // registries (under reg_mu)
  std::mutex reg_mu;
  std::map<uintptr_t, Alloc> allocs;
  size_t allocated = 0;
  std::map<std::string, int> smem_optin_by_name;
  std::map<const void*, int> smem_optin_by_addr;
  std::atomic<int> errors{0};
  // devices: SIMT_DEVICES of them; peer[d][o]: device d may access device o's memory (under reg_mu)
  int ndev = 1;
  bool peer[kMaxDevices][kMaxDevices] = {};

  Runtime() {
    ndev = std::min(std::max(env_int("SIMT_DEVICES", 1), 1), (int)kMaxDevices);
    stack_size = (size_t)env_int("SIMT_STACK_KB",
#if defined(SIMT_ASAN)
                                 256  // ASan's redzones make frames several times larger
#else
                                 64
#endif
                                 ) * 1024;
    if (const char* s = getenv("SIMT_SCHED")) {
      if (!strcmp(s, "reverse")) sched = 1;
      else if (!strncmp(s, "random", 6)) { sched = 2; if (s[6] == ':') seed = (unsigned)atoi(s + 7); }
      else if (strcmp(s, "forward")) { fprintf(stderr, "SIMT: unknown SIMT_SCHED=%s (forward|reverse|random[:seed])\n", s); exit(2); }
    }
    strict_barriers = env_int("SIMT_LENIENT_BARRIERS", 0) == 0;
    strict_shfl = env_int("SIMT_STRICT_SHFL", 0) != 0;
    abort_on_error = env_int("SIMT_ABORT", 0) != 0;
    poison = env_int("SIMT_POISON", 1) != 0;
    keep_exit = env_int("SIMT_KEEP_EXIT_STATUS", 0) != 0;
#if defined(SIMT_HAVE_INITCHECK)
    initcheck = env_int("SIMT_INITCHECK", 1) != 0;
#endif
    watchdog_s = env_int("SIMT_WATCHDOG_S", 120);
    atexit(at_exit);
  }
  static void at_exit();
};
// A global (not a function-local static: that puts a guard check on every hot call), constructed
// before user static constructors.
static Runtime g_rt __attribute__((init_priority(101)));
static inline Runtime& R() { return g_rt; }

// Per host thread: the CUDA error state and device, like the real runtime.
static thread_local cudaError_t t_last_error = cudaSuccess;
static thread_local int t_device = 0;
#if defined(SIMT_ASAN)
static thread_local const void* t_main_bottom = nullptr;
static thread_local size_t t_main_size = 0;
#endif

void Runtime::at_exit() {
  int n = g_rt.errors.load();
  if (n && !g_rt.keep_exit) {
    fflush(stdout);
    fprintf(stderr, "SIMT: %d error(s) were reported in this run; exiting with status 1 "
            "(SIMT_KEEP_EXIT_STATUS=1 keeps the program's own status)\n", n);
    fflush(stderr);
    _exit(1);
  }
}

// ------------------------------------------------------------------ reports
// Static buffers only: a failing fiber is abandoned (never unwound), so heap temporaries in its
// frames would leak (LSan notices).
static std::mutex g_report_mu;  // rank threads may report at the same time

static void vreport(const char* kind, const LaunchInfo* info, const Fiber* f, const char* fmt, va_list ap) {
  Runtime& r = R();
  std::lock_guard<std::mutex> lk(g_report_mu);
  static char msg[2048];
  int n = 0;
  n += snprintf(msg + n, sizeof msg - n, "SIMT ERROR [%s]", kind);
  if (info && info->name)
    n += snprintf(msg + n, sizeof msg - n, " in kernel %s (launched at %s:%d)", info->name, info->file, info->line);
  if (f)
    n += snprintf(msg + n, sizeof msg - n, ", block (%u,%u,%u) thread (%u,%u,%u)", blockIdx.x, blockIdx.y,
                  blockIdx.z, f->tid.x, f->tid.y, f->tid.z);
  n += snprintf(msg + n, sizeof msg - n, ": ");
  if (n < (int)sizeof msg) vsnprintf(msg + n, sizeof msg - n, fmt, ap);
  fflush(stdout);
  fprintf(stderr, "%s\n", msg);
  r.errors++;
  if (r.abort_on_error) abort();
}
static void reportf(const char* kind, const LaunchInfo* info, const Fiber* f, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reportf(const char* kind, const LaunchInfo* info, const Fiber* f, const char* fmt, ...) {
  va_list ap; va_start(ap, fmt); vreport(kind, info, f, fmt, ap); va_end(ap);
}
// Outside kernels (API misuse): report, count, and let the caller return an error code.
#define report(kind, ...) reportf(kind, nullptr, nullptr, __VA_ARGS__)
std::string site_str(const Site& s);
void report_at_caller(const char* kind, const char* fmt, ...) {
  char msg[1536];
  va_list ap; va_start(ap, fmt); vsnprintf(msg, sizeof msg, fmt, ap); va_end(ap);
  std::string site = site_str(capture_site());
  // Once per kind and call site: a misuse inside the training loop would flood the log. Every
  // occurrence still counts towards the exit status.
  static std::mutex mu; static std::set<std::string> seen;
  bool first;
  { std::lock_guard<std::mutex> lk(mu); first = seen.insert(std::string(kind) + " " + site).second; }
  if (first) reportf(kind, nullptr, nullptr, "%s: %s", site.c_str(), msg);
  else R().errors++;
}
static void ctx_switch(Fiber* from, Fiber* to, bool dying = false);
// Inside a kernel: report with context and abandon the block (never returns to the caller).
[[noreturn]] static void fail(const char* kind, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
[[noreturn]] static void fail(const char* kind, const char* fmt, ...) {
  Runtime& r = R();
  va_list ap; va_start(ap, fmt);
  vreport(kind, &r.info, r.cur >= 0 ? &r.fibers[r.cur] : nullptr, fmt, ap);
  va_end(ap);
  r.failed = true;
  if (r.cur < 0) { fprintf(stderr, "SIMT: device intrinsic called outside a kernel\n"); abort(); }
  ctx_switch(&r.fibers[r.cur], nullptr, /*dying=*/true);
  __builtin_unreachable();
}

static const char* lanes_str(unsigned m) {
  static char b[4][128]; static int k; char* s = b[k++ & 3]; s[0] = 0; int i = 0, n = 0;
  while (i < 32) {
    if (!(m >> i & 1)) { i++; continue; }
    int j = i; while (j + 1 < 32 && (m >> (j + 1) & 1)) j++;
    n += snprintf(s + n, 128 - n, "%s%d", n ? "," : "", i);
    if (j > i) n += snprintf(s + n, 128 - n, "-%d", j);
    i = j + 1;
  }
  return n ? s : "none";
}
static const char* tid_str(int linear) {
  static char b[4][48]; static int k; char* s = b[k++ & 3];
  const uint3& t = R().fibers[linear].tid;
  snprintf(s, 48, "(%u,%u,%u)", t.x, t.y, t.z);
  return s;
}

// ------------------------------------------------------------------ fibers
// Switch from `from` (nullptr = scheduler) to `to` (nullptr = scheduler). `dying`: never resume `from`.
static void ctx_switch(Fiber* from, Fiber* to, bool dying) {
  Runtime& r = R();
  r.switches++;
  if (to) { r.cur = (int)(to - r.fibers.data()); threadIdx = to->tid; } else r.cur = -1;
#if defined(SIMT_UCONTEXT)
  if (dying) setcontext(to ? &to->uc : &r.sched_uc);
  swapcontext(from ? &from->uc : &r.sched_uc, to ? &to->uc : &r.sched_uc);
#else
  static void* dead_sp;
  void** save = dying ? &dead_sp : (from ? &from->sp : &r.sched_sp);
#if defined(SIMT_ASAN)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(dying ? nullptr : &fake, to ? (const void*)to->stack_lo : t_main_bottom,
                                 to ? r.stack_size : t_main_size);
#endif
  simt_ctx_switch(save, to ? to->sp : r.sched_sp);
#if defined(SIMT_ASAN)
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
#endif
  if (from) { r.cur = (int)(from - r.fibers.data()); threadIdx = from->tid; }
}

// Switch to the next runnable fiber after the current one in scheduling order; if there is
// none, return to the scheduler (which then finds completion or a deadlock).
static void yield_blocked() {
  Runtime& r = R();
  int n = r.nthreads, p = r.pos_of[r.cur];
  Fiber& me = r.fibers[r.cur];
  for (int k = 1, q = p; k <= n; k++) {
    if (++q == n) q = 0;  // (p + k) % n without a division: this loop is on every switch
    int idx = r.order[q];
    if (r.fibers[idx].state == F_RUNNABLE) {
      if (idx == r.cur) return;  // released while looking
      ctx_switch(&me, &r.fibers[idx]);
      return;
    }
  }
  ctx_switch(&me, nullptr);
}

unsigned activemask() {
  Runtime& r = R();
  if (r.cur < 0) return 0;
  const Warp& w = r.warps[r.fibers[r.cur].warp];
  return w.exists & ~w.exited;
}

[[noreturn]] void trap(const char* file, int line) { fail("trap", "%s:%d: __trap() called", file, line); }
void note_fence() { Runtime& r = R(); if (r.cur >= 0) r.fibers[r.cur].fenced = true; }
void check_ticket_fence(const char* file, int line) {
  Runtime& r = R();
  if (r.cur >= 0 && !r.fibers[r.cur].fenced)
    fail("ticket-fence", "%s:%d: the old value of this atomic is compared with the last block's ticket (%u), but this thread "
         "executed no __threadfence() before taking it: on a GPU the last block may not see this block's writes",
         file, line, gridDim.x * gridDim.y * gridDim.z - 1);
}
[[noreturn]] void misaligned(const void* p, int align, const char* what, const char* file, int line) {
  fail("misaligned", "%s:%d: %s at %p, which is not %d-byte aligned (a GPU traps: misaligned address)", file, line, what, p, align);
}

static void complete_group(Warp& w, Group& g, int warp_idx) {
  Runtime& r = R();
  Fiber* base = &r.fibers[warp_idx * 32];
  unsigned vote = 0;
  for (int l = 0; l < 32; l++) if ((g.mask >> l & 1) && base[l].pred) vote |= 1u << l;
  for (int l = 0; l < 32; l++) {
    if (!(g.mask >> l & 1)) continue;
    Fiber& f = base[l];
    if (g.op <= OP_SHFL_XOR) {
      int s = f.src;
      if (s == l) copy_payload(f.out, f.in, f.bytes);
      else if (s >= 0 && s < 32 && (g.mask >> s & 1)) copy_payload(f.out, base[s].in, f.bytes);
      else {
        // Reading a lane that does not take part is undefined, but legal if the value is never
        // used (the upper lanes of a tree reduction over a partial mask): hand out NaN/-1 bits,
        // so that a use shows up in the results. SIMT_STRICT_SHFL=1 reports every such read.
        if (r.strict_shfl) {
          r.cur = (int)(&f - r.fibers.data()); threadIdx = f.tid;
          fail("shfl-undefined", "%s:%d: %s: lane %d reads lane %d, which %s (mask 0x%08x): undefined value", g.file,
               g.line, op_name(g.op), l, s, !(w.exists >> (s & 31) & 1) ? "does not exist (partial warp)" : "is not in the mask",
               g.mask);
        }
        memset(f.out, 0xff, f.bytes);
      }
    } else if (g.op == OP_BALLOT) f.vote = vote;
    else if (g.op == OP_ANY) f.vote = vote != 0;
    else if (g.op == OP_ALL) f.vote = vote == g.mask;
    f.state = F_RUNNABLE;
  }
  g = w.g[--w.nact];  // keep the active groups compact
}

const void* warp_op(int op, unsigned mask, const void* val, int bytes, int arg, int width, int pred, unsigned* vote,
                    const char* file, int line) {
  Runtime& r = R();
  if (r.cur < 0) { fprintf(stderr, "SIMT: %s called outside a kernel at %s:%d\n", op_name(op), file, line); abort(); }
  Fiber& f = r.fibers[r.cur];
  Warp& w = r.warps[f.warp];
  if (!(mask >> f.lane & 1))
    fail("warp-mask", "%s:%d: %s called by lane %d, which is not in its mask 0x%08x", file, line, op_name(op), f.lane, mask);
  int src = f.lane;
  if (op <= OP_SHFL_XOR) {
    if (width <= 0 || width > 32 || (width & (width - 1)))
      fail("shfl-width", "%s:%d: %s width %d is not a power of two <= 32", file, line, op_name(op), width);
    int lane = f.lane, seg = lane & ~(width - 1), li = lane & (width - 1);
    switch (op) {  // CUDA programming guide semantics for sub-warp widths
      case OP_SHFL: src = seg + (arg & (width - 1)); break;
      case OP_SHFL_UP: src = li >= arg ? lane - arg : lane; break;
      case OP_SHFL_DOWN: src = li + arg < width ? lane + arg : lane; break;
      default: src = lane ^ arg; if (src >= seg + width) src = lane; break;  // later segments: own value
    }
  }
  unsigned m = mask & w.exists;  // lanes beyond a partial last warp never arrive (treated as absent)
  if (m & w.exited)
    fail("warp-exited-lane", "%s:%d: %s with mask 0x%08x, but lane(s) %s already exited (would hang or be undefined on a GPU)",
         file, line, op_name(op), mask, lanes_str(m & w.exited));
  Group* g = nullptr;
  for (int i = 0; i < w.nact; i++) if (w.g[i].mask == m) { g = &w.g[i]; break; }
  if (!g) {
    // Groups with different masks may be pending at once (a diverged warp); a cycle between
    // them is found by the scheduler's deadlock check. At most 32 (each lane waits in one).
    g = &w.g[w.nact++];
    g->mask = m; g->arrived = 0; g->op = op; g->bytes = bytes; g->file = file; g->line = line;
  } else if (g->op != op || g->bytes != bytes) {
    fail("warp-divergence", "%s:%d: lane %d executes %s (%d bytes) while lanes %s wait in %s (%d bytes) at %s:%d with the same mask 0x%08x",
         file, line, f.lane, op_name(op), bytes, lanes_str(g->arrived), op_name(g->op), g->bytes, g->file, g->line, mask);
  }
  f.op = op; f.mask = m; f.src = src; f.bytes = bytes; f.pred = pred; f.file = file; f.line = line;
  if (bytes) copy_payload(f.in, val, bytes);
  g->arrived |= 1u << f.lane;
  f.state = F_WARP;
  if (g->arrived == m) complete_group(w, *g, f.warp);
  else yield_blocked();
  if (vote) *vote = f.vote;
  return f.out;
}

static bool same_site(const char* fa, int la, const char* fb, int lb) { return la == lb && (fa == fb || !strcmp(fa, fb)); }

int block_barrier(int pred, int mode, const char* file, int line) {
  Runtime& r = R();
  if (r.cur < 0) { fprintf(stderr, "SIMT: %s called outside a kernel at %s:%d\n", bar_name(mode), file, line); abort(); }
  Fiber& f = r.fibers[r.cur];
  if (r.strict_barriers && r.live != r.nthreads)
    fail("barrier-after-exit", "%s:%d: %s reached after %d thread(s) of the block returned (first: thread %s); "
         "a barrier in divergent code is undefined behaviour (SIMT_LENIENT_BARRIERS=1 allows it)",
         file, line, bar_name(mode), r.nthreads - r.live, tid_str(r.first_exit));
  if (r.bar_arrived == 0) {
    r.bar_file = file; r.bar_line = line; r.bar_mode = mode; r.bar_count = 0; r.bar_and = 1; r.bar_or = 0;
  } else if (r.strict_barriers && (!same_site(file, line, r.bar_file, r.bar_line) || mode != r.bar_mode)) {
    fail("barrier-divergence", "%s:%d: %s while %d thread(s) wait at %s at %s:%d (threads of a block must reach the "
         "same barrier; SIMT_LENIENT_BARRIERS=1 allows it)", file, line, bar_name(mode), r.bar_arrived,
         bar_name(r.bar_mode), r.bar_file, r.bar_line);
  }
  r.bar_arrived++;
  r.bar_count += pred != 0; r.bar_and &= pred != 0; r.bar_or |= pred != 0;
  f.state = F_BAR; f.file = file; f.line = line;
  if (r.bar_arrived == r.live) {
    int res = mode == 1 ? r.bar_count : mode == 2 ? r.bar_and : mode == 3 ? r.bar_or : 0;
    for (int i = 0; i < r.nthreads; i++) if (r.fibers[i].state == F_BAR) { r.fibers[i].state = F_RUNNABLE; r.fibers[i].bar_result = res; }
    r.bar_arrived = 0;
  } else {
    yield_blocked();
  }
  return f.bar_result;
}

extern "C" void simt_fiber_main(Fiber* f);
extern "C" void simt_fiber_main(Fiber*) {
  Runtime& r = R();
#if defined(SIMT_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
  r.call(r.closure);
  // the thread returned from the kernel
  Fiber& me = r.fibers[r.cur];
  me.state = F_EXITED;
  r.live--;
  if (r.first_exit < 0) r.first_exit = r.cur;
  Warp& w = r.warps[me.warp];
  w.exited |= 1u << me.lane;
  for (int i = 0; i < w.nact; i++)
    if (const Group& g = w.g[i]; g.mask >> me.lane & 1)
      fail("warp-exited-lane", "thread returned while lanes %s wait for it in %s (mask 0x%08x) at %s:%d (would hang or "
           "be undefined on a GPU)", lanes_str(g.arrived), op_name(g.op), g.mask, g.file, g.line);
  if (r.bar_arrived > 0) {
    if (r.strict_barriers)
      fail("barrier-exit", "thread returned while %d thread(s) wait at %s at %s:%d (barrier divergence)", r.bar_arrived,
           bar_name(r.bar_mode), r.bar_file, r.bar_line);
    if (r.bar_arrived == r.live) {
      for (int i = 0; i < r.nthreads; i++) if (r.fibers[i].state == F_BAR) r.fibers[i].state = F_RUNNABLE;
      r.bar_arrived = 0;
    }
  }
  int n = r.nthreads, p = r.pos_of[r.cur];
  for (int k = 1; k < n; k++) {
    int idx = r.order[(p + k) % n];
    if (r.fibers[idx].state == F_RUNNABLE) ctx_switch(&me, &r.fibers[idx], /*dying=*/true);
  }
  ctx_switch(&me, nullptr, /*dying=*/true);
  __builtin_unreachable();
}

#if defined(SIMT_UCONTEXT)
static void uc_entry(unsigned lo, unsigned hi) { simt_fiber_main((Fiber*)(((uintptr_t)hi << 32) | lo)); }
#endif

static char* alloc_stack() {
  Runtime& r = R();
  char* p = (char*)mmap(nullptr, r.guard_size + r.stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) { perror("SIMT: mmap fiber stack"); abort(); }
  // A guard page below the stack turns an overflow into SIGSEGV. Sim builds use
  // -fstack-clash-protection, so a frame bigger than a page probes its way into the guard instead
  // of jumping over it. (A bigger guard spreads the stacks further apart: barriers got 1.5x slower.)
  mprotect(p, r.guard_size, PROT_NONE);
  return p + r.guard_size;
}

static void prepare_fiber(Fiber& f) {
  Runtime& r = R();
#if defined(SIMT_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(f.stack_lo, r.stack_size);  // abandoned frames leave poisoned redzones
#endif
  f.state = F_RUNNABLE;
  f.fenced = false;
#if defined(SIMT_UCONTEXT)
  getcontext(&f.uc);
  f.uc.uc_stack.ss_sp = f.stack_lo; f.uc.uc_stack.ss_size = r.stack_size; f.uc.uc_link = nullptr;
  uintptr_t p = (uintptr_t)&f;
  makecontext(&f.uc, (void (*)())uc_entry, 2, (unsigned)(p & 0xffffffffu), (unsigned)(p >> 32));
#else
  // Start each fiber at a different 64-byte offset, so that the stack tops (the hot lines) do
  // not all fall into the same cache sets.
  size_t color = 64 * (size_t)((&f - r.fibers.data()) % 61);
  uintptr_t top = ((uintptr_t)f.stack_lo + r.stack_size - color) & ~(uintptr_t)15;
  void** sp = (void**)(top - 72);  // 6 saved registers + return address; aligned like a call
  sp[0] = 0; sp[1] = 0; sp[2] = 0;        // r15 r14 r13
  sp[3] = &f;                             // r12 = Fiber*, handed to simt_fiber_main
  sp[4] = 0; sp[5] = 0;                   // rbx rbp (rbp 0 ends frame-pointer backtraces)
  sp[6] = (void*)&simt_fiber_trampoline;  // "return" address
  f.sp = sp;
#endif
}

static void report_deadlock() {
  Runtime& r = R();
  int first = -1;
  for (int i = 0; i < r.nthreads && first < 0; i++) if (r.fibers[i].state != F_EXITED) first = i;
  int n = 0; static char s[1536]; s[0] = 0;
  if (r.bar_arrived)
    n += snprintf(s + n, sizeof s - n, "\n  %d thread(s) wait at %s at %s:%d", r.bar_arrived, bar_name(r.bar_mode),
                  r.bar_file, r.bar_line);
  for (int i = 0; i < r.nthreads && n < (int)sizeof s - 200;) {  // runs of threads waiting in the same warp op
    const Fiber& f = r.fibers[i];
    if (f.state != F_WARP) { i++; continue; }
    int j = i;
    while (j + 1 < r.nthreads && r.fibers[j + 1].state == F_WARP && r.fibers[j + 1].warp == f.warp &&
           r.fibers[j + 1].op == f.op && r.fibers[j + 1].line == f.line && r.fibers[j + 1].mask == f.mask) j++;
    n += snprintf(s + n, sizeof s - n, "\n  thread(s) %s", tid_str(i));
    if (j > i) n += snprintf(s + n, sizeof s - n, "-%s", tid_str(j));
    n += snprintf(s + n, sizeof s - n, " (warp %d) wait in %s (mask 0x%08x) at %s:%d", f.warp, op_name(f.op), f.mask,
                  f.file, f.line);
    i = j + 1;
  }
  reportf("deadlock", &r.info, &r.fibers[first], "deadlock: %d thread(s) blocked, none can proceed:%s", r.live, s);
  r.failed = true;
}

static void run_block(int block_linear) {
  Runtime& r = R();
  int n = r.nthreads;
  for (auto& w : r.warps) { w.exited = 0; w.nact = 0; }
  for (int i = 0; i < n; i++) prepare_fiber(r.fibers[i]);
  if (r.sched == 2) {  // a fresh random order per block, reproducible from the seed
    std::mt19937 rng(r.seed * 1000003u + (unsigned)block_linear);
    std::shuffle(r.order.begin(), r.order.end(), rng);
    for (int i = 0; i < n; i++) r.pos_of[r.order[i]] = i;
  }
  r.live = n; r.bar_arrived = 0; r.first_exit = -1;
  // Shared memory starts as NaN (0xFF..): a read before any write shows up in the results.
  if (r.poison && __start_simt_shared && __stop_simt_shared)
    memset(__start_simt_shared, 0xff, (size_t)(__stop_simt_shared - __start_simt_shared));
  if (r.dyn_smem && r.poison) memset(r.dyn_smem, 0xff, r.dyn_bytes);
#if defined(SIMT_ASAN)
  if (!t_main_bottom) {
    pthread_attr_t at; pthread_getattr_np(pthread_self(), &at); void* lo; size_t sz;
    pthread_attr_getstack(&at, &lo, &sz); pthread_attr_destroy(&at); t_main_bottom = lo; t_main_size = sz;
  }
#endif
  ctx_switch(nullptr, &r.fibers[r.order[0]]);
  r.cur = -1;
  if (!r.failed && r.live > 0) report_deadlock();
}

// ------------------------------------------------------------------ crash context, watchdog
static void write_str(const char* s) { ssize_t w = write(2, s, strlen(s)); (void)w; }

// Runs llvm-symbolizer (it reads clang's DWARF 5 line tables correctly, where binutils' addr2line
// can name the generated .cpp instead of the #line'd .cu), else addr2line, on code addresses of this
// executable in a child; "func at file:line" per frame, inlined frames included, innermost first.
static size_t symbolize(const uintptr_t* pcs, int n, char* out, size_t cap) {
  out[0] = 0;
  Dl_info di;
  if (n == 0 || !dladdr((void*)pcs[0], &di) || !di.dli_fbase) return 0;
  bool pie = ((const Elf64_Ehdr*)di.dli_fbase)->e_type == ET_DYN;
  char args[24][24]; char* argv[32]; int a = 0;
  static char exe[512];
  ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len <= 0) return 0;
  exe[len] = 0;
  argv[a++] = (char*)"addr2line"; argv[a++] = (char*)"-e"; argv[a++] = exe; argv[a++] = (char*)"-f";
  argv[a++] = (char*)"-C"; argv[a++] = (char*)"-i"; argv[a++] = (char*)"-p";
  for (int i = 0; i < n && i < 24; i++) {
    Dl_info d2;
    if (!dladdr((void*)pcs[i], &d2) || d2.dli_fbase != di.dli_fbase) continue;  // only our executable
    snprintf(args[i], sizeof args[i], "0x%lx", (unsigned long)(pie ? pcs[i] - (uintptr_t)di.dli_fbase : pcs[i]));
    argv[a++] = args[i];
  }
  argv[a] = nullptr;
  int fd[2];
  if (pipe(fd) != 0) return 0;
  pid_t child = fork();
  if (child == 0) {
    close(fd[0]); dup2(fd[1], 1); dup2(fd[1], 2);
    argv[0] = (char*)"llvm-symbolizer"; execvp(argv[0], argv);
    argv[0] = (char*)"addr2line"; execvp(argv[0], argv);
    _exit(127);
  }
  close(fd[1]);
  size_t n_out = 0;
  for (ssize_t k; n_out < cap - 1 && (k = read(fd[0], out + n_out, cap - 1 - n_out)) > 0;) n_out += (size_t)k;
  out[n_out] = 0;
  close(fd[0]);
  if (child > 0) { int st; waitpid(child, &st, 0); }
  return n_out;
}

// The interrupted fiber's frames (frame-pointer chain; sim code is built with -fno-omit-frame-pointer):
// pc, then each caller's call instruction.
static int fiber_frames(uintptr_t pc, uintptr_t fp, uintptr_t* pcs, int max) {
  Runtime& r = R();
  int n = 0;
  pcs[n++] = pc;
  if (r.cur >= 0) {
    uintptr_t lo = (uintptr_t)r.fibers[r.cur].stack_lo, hi = lo + r.stack_size;
    while (n < max && fp >= lo && fp + 16 <= hi && !(fp & 7)) {
      uintptr_t ret = ((uintptr_t*)fp)[1], next = ((uintptr_t*)fp)[0];
      if (!ret) break;
      pcs[n++] = ret - 1;  // inside the call instruction: the call's line
      if (next <= fp) break;
      fp = next;
    }
  }
  return n;
}
// Symbolise them, so a crash names its source lines.
static void print_backtrace(uintptr_t pc, uintptr_t fp) {
  uintptr_t pcs[24];
  int n = fiber_frames(pc, fp, pcs, 24);
  static char out[32768];
  if (!symbolize(pcs, n, out, sizeof out)) return;
  write_str("SIMT: backtrace of the CUDA thread (innermost first):\n");
  static char prev[1024]; prev[0] = 0; int repeats = 0;
  for (char* line = strtok(out, "\n"); line; line = strtok(nullptr, "\n")) {
    if (strstr(line, "simt_fiber") || strstr(line, "simt::launch") || strstr(line, " std::") || strstr(line, "__invoke") ||
        (strstr(line, "$_") && strstr(line, "::operator()")))
      continue;  // the runtime's own frames, and the launch lambda that simt_pp.py wrote
    if (!strcmp(line, prev)) { repeats++; continue; }
    if (repeats) { char b[64]; snprintf(b, sizeof b, "    (previous frame repeated %d more times)\n", repeats); write_str(b); repeats = 0; }
    snprintf(prev, sizeof prev, "%s", line);
    write_str("    "); write_str(line); write_str("\n");
  }
  if (repeats) { char b[64]; snprintf(b, sizeof b, "    (previous frame repeated %d more times)\n", repeats); write_str(b); }
}

// ------------------------------------------------------------------ call sites of API misuse
Site capture_site() {
  Site s;
  s.n = backtrace(s.pc, 8);
  return s;
}
// The first frame (inlined ones included) in the program's own code: not the runtime or its shims
// (dev/simt/, but dev/simt/tests/ is a program), not a system or CUDA header: "file:line", with the
// working directory cut off, and "(from file:line)" for the next such frame in another file (a helper
// header's line alone, like llmc/matmul.cuh's, does not say which call of it).
std::string site_str(const Site& s) {
  static std::mutex mu;
  static std::map<std::vector<void*>, std::string> cache;  // a call site is symbolised once
  std::lock_guard<std::mutex> lk(mu);
  std::vector<void*> key(s.pc, s.pc + s.n);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  uintptr_t pcs[8]; int n = 0;
  for (int i = 1; i < s.n; i++) pcs[n++] = (uintptr_t)s.pc[i] - 1;  // [0] is capture_site; -1: the call's line
  static char out[16384];
  std::string res = "?";
  symbolize(pcs, n, out, sizeof out);
  char cwd[512]; std::string pre = getcwd(cwd, sizeof cwd) ? std::string(cwd) + "/" : std::string("\x01");
  char* save = nullptr;
  for (char* line = strtok_r(out, "\n", &save); line; line = strtok_r(nullptr, "\n", &save)) {
    const char* at = strstr(line, " at ");
    if (!at) continue;
    std::string loc = at + 4;
    if (loc.compare(0, pre.size(), pre) == 0) loc = loc.substr(pre.size());
    if (loc[0] == '?' || loc.find("/include/") != std::string::npos || loc.find("/lib/") != std::string::npos ||
        (loc.find("dev/simt/") != std::string::npos && loc.find("dev/simt/tests/") == std::string::npos))
      continue;
    size_t sp = loc.find(' '); if (sp != std::string::npos) loc.resize(sp);  // "(discriminator N)"
    size_t c2 = loc.rfind(':'), c1 = c2 == std::string::npos || c2 == 0 ? std::string::npos : loc.rfind(':', c2 - 1);
    if (c1 != std::string::npos && isdigit((unsigned char)loc[c1 + 1])) loc.resize(c2);  // file:line:col
    if (res == "?") { res = loc; continue; }
    if (loc.compare(0, loc.rfind(':'), res, 0, res.rfind(':')) != 0) { res += " (from " + loc + ")"; break; }
  }
  return cache[key] = res;
}

static const char* sig_kind(int sig) { return sig == SIGSEGV || sig == SIGBUS ? "crash" : sig == SIGFPE ? "fpe" : sig == SIGABRT ? "abort" : "signal"; }
static const char* sig_hint(int sig) {
  return sig == SIGABRT ? " -- abort(): a failed assert(), or a sanitizer finding reported above" : "";
}

static void print_crash_context(int sig, uintptr_t addr) {
  Runtime& r = R();
  if (r.cur < 0 || !r.info.name) return;
  const Fiber& f = r.fibers[r.cur];
  char b[768];
  const char* kind = sig_kind(sig);
  const char* what = "";
  uintptr_t lo = (uintptr_t)f.stack_lo;
  if ((sig == SIGSEGV || sig == SIGBUS) && addr < lo && addr + r.guard_size >= lo) {
    kind = "stack-overflow";
    what = " -- fiber stack overflow: the CUDA thread used more than SIMT_STACK_KB of stack (large local arrays or recursion)";
  }
  if (!*what) what = sig_hint(sig);
  snprintf(b, sizeof b, "SIMT ERROR [%s] in kernel %s (launched at %s:%d), block (%u,%u,%u) thread (%u,%u,%u): signal %d (%s) at address %p%s\n",
           kind, r.info.name, r.info.file, r.info.line, blockIdx.x, blockIdx.y, blockIdx.z, f.tid.x, f.tid.y, f.tid.z,
           sig, strsignal(sig), (void*)addr, what);
  write_str(b);
}

// ------------------------------------------------------------------ uninitialized-read
static void install_signal_handlers();
#if defined(SIMT_HAVE_INITCHECK)
// Device allocations are mapped PROT_NONE once filled. The first store to a page faults as a write:
// the page becomes read-write and the store is retried. A load from a page that nothing wrote faults
// as a read: inside a kernel that is reported; either way the page becomes readable (it still holds
// the fill) and the load is retried. The handler may interrupt code that holds any lock, so it finds
// the allocation in this fixed table without one: a slot is published by storing `hi` last and
// retired by clearing `hi` first (under g_range_mu, which only allocation and free take).
const uintptr_t kPage = 4096;  // x86-64's page size, the only architecture with the rule
enum : uint8_t { PG_NONE, PG_READ, PG_WRITTEN };  // per page: no access, read-only (unwritten), read-write
struct DevRange {
  std::atomic<uintptr_t> lo{0}, hi{0};  // the mapping, whole pages
  size_t size = 0; const char* api = nullptr; Site site{};
  std::atomic<uint8_t>* pages = nullptr;
};
const int kMaxRanges = 4096;  // more live device allocations than this go unchecked
static DevRange g_ranges[kMaxRanges];
static std::atomic<int> g_nranges{0};  // the slots ever used lie below this
static std::mutex g_range_mu;

static DevRange* find_range(uintptr_t a) {
  for (int i = 0, n = g_nranges.load(std::memory_order_acquire); i < n; i++) {
    DevRange& d = g_ranges[i];
    uintptr_t hi = d.hi.load(std::memory_order_acquire);
    if (hi && a < hi && a >= d.lo.load(std::memory_order_relaxed)) return &d;
  }
  return nullptr;
}
static std::atomic<uint8_t>& page_of(DevRange& d, uintptr_t a) { return d.pages[(a - d.lo.load(std::memory_order_relaxed)) / kPage]; }

// A kernel's load from a page nothing wrote: report it, once per launch (the launch then fails). Host
// code is not reported: copying uninitialised device memory (cudaMemcpy, NCCL) is legal CUDA, and the
// cuBLAS shim reads gaps between strided operands that a GPU GEMM never touches.
static void report_uninit_read(DevRange& d, uintptr_t a, const ucontext_t* uc) {
  Runtime& r = R();
  if (r.cur < 0 || !r.info.name || !pthread_equal(pthread_self(), r.launch_thread) || r.uninit_reported) return;
  r.uninit_reported = true;
  r.failed = true;
  uintptr_t pcs[8];
  int n = fiber_frames((uintptr_t)uc->uc_mcontext.gregs[REG_RIP], (uintptr_t)uc->uc_mcontext.gregs[REG_RBP], pcs, 7);
  Site s{};  // as capture_site() would give it: pc[0] is skipped, the others are return addresses
  for (int i = 0; i < n; i++) s.pc[i + 1] = (void*)(pcs[i] + 1);
  s.n = n + 1;
  uintptr_t base = d.lo.load(std::memory_order_relaxed), off = a - base;
  reportf("uninitialized-read", &r.info, &r.fibers[r.cur], "%s: reads %p, byte %zu of the %zu-byte %s at %p (allocated at %s)%s, "
          "on a 4 KiB page that nothing has written (no kernel, cudaMemset, cudaMemcpy, cuBLAS or NCCL call): the value is "
          "garbage on a GPU (compute-sanitizer --tool initcheck reports it)", site_str(s).c_str(), (void*)a, (size_t)off,
          d.size, d.api, (void*)base, site_str(d.site).c_str(), off >= d.size ? ", past its end" : "");
}
// SIGSEGV at `a`: true if it was the first access of its kind to a device page (then handled: the
// access is retried).
static bool initcheck_fault(const siginfo_t* si, const void* uctx) {
  if (si->si_code != SEGV_ACCERR) return false;
  uintptr_t a = (uintptr_t)si->si_addr;
  DevRange* d = R().initcheck ? find_range(a) : nullptr;
  if (!d) return false;
  const ucontext_t* uc = (const ucontext_t*)uctx;
  std::atomic<uint8_t>& st = page_of(*d, a);
  bool write = uc->uc_mcontext.gregs[REG_ERR] & 2;  // the page-fault error code's W bit
  if (!write && st.load() == PG_NONE) report_uninit_read(*d, a, uc);
  bool rw = write || st.load() == PG_WRITTEN;  // a read racing with another thread's first write
  if (mprotect((void*)(a & ~(kPage - 1)), kPage, rw ? PROT_READ | PROT_WRITE : PROT_READ)) {
    // Out of memory maps (each protection change may split one; vm.max_map_count): stop checking this
    // allocation rather than crash.
    uintptr_t lo = d->lo.load(std::memory_order_relaxed), hi = d->hi.load();
    if (mprotect((void*)lo, hi - lo, PROT_READ | PROT_WRITE)) return false;
    for (uintptr_t p = lo; p < hi; p += kPage) page_of(*d, p).store(PG_WRITTEN);
    return true;
  }
  if (rw) st.store(PG_WRITTEN);
  else { uint8_t none = PG_NONE; st.compare_exchange_strong(none, PG_READ); }
  return true;
}
// Device memory with the rule on: whole pages, filled, then PROT_NONE; nullptr if mmap fails.
static void* map_device(size_t n, const char* api) {
  size_t len = (std::max<size_t>(n, 1) + kPage - 1) & ~(kPage - 1);
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  if (R().poison) memset(p, 0xff, len);  // the page's tail past n too: an overrun reads NaN
  install_signal_handlers();
  std::lock_guard<std::mutex> lk(g_range_mu);
  for (int i = 0; i < kMaxRanges; i++) {
    DevRange& d = g_ranges[i];
    if (d.hi.load(std::memory_order_relaxed)) continue;
    d.pages = new std::atomic<uint8_t>[len / kPage]();
    d.lo.store((uintptr_t)p, std::memory_order_relaxed);
    d.size = n; d.api = api; d.site = capture_site();
    mprotect(p, len, PROT_NONE);
    d.hi.store((uintptr_t)p + len, std::memory_order_release);
    if (i >= g_nranges.load()) g_nranges.store(i + 1, std::memory_order_release);
    break;
  }
  return p;
}
static void unmap_device(void* p, size_t n) {
  size_t len = (std::max<size_t>(n, 1) + kPage - 1) & ~(kPage - 1);
  {
    std::lock_guard<std::mutex> lk(g_range_mu);
    if (DevRange* d = find_range((uintptr_t)p)) {
      d->hi.store(0, std::memory_order_release);
      delete[] d->pages; d->pages = nullptr;
    }
  }
  munmap(p, len);
}
// The runtime writes [p, p+n) (cudaMemset, cudaMemcpy): one mprotect instead of a fault per page.
static void note_device_write(const void* p, size_t n) {
  DevRange* d = R().initcheck && n ? find_range((uintptr_t)p) : nullptr;
  if (!d) return;
  uintptr_t first = (uintptr_t)p & ~(kPage - 1), end = ((uintptr_t)p + n + kPage - 1) & ~(kPage - 1);
  bool all = true;
  for (uintptr_t a = first; a < end && all; a += kPage) all = page_of(*d, a).load(std::memory_order_relaxed) == PG_WRITTEN;
  if (all || mprotect((void*)first, end - first, PROT_READ | PROT_WRITE)) return;
  for (uintptr_t a = first; a < end; a += kPage) page_of(*d, a).store(PG_WRITTEN);
}
// Copies device bytes without touching a page that nothing wrote (the runtime's own look would
// count as its first read, and hide a kernel's): such a page still holds the fill.
static void peek(void* dst, const void* src, size_t n) {
  uintptr_t s = (uintptr_t)src;
  DevRange* d = R().initcheck ? find_range(s) : nullptr;
  for (size_t i = 0, k; i < n; i += k) {
    k = std::min(n - i, (size_t)(kPage - ((s + i) & (kPage - 1))));
    if (d && s + i < d->hi.load() && page_of(*d, s + i).load() == PG_NONE) memset((char*)dst + i, R().poison ? 0xff : 0, k);
    else memcpy((char*)dst + i, (const char*)src + i, k);
  }
}
#else  // the rule is off (R().initcheck stays false): nothing is mapped
static bool initcheck_fault(const siginfo_t*, const void*) { return false; }
static void* map_device(size_t, const char*) { return nullptr; }
static void unmap_device(void*, size_t) {}
static void note_device_write(const void*, size_t) {}
static void peek(void* dst, const void* src, size_t n) { memcpy(dst, src, n); }
#endif

static struct sigaction g_old_actions[65];
static void on_fatal_signal(int sig, siginfo_t* si, void* uctx) {
  Runtime& r = R();
  if (sig == SIGSEGV && initcheck_fault(si, uctx)) return;
  if (r.cur >= 0 && r.info.name && pthread_equal(pthread_self(), r.launch_thread)) {
    print_crash_context(sig, (uintptr_t)si->si_addr);
#if defined(__x86_64__)
    const ucontext_t* uc = (const ucontext_t*)uctx;
    print_backtrace((uintptr_t)uc->uc_mcontext.gregs[REG_RIP], (uintptr_t)uc->uc_mcontext.gregs[REG_RBP]);
#else
    (void)uctx;
#endif
    r.cur = -1;  // print once, even if the chained handler faults again
  }
  // Chain: restore the previous handler (ASan's, or the default) and let the fault repeat.
  sigaction(sig, &g_old_actions[sig], nullptr);
  if (sig == SIGABRT) raise(sig);
}
#if defined(SIMT_ASAN)
static void asan_death_callback() {
  Runtime& r = R();
  if (r.cur < 0 || !r.info.name) return;
  const Fiber& f = r.fibers[r.cur];
  char b[512];
  snprintf(b, sizeof b, "SIMT ERROR [sanitizer] in kernel %s (launched at %s:%d), block (%u,%u,%u) thread (%u,%u,%u): see the sanitizer report above\n",
           r.info.name, r.info.file, r.info.line, blockIdx.x, blockIdx.y, blockIdx.z, f.tid.x, f.tid.y, f.tid.z);
  write_str(b);
}
#endif

// The watchdog interrupts a launch that makes no progress (a spin-wait on another block or thread
// can never finish here: blocks run one after another, fibers switch only at sync points).
static void on_watchdog_signal(int, siginfo_t*, void* uctx) {
  Runtime& r = R();
  char b[900];
  if (r.cur >= 0) {
    const Fiber& f = r.fibers[r.cur];
    snprintf(b, sizeof b, "SIMT ERROR [watchdog] in kernel %s (launched at %s:%d), block (%u,%u,%u) thread (%u,%u,%u): "
             "still running after %d s (SIMT_WATCHDOG_S). A thread that spins waiting for another block or thread never "
             "finishes here; if the kernel is merely slow, raise SIMT_WATCHDOG_S\n",
             r.info.name, r.info.file, r.info.line, blockIdx.x, blockIdx.y, blockIdx.z, f.tid.x, f.tid.y, f.tid.z, r.watchdog_s.load());
    write_str(b);
#if defined(__x86_64__)
    const ucontext_t* uc = (const ucontext_t*)uctx;
    print_backtrace((uintptr_t)uc->uc_mcontext.gregs[REG_RIP], (uintptr_t)uc->uc_mcontext.gregs[REG_RBP]);
#endif
  } else {
    snprintf(b, sizeof b, "SIMT ERROR [watchdog] in kernel %s (launched at %s:%d): launch still running after %d s\n",
             r.info.name, r.info.file, r.info.line, r.watchdog_s.load());
    write_str(b);
  }
  (void)uctx;
  _exit(124);
}
static void watchdog_loop() {
  Runtime& r = R();
  for (;;) {
    usleep(100 * 1000);
    double t0 = r.launch_t0.load();
    if (t0 > 0 && r.watchdog_s > 0 && now_s() - t0 > r.watchdog_s) { pthread_kill(r.launch_thread, SIGUSR2); sleep(30); _exit(124); }
  }
}

// sigaltstack is per host thread: a fiber stack overflow needs a stack to run the handler on.
struct AltStack {
  char* mem = nullptr;
  AltStack() {
    const size_t sz = 256 * 1024;
    mem = (char*)malloc(sz);
    stack_t ss{}; ss.ss_sp = mem; ss.ss_size = sz; sigaltstack(&ss, nullptr);
  }
  ~AltStack() { stack_t ss{}; ss.ss_flags = SS_DISABLE; sigaltstack(&ss, nullptr); free(mem); }
};
static pid_t g_watchdog_pid = 0;  // fork() does not copy the watchdog thread: restart it in a child
static void install_signal_handlers() {
  static thread_local AltStack alt;
  (void)alt;
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa{};
    sa.sa_sigaction = on_fatal_signal; sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigaction(sig, &sa, &g_old_actions[sig]);
    struct sigaction wd{};
    wd.sa_sigaction = on_watchdog_signal; wd.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGUSR2, &wd, nullptr);
#if defined(SIMT_ASAN)
    __sanitizer_set_death_callback(asan_death_callback);
#endif
  });
}
static void install_handlers() {
  install_signal_handlers();
  if (R().watchdog_s > 0 && g_watchdog_pid != getpid()) { g_watchdog_pid = getpid(); std::thread(watchdog_loop).detach(); }
}

// ------------------------------------------------------------------ launches
void* dynamic_smem() { return R().dyn_smem; }

static bool find_alloc(const void* p, uintptr_t* base, Alloc* a) {  // caller holds reg_mu
  Runtime& r = R();
  uintptr_t x = (uintptr_t)p;
  auto it = r.allocs.upper_bound(x);
  if (it == r.allocs.begin()) return false;
  --it;
  if (x > it->first + it->second.size) return false;  // one past the end is still "inside"
  if (base) *base = it->first;
  if (a) *a = it->second;
  return true;
}
bool is_device_ptr(const void* p) {
  std::lock_guard<std::mutex> lk(R().reg_mu);
  return find_alloc(p, nullptr, nullptr);
}
// [p, p+n) lies inside one allocation (used by the cuBLAS and NCCL shims as well).
bool device_range_ok(const void* p, size_t n) {
  std::lock_guard<std::mutex> lk(R().reg_mu);
  uintptr_t base; Alloc a;
  if (!find_alloc(p, &base, &a)) return false;
  return (uintptr_t)p + n <= base + a.size;
}

int current_device() { return t_device; }
int device_of(const void* p) {
  std::lock_guard<std::mutex> lk(R().reg_mu);
  Alloc a;
  return find_alloc(p, nullptr, &a) && a.kind == A_DEVICE ? a.dev : -1;
}
bool can_access(int dev, int owner) {
  if (owner < 0 || owner == dev) return true;
  std::lock_guard<std::mutex> lk(R().reg_mu);
  return R().peer[dev][owner];
}
int arg_status(const void* p) {
  Runtime& r = R();
  std::lock_guard<std::mutex> lk(r.reg_mu);
  Alloc a;
  if (!find_alloc(p, nullptr, &a)) return ARG_HOST;
  return a.kind != A_DEVICE || a.dev == t_device || r.peer[t_device][a.dev] ? ARG_OK : ARG_OTHER_DEVICE;
}
cudaError_t report_bad_arg(const LaunchInfo& info, int idx, const void* p, int status) {
  if (status == ARG_OTHER_DEVICE) {
    int owner = device_of(p);
    reportf("wrong-device", &info, nullptr, "%s:%d: argument %d = %p is memory of device %d, but the kernel runs on device %d "
            "(an illegal address on a GPU, unless cudaDeviceEnablePeerAccess(%d) was called on device %d)",
            info.file, info.line, idx, p, owner, t_device, owner, t_device);
    return t_last_error = cudaErrorIllegalAddress;
  }
  reportf("host-pointer", &info, nullptr, "%s:%d: argument %d = %p is not device memory (a host pointer, or freed memory?)",
          info.file, info.line, idx, p);
  return t_last_error = cudaErrorInvalidValue;
}

// Name as the rewriter sees it, e.g. "ns::kernel<float, 4>" -> "kernel": all instantiations of a
// template share one opt-in, because a launch with deduced template arguments has no address.
static std::string base_name(const char* s) {
  std::string n(s ? s : "");
  size_t lt = n.find('<'); if (lt != std::string::npos) n.resize(lt);
  size_t c = n.rfind("::"); if (c != std::string::npos) n = n.substr(c + 2);
  while (!n.empty() && (n.back() == ' ' || n.back() == '&' || n.back() == ')')) n.pop_back();
  size_t st = n.find_last_of("(&* "); if (st != std::string::npos) n = n.substr(st + 1);
  return n;
}

// Opt-in dynamic shared memory per block: the smallest of the targets CI builds for (sm_80: 163 KiB; sm_90
// has 227), so a kernel that only fits an H100 is reported here rather than failing on an A100.
#define SIMT_SMEM_OPTIN (163 * 1024)

cudaError_t func_set_attribute(const char* name, const void* f, cudaFuncAttribute a, int v) {
  cudaError_t e = cudaFuncSetAttribute(f, a, v);
  if (e == cudaSuccess && a == cudaFuncAttributeMaxDynamicSharedMemorySize && name) {
    std::lock_guard<std::mutex> lk(R().reg_mu);
    int& x = R().smem_optin_by_name[base_name(name)]; x = std::max(x, v);
  }
  return e;
}

// The i-th block to run: i, n-1-i, or a permutation of [0, n) without a table: an invertible mix of
// ceil(log2 n) bits (odd multiply, xor-shift, add), skipping values >= n (at most twice the steps).
struct BlockOrder {
  unsigned long long n, mask; int bits, sched; unsigned seed;
  unsigned long long next = 0;  // random order: the next input of the mix
  BlockOrder(unsigned long long n_, int sched_, unsigned seed_) : n(n_), sched(sched_), seed(seed_) {
    bits = 1; while (bits < 64 && (1ull << bits) < n) bits++;
    mask = bits >= 64 ? ~0ull : (1ull << bits) - 1;
  }
  unsigned long long mix(unsigned long long x) const {
    for (int round = 0; round < 2; round++) {
      x = (x * 0x9e3779b97f4a7c15ull) & mask;
      x ^= x >> (bits / 2 + 1);
      x = (x + seed * 0x632be59bd9b4e019ull + round) & mask;
    }
    return x;
  }
  unsigned long long at(unsigned long long i) {  // called with i = 0, 1, 2, ...
    if (sched == 0) return i;
    if (sched == 1) return n - 1 - i;
    for (;;) { unsigned long long v = mix(next++); if (v < n) return v; }
  }
};
static bool stream_ok(cudaStream_t s);
static cudaError_t check_launch_stream(const LaunchInfo& info, cudaStream_t s);
static void launch_stream_op(const LaunchInfo& info, cudaStream_t s, const MemAccess* acc, int n);

cudaError_t launch_erased(const Cfg& cfg, const LaunchInfo& info, void (*call)(void*), void* closure, const MemAccess* acc,
                          int nacc) {
  Runtime& r = R();
  std::lock_guard<std::mutex> lk(r.launch_mu);  // static __shared__ and threadIdx are process-global
  install_handlers();
  r.info = info;
  struct InfoReset { ~InfoReset() { R().info = LaunchInfo{}; } } info_reset;
  const dim3 &g = cfg.grid, &b = cfg.block;
  unsigned long long nt = (unsigned long long)b.x * b.y * b.z;
  // Hardware limits of sm_80/sm_90 (CUDA programming guide, compute capability table).
  if (nt == 0 || nt > 1024 || b.x > 1024 || b.y > 1024 || b.z > 64 || g.x == 0 || g.y == 0 || g.z == 0 ||
      g.x > 2147483647u || g.y > 65535 || g.z > 65535) {
    reportf("launch-config", &info, nullptr, "%s:%d: invalid launch configuration grid (%u,%u,%u) block (%u,%u,%u): limits are block x,y <= 1024, "
          "z <= 64, x*y*z <= 1024; grid x < 2^31, y,z <= 65535; none zero", info.file, info.line, g.x, g.y, g.z, b.x, b.y, b.z);
    return t_last_error = cudaErrorInvalidConfiguration;
  }
  int limit = 48 * 1024;
  {
    std::lock_guard<std::mutex> lk2(r.reg_mu);
    auto it = r.smem_optin_by_name.find(base_name(info.name));
    if (it != r.smem_optin_by_name.end()) limit = std::max(limit, it->second);
  }
  if (cfg.smem > (size_t)limit) {
    reportf("smem-limit", &info, nullptr, "%s:%d: %zu bytes of dynamic shared memory > %d; above 48 KiB needs "
          "cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) first (at most 163 KiB: sm_80)",
          info.file, info.line, cfg.smem, limit);
    return t_last_error = cudaErrorInvalidValue;
  }
  if (!stream_ok(cfg.stream)) {
    reportf("invalid-stream", &info, nullptr, "%s:%d: stream %p was not created by cudaStreamCreate or was destroyed", info.file, info.line,
          (void*)cfg.stream);
    return t_last_error = cudaErrorInvalidResourceHandle;
  }
  if (cudaError_t e = check_launch_stream(info, cfg.stream)) return e;
  // A non-const pointer argument whose first bytes the kernel leaves unchanged was probably only read
  // (the parameter may be const: the arguments' types are the caller's): compare before and after.
  const int kMaxArgs = 64, kCmp = 16;
  unsigned char before[kMaxArgs][kCmp];
  nacc = std::min(nacc, kMaxArgs);
  bool cmp[kMaxArgs];
  for (int i = 0; i < nacc; i++) {
    cmp[i] = acc[i].write && device_range_ok(acc[i].p, std::min(acc[i].bytes, (size_t)kCmp));  // not one past the end
    if (cmp[i]) peek(before[i], acc[i].p, std::min(acc[i].bytes, (size_t)kCmp));
  }
  r.call = call; r.closure = closure;
  r.nthreads = (int)nt;
  if (r.fibers.size() < nt) r.fibers.resize(nt);
  while (r.stacks.size() < nt) r.stacks.push_back(alloc_stack());
  r.order.resize(nt); r.pos_of.resize(nt);
  for (unsigned i = 0; i < nt; i++) { r.order[i] = r.sched == 1 ? (int)(nt - 1 - i) : (int)i; r.pos_of[r.order[i]] = (int)i; }
  r.warps.assign((nt + 31) / 32, Warp{});
  for (unsigned i = 0; i < nt; i++) {
    Fiber& f = r.fibers[i];
    f.stack_lo = r.stacks[i];
    f.tid = make_uint3(i % b.x, (i / b.x) % b.y, i / (b.x * b.y));
    f.lane = (int)(i % 32); f.warp = (int)(i / 32);
    r.warps[f.warp].exists |= 1u << f.lane;
  }
  // Dynamic shared memory: an exact-size heap block, so ASan sees overruns.
  r.dyn_bytes = cfg.smem; r.dyn_smem = nullptr;
  if (cfg.smem && posix_memalign((void**)&r.dyn_smem, 128, cfg.smem)) { perror("SIMT: dynamic smem"); abort(); }
  blockDim = b; gridDim = g;
  r.failed = false;
  r.uninit_reported = false;
  r.launch_thread = pthread_self();
  r.launch_t0 = now_s();
  // Blocks in the order of SIMT_SCHED too (forward, reverse, a random permutation), so that a kernel that
  // assumes an order (block 0 first, the last block to take a ticket is the highest) fails in some run.
  unsigned long long nblocks = (unsigned long long)g.x * g.y * g.z;
  BlockOrder bo(nblocks, r.sched, r.seed);
  for (unsigned long long i = 0; i < nblocks && !r.failed; i++) {
    unsigned long long b = bo.at(i);
    blockIdx = make_uint3((unsigned)(b % g.x), (unsigned)(b / g.x % g.y), (unsigned)(b / g.x / g.y));
    run_block((int)b);
  }
  r.launch_t0 = 0.0;
  free(r.dyn_smem); r.dyn_smem = nullptr;
  MemAccess seen[kMaxArgs];
  for (int i = 0; i < nacc; i++) {
    seen[i] = acc[i];
    unsigned char after[kCmp];
    if (cmp[i]) peek(after, acc[i].p, std::min(acc[i].bytes, (size_t)kCmp));
    seen[i].write = cmp[i] && memcmp(before[i], after, std::min(acc[i].bytes, (size_t)kCmp)) != 0;
  }
  launch_stream_op(info, cfg.stream, seen, nacc);
  if (r.failed) return t_last_error = cudaErrorLaunchFailure;
  return cudaSuccess;
}

unsigned long long switch_count() { return R().switches; }
void report_error(const char* kind, const char* fmt, ...) {
  va_list ap; va_start(ap, fmt); vreport(kind, nullptr, nullptr, fmt, ap); va_end(ap);
}
int errors_reported() { return R().errors.load(); }
void clear_errors() { R().errors = 0; }
void set_watchdog_seconds(int s) { R().watchdog_s = s; }
void set_device_count(int n) { R().ndev = std::min(std::max(n, 1), (int)kMaxDevices); }

}  // namespace simt

long long clock64() { timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return (long long)t.tv_sec * 1000000000LL + t.tv_nsec; }

// ------------------------------------------------------------------ CUDA runtime API subset
// Same extern "C" declarations as the real cuda_runtime_api.h (included through simt.h), so the
// compiler checks every signature. Execution is synchronous: streams run in issue order.
using simt::R;
using simt::reportf;
using simt::report_at_caller;
namespace {
const uint32_t kStreamMagic = 0x57524d53, kEventMagic = 0x544e5645;
struct SimtStream { uint32_t magic; int priority; int dev; bool blocking; int sid; };
struct SimtEvent { uint32_t magic; bool timing; bool recorded; double t; int dev; std::vector<uint32_t> vc; };
std::mutex g_obj_mu;
std::set<const void*> g_streams, g_events;
cudaError_t ret(cudaError_t e) { if (e != cudaSuccess) simt::t_last_error = e; return e; }

// Per host thread (rank): the calls that stall a training step (simt_api.h).
thread_local SimtApiCounts t_counts;

// How work on a stream synchronises implicitly: the legacy default stream waits for all blocking
// streams of its device and they wait for it; cudaStreamNonBlocking streams take part in neither.
// (The per-thread default stream is a blocking stream.)
enum SKind { S_LEGACY, S_BLOCKING, S_NONBLOCKING, S_DEVICE /* the whole device: cudaMalloc/cudaFree/cudaDeviceSynchronize */ };
const char* skind_name(int k) {
  static const char* n[] = {"the legacy default stream", "a blocking stream", "a non-blocking stream", "the whole device"};
  return n[k];
}
int stream_kind(cudaStream_t s) {
  if (s == 0 || s == cudaStreamLegacy) return S_LEGACY;
  if (s == cudaStreamPerThread) return S_BLOCKING;
  std::lock_guard<std::mutex> lk(g_obj_mu);
  return g_streams.count((const void*)s) && !((SimtStream*)s)->blocking ? S_NONBLOCKING : S_BLOCKING;
}

// ------------------------------------------------------------------ stream ordering (stream-race)
// Work runs when it is issued, so nothing here overlaps; the GPU would run streams concurrently. Each
// stream has a vector clock (one entry per stream), advanced by every operation on it. cudaEventRecord
// snapshots the stream's clock, cudaStreamWaitEvent merges a snapshot into the waiting stream, a host
// synchronisation (stream/event/device sync, a successful query, a blocking copy) merges into the host
// thread's clock, and the host thread's clock flows into everything it issues later. The legacy
// default stream merges every blocking stream of its device and they merge it (CUDA's implicit
// synchronisation); cudaStreamNonBlocking streams do neither. Device memory keeps, per byte range,
// the last write and the reads since (stream, clock, operation); an access by an operation on stream
// X to a range whose other-stream write (or, for a write, read) is not in X's clock is reported.
typedef std::vector<uint32_t> VC;
void vc_join(VC& a, const VC& b) {
  if (a.size() < b.size()) a.resize(b.size(), 0);
  for (size_t i = 0; i < b.size(); i++) a[i] = std::max(a[i], b[i]);
}
uint32_t vc_at(const VC& a, uint32_t i) { return i < a.size() ? a[i] : 0; }

struct OrdStream { VC vc; int dev; int kind; const void* handle; simt::Site created; bool has_site; };
struct OrdOp { std::string what; simt::Site site; };
struct Epoch { uint32_t sid = 0, clock = 0, op = 0; };  // clock 0: none
struct Seg { uintptr_t hi; Epoch w; std::vector<Epoch> r; };
struct Ord {
  std::mutex mu;
  std::deque<OrdStream> streams;  // a deque: references stay valid while legacy streams are added
  int legacy[simt::kMaxDevices];
  std::vector<OrdOp> ops;
  std::map<std::string, uint32_t> op_index;
  std::map<uintptr_t, Seg> shadow;  // key: range start
  VC host_all;                      // every host thread's knowledge: a new host thread starts from it
  std::set<std::pair<uint32_t, uint32_t>> reported;
  Ord() { for (int& l : legacy) l = -1; }
};
Ord g_ord;
thread_local VC t_host;
thread_local bool t_host_init = false;
thread_local int t_per_thread_sid[simt::kMaxDevices] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
// Per host thread, per stream: what a test asserts about where the work went (simt_api.h).
thread_local std::map<const void*, SimtStreamCounts> t_stream_counts;

// A host thread's first use: it inherits what all host threads knew (thread creation is not seen here).
VC& host_vc() {  // caller holds g_ord.mu
  if (!t_host_init) { t_host = g_ord.host_all; t_host_init = true; }
  return t_host;
}
void host_join(const VC& v) {  // caller holds g_ord.mu
  vc_join(host_vc(), v);
  vc_join(g_ord.host_all, v);
}
int new_sid(int dev, int kind, const void* handle, const simt::Site* site) {  // caller holds g_ord.mu
  g_ord.streams.push_back(OrdStream{VC{}, dev, kind, handle, site ? *site : simt::Site{}, site != nullptr});
  return (int)g_ord.streams.size() - 1;
}
int legacy_sid(int dev) {
  int& l = g_ord.legacy[dev];
  if (l < 0) l = new_sid(dev, S_LEGACY, nullptr, nullptr);
  return l;
}
// The stream's id (caller holds g_ord.mu; the stream was checked by stream_ok).
int sid_of(cudaStream_t s) {
  int dev = simt::t_device;
  if (s == 0 || s == cudaStreamLegacy) return legacy_sid(dev);
  if (s == cudaStreamPerThread) {
    int& p = t_per_thread_sid[dev];
    if (p < 0) p = new_sid(dev, S_BLOCKING, cudaStreamPerThread, nullptr);
    return p;
  }
  return ((const SimtStream*)s)->sid;
}
std::string stream_name(int sid) {
  const OrdStream& s = g_ord.streams[sid];
  char b[96];
  if (s.kind == S_LEGACY) { snprintf(b, sizeof b, "the legacy default stream of device %d", s.dev); return b; }
  if (s.handle == cudaStreamPerThread) { snprintf(b, sizeof b, "the per-thread default stream of device %d", s.dev); return b; }
  snprintf(b, sizeof b, "%s stream %p", s.kind == S_BLOCKING ? "blocking" : "non-blocking", s.handle);
  return std::string(b) + (s.has_site ? " (created at " + simt::site_str(s.created) + ")" : "");
}
// One more operation on stream sid: it follows what the host knows and, on the legacy stream or a
// blocking stream, the implicit synchronisation between them. Returns its clock.
uint32_t tick(int sid) {
  OrdStream& s = g_ord.streams[sid];
  vc_join(s.vc, host_vc());
  if (s.kind == S_LEGACY) {
    for (size_t i = 0; i < g_ord.streams.size(); i++)
      if ((int)i != sid && g_ord.streams[i].dev == s.dev && g_ord.streams[i].kind == S_BLOCKING) vc_join(s.vc, g_ord.streams[i].vc);
  } else if (s.kind == S_BLOCKING) {
    vc_join(s.vc, g_ord.streams[legacy_sid(s.dev)].vc);
  }
  if (s.vc.size() <= (size_t)sid) s.vc.resize(sid + 1, 0);
  return ++s.vc[sid];
}
uint32_t op_id(const char* what, const simt::Site& site) {
  std::string key(what);
  key.append((const char*)site.pc, sizeof(void*) * site.n);
  auto it = g_ord.op_index.find(key);
  if (it != g_ord.op_index.end()) return it->second;
  g_ord.ops.push_back(OrdOp{what, site});
  return g_ord.op_index[key] = (uint32_t)g_ord.ops.size() - 1;
}
void race(const Epoch& now, const Epoch& prev, bool now_writes, bool prev_wrote, uintptr_t lo, uintptr_t hi) {
  if (!g_ord.reported.insert({now.op, prev.op}).second) { R().errors++; return; }
  const OrdOp &a = g_ord.ops[now.op], &b = g_ord.ops[prev.op];
  std::string sa = stream_name(now.sid), sb = stream_name(prev.sid);
  reportf("stream-race", nullptr, nullptr, "%s: %s on %s %s bytes [%p, %p), which %s at %s on %s %s, with no ordering "
          "between the streams (on a GPU they may overlap: record an event on the second stream after that operation "
          "and cudaStreamWaitEvent on the first before this one, or synchronise)%s",
          simt::site_str(a.site).c_str(), a.what.c_str(), sa.c_str(), now_writes ? "writes" : "reads", (void*)lo, (void*)hi,
          b.what.c_str(), simt::site_str(b.site).c_str(), sb.c_str(), prev_wrote ? "wrote" : "still reads",
          a.what.compare(0, 7, "kernel ") == 0 ? " (a kernel accesses the first element of each pointer argument)" : "");
}
// Splits the shadow so that no range straddles x.
void split_at(uintptr_t x) {
  auto it = g_ord.shadow.upper_bound(x);
  if (it == g_ord.shadow.begin()) return;
  --it;
  if (it->first < x && x < it->second.hi) {
    Seg tail = it->second;
    it->second.hi = x;
    g_ord.shadow.emplace(x, tail);
  }
}
void access(const VC& vc, const Epoch& e, uintptr_t lo, uintptr_t hi, bool write) {
  split_at(lo); split_at(hi);
  // fill the gaps, so that every byte of [lo, hi) has a range
  uintptr_t cur = lo;
  for (auto it = g_ord.shadow.lower_bound(lo); cur < hi;) {
    if (it == g_ord.shadow.end() || it->first > cur) {
      uintptr_t end = it == g_ord.shadow.end() ? hi : std::min(hi, it->first);
      it = g_ord.shadow.emplace_hint(it, cur, Seg{end, Epoch{}, {}});
    }
    cur = it->second.hi; ++it;
  }
  bool found = false;
  auto first = g_ord.shadow.lower_bound(lo);
  for (auto it = first; it != g_ord.shadow.end() && it->first < hi; ++it) {
    Seg& s = it->second;
    if (!found && s.w.clock && s.w.sid != e.sid && vc_at(vc, s.w.sid) < s.w.clock) {
      race(e, s.w, write, true, it->first, s.hi); found = true;
    }
    if (write)
      for (const Epoch& r : s.r)
        if (!found && r.sid != e.sid && vc_at(vc, r.sid) < r.clock) { race(e, r, true, false, it->first, s.hi); found = true; }
    if (write) continue;
    // a read: keep the reads not ordered before it (one per stream)
    size_t k = 0;
    for (const Epoch& r : s.r)
      if (r.sid != e.sid && vc_at(vc, r.sid) < r.clock) s.r[k++] = r;
    s.r.resize(k);
    s.r.push_back(e);
  }
  if (write) {  // one range, written by this operation
    g_ord.shadow.erase(first, g_ord.shadow.lower_bound(hi));
    g_ord.shadow.emplace(lo, Seg{hi, e, {}});
  }
}
// The device allocation that holds [p, p+n), clipped to it; false if none.
bool device_range(const void* p, size_t n, uintptr_t* lo, uintptr_t* hi) {
  std::lock_guard<std::mutex> lk(R().reg_mu);
  uintptr_t base; simt::Alloc a;
  if (!simt::find_alloc(p, &base, &a) || a.kind != simt::A_DEVICE) return false;
  *lo = (uintptr_t)p;
  *hi = std::min((uintptr_t)p + n, base + a.size);
  return *lo < *hi;
}
void forget_range(uintptr_t lo, uintptr_t hi) {  // freed memory
  std::lock_guard<std::mutex> lk(g_ord.mu);
  split_at(lo); split_at(hi);
  g_ord.shadow.erase(g_ord.shadow.lower_bound(lo), g_ord.shadow.lower_bound(hi));
}
void stream_op_at(cudaStream_t s, simt::StreamOpKind kind, const char* what, const simt::MemAccess* acc, int n,
                  const simt::Site& site) {
  SimtStreamCounts& c = t_stream_counts[(const void*)s];
  if (kind == simt::SO_NCCL) { c.nccl_ops++; t_counts.nccl_ops++; }
  else if (kind == simt::SO_COPY) c.copies++;
  else c.launches++;
  struct R_ { uintptr_t lo, hi; bool w; } r[64];
  int m = 0;
  for (int i = 0; i < n && m < 64; i++)
    if (device_range(acc[i].p, acc[i].bytes, &r[m].lo, &r[m].hi)) { r[m].w = acc[i].write; m++; }
  std::lock_guard<std::mutex> lk(g_ord.mu);
  int sid = sid_of(s);
  Epoch e{(uint32_t)sid, tick(sid), m ? op_id(what, site) : 0};
  const VC& vc = g_ord.streams[sid].vc;
  for (int i = 0; i < m; i++) if (!r[i].w) access(vc, e, r[i].lo, r[i].hi, false);  // reads first: in place is a write
  for (int i = 0; i < m; i++) if (r[i].w) access(vc, e, r[i].lo, r[i].hi, true);
}
void sync_host_with_stream(cudaStream_t s) {
  std::lock_guard<std::mutex> lk(g_ord.mu);
  host_join(g_ord.streams[sid_of(s)].vc);
}

// NCCL operations that wait for a peer, by device. An NCCL kernel occupies its stream until the
// peer's matching call runs; if that peer is another rank on the same device and first calls
// something that waits for this device's work, neither can proceed: a deadlock on a GPU (here the
// ranks are threads and nothing hangs, so it is reported when it would have happened).
struct PendingOp { int dev, skind; std::string what; };
std::mutex g_pending_mu;
std::map<int, PendingOp> g_pending;
int g_pending_next = 0;
std::atomic<int> g_pending_count{0};
void hazard(const char* api, int kind) {
  if (g_pending_count.load(std::memory_order_relaxed) == 0) return;  // the common case: no lock
  int dev = simt::t_device;
  std::string what; int pk = 0;
  {
    std::lock_guard<std::mutex> lk(g_pending_mu);
    for (auto& kv : g_pending) {
      const PendingOp& p = kv.second;
      bool waits = kind == S_DEVICE || (kind == S_LEGACY && p.skind != S_NONBLOCKING) || (kind == S_BLOCKING && p.skind == S_LEGACY);
      if (p.dev == dev && waits) { what = p.what; pk = p.skind; break; }
    }
  }
  if (what.empty()) return;
  report_at_caller("deadlock-hazard", "%s on device %d (%s) while %s is pending on %s of that device: the call waits for "
                   "the NCCL operation, which waits for its peer; when the peer is this rank (two ranks on one device) that "
                   "is a deadlock on a GPU", api, dev, skind_name(kind), what.c_str(), skind_name(pk));
}
void hazard_on(const char* api, cudaStream_t s) {
  if (g_pending_count.load(std::memory_order_relaxed) != 0) hazard(api, stream_kind(s));
}

const char* kind_name(int k) { return k == simt::A_DEVICE ? "device" : k == simt::A_PINNED ? "pinned host" : "managed"; }
cudaError_t do_alloc(void** p, size_t n, int kind, const char* api) {
  t_counts.malloc_calls++;
  if (strcmp(api, "cudaMallocAsync")) hazard(api, S_DEVICE);  // stream-ordered allocation does not synchronise
  if (!p) return ret(cudaErrorInvalidValue);
  // Device memory is not zeroed on a GPU: fill it with NaN bits (0xFF) so reliance on zeros,
  // or reading memory that was never written, shows up. SIMT_POISON=0 turns this off.
  if (kind == simt::A_DEVICE && R().initcheck) {  // whole pages (page-aligned), unreadable until written
    if (!(*p = simt::map_device(n, api))) return ret(cudaErrorMemoryAllocation);
  } else {
    // cudaMalloc memory is 256-byte aligned. Exact size (posix_memalign, no rounding) so ASan sees
    // overruns.
    if (posix_memalign(p, 256, n ? n : 1)) { *p = nullptr; return ret(cudaErrorMemoryAllocation); }
    if (kind == simt::A_DEVICE && R().poison) memset(*p, 0xff, n);
  }
#if defined(SIMT_ASAN)
  __lsan_ignore_object(*p);  // like a CUDA context, exit frees device memory: not a leak
#endif
  std::lock_guard<std::mutex> lk(R().reg_mu);
  R().allocs[(uintptr_t)*p] = simt::Alloc{n, kind, simt::t_device};
  R().allocated += n;
  return cudaSuccess;
}
cudaError_t do_free(void* p, const char* api, bool want_host) {
  t_counts.free_calls++;
  if (strcmp(api, "cudaFreeAsync")) hazard(api, S_DEVICE);  // cudaFree synchronises the device
  if (!p) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lk(R().reg_mu);
    auto it = R().allocs.find((uintptr_t)p);
    if (it != R().allocs.end() && (it->second.kind == simt::A_PINNED) == want_host) {
      forget_range((uintptr_t)p, (uintptr_t)p + it->second.size);
      R().allocated -= it->second.size;
      if (it->second.kind == simt::A_DEVICE && R().initcheck) simt::unmap_device(p, it->second.size);
      else free(p);
      R().allocs.erase(it);
      return cudaSuccess;
    }
  }
  report("invalid-free", "%s(%p): not a live %s allocation", api, p, want_host ? "cudaMallocHost" : "cudaMalloc");
  return ret(cudaErrorInvalidValue);
}
// What a pointer is, for memcpy checks: -1 = plain host memory.
int ptr_kind(const void* p, size_t n, bool* in_range) {
  std::lock_guard<std::mutex> lk(R().reg_mu);
  uintptr_t base; simt::Alloc a;
  if (!simt::find_alloc(p, &base, &a)) { *in_range = true; return -1; }
  *in_range = (uintptr_t)p + n <= base + a.size;
  return a.kind;
}
bool ptr_pinned(const void* p) {
  std::lock_guard<std::mutex> lk(R().reg_mu);
  simt::Alloc a;
  return simt::find_alloc(p, nullptr, &a) && a.kind == simt::A_PINNED;
}
cudaError_t check_copy(const char* api, void* dst, const void* src, size_t n, cudaMemcpyKind k) {
  if (n == 0) return cudaSuccess;
  bool din, sin;
  int dk = ptr_kind(dst, n, &din), sk = ptr_kind(src, n, &sin);
  // A host side that is not pinned: staged through a driver buffer, synchronous with the host.
  if (((k == cudaMemcpyHostToDevice || k == cudaMemcpyHostToHost || k == cudaMemcpyDefault) && sk < 0) ||
      ((k == cudaMemcpyDeviceToHost || k == cudaMemcpyHostToHost || k == cudaMemcpyDefault) && dk < 0))
    t_counts.pageable_copies++;
  if (k == cudaMemcpyDefault) return din && sin ? cudaSuccess : (report("memcpy-range", "%s: %zu bytes run past the end of an allocation", api, n), ret(cudaErrorInvalidValue));
  bool dst_dev = k == cudaMemcpyHostToDevice || k == cudaMemcpyDeviceToDevice;
  bool src_dev = k == cudaMemcpyDeviceToHost || k == cudaMemcpyDeviceToDevice;
  // Pinned and managed memory are reachable from both sides (unified addressing).
  if (dst_dev && dk < 0) { report("memcpy-kind", "%s: destination %p is not device memory (kind %d)", api, dst, (int)k); return ret(cudaErrorInvalidValue); }
  if (src_dev && sk < 0) { report("memcpy-kind", "%s: source %p is not device memory (kind %d)", api, src, (int)k); return ret(cudaErrorInvalidValue); }
  if (!din) { report("memcpy-range", "%s: destination %p + %zu bytes runs past the end of its %s allocation", api, dst, n, kind_name(dk)); return ret(cudaErrorInvalidValue); }
  if (!sin) { report("memcpy-range", "%s: source %p + %zu bytes runs past the end of its %s allocation", api, src, n, kind_name(sk)); return ret(cudaErrorInvalidValue); }
  return cudaSuccess;
}
bool event_ok(cudaEvent_t e) { std::lock_guard<std::mutex> lk(g_obj_mu); return e && g_events.count((const void*)e); }
bool device_ok(int d) { return d >= 0 && d < R().ndev; }
}  // namespace
namespace simt {
static bool stream_ok(cudaStream_t s) {
  if (s == 0 || s == cudaStreamLegacy || s == cudaStreamPerThread) return true;
  std::lock_guard<std::mutex> lk(g_obj_mu);
  return g_streams.count((const void*)s) != 0;
}
int stream_device(const void* sp) {
  cudaStream_t s = (cudaStream_t)sp;
  if (s == 0 || s == cudaStreamLegacy || s == cudaStreamPerThread) return t_device;
  std::lock_guard<std::mutex> lk(g_obj_mu);
  return g_streams.count(sp) ? ((SimtStream*)s)->dev : -1;
}
// Launches: on a stream of the current device; implicit synchronisation with pending NCCL work.
static cudaError_t check_launch_stream(const LaunchInfo& info, cudaStream_t s) {
  int dev = stream_device(s);
  if (dev != t_device) {
    reportf("wrong-device", &info, nullptr, "%s:%d: launch on a stream of device %d while device %d is current (a stream belongs "
            "to the device current at its creation)", info.file, info.line, dev, t_device);
    return t_last_error = cudaErrorInvalidResourceHandle;
  }
  hazard_on("kernel launch", s);
  return cudaSuccess;
}
int nccl_pending_begin(int dev, const void* stream, const std::string& what) {
  int k = stream_kind((cudaStream_t)stream);
  std::lock_guard<std::mutex> lk(g_pending_mu);
  g_pending[g_pending_next] = PendingOp{dev, k, what};
  g_pending_count++;
  return g_pending_next++;
}
void nccl_pending_end(int token) {
  std::lock_guard<std::mutex> lk(g_pending_mu);
  if (g_pending.erase(token)) g_pending_count--;
}
int nccl_pending(int dev) {
  std::lock_guard<std::mutex> lk(g_pending_mu);
  int n = 0;
  for (auto& kv : g_pending) n += kv.second.dev == dev;
  return n;
}
static void launch_stream_op(const LaunchInfo& info, cudaStream_t s, const MemAccess* acc, int n) {
  std::string what = std::string("kernel ") + base_name(info.name);
  stream_op_at(s, SO_KERNEL, what.c_str(), acc, n, capture_site());
}
void stream_op(const void* stream, StreamOpKind kind, const char* what, const MemAccess* acc, int n) {
  if (stream_ok((cudaStream_t)stream)) stream_op_at((cudaStream_t)stream, kind, what, acc, n, capture_site());
}
}  // namespace simt

extern "C" {
int simt_api_counts(SimtApiCounts* c) { *c = t_counts; return 1; }
int simt_api_stream_counts(const void* stream, SimtStreamCounts* c) {
  auto it = t_stream_counts.find(stream);
  *c = it == t_stream_counts.end() ? SimtStreamCounts{} : it->second;
  return 1;
}
void simt_api_counts_reset(void) { t_counts = SimtApiCounts{}; t_stream_counts.clear(); }

cudaError_t cudaMalloc(void** p, size_t n) { return do_alloc(p, n, simt::A_DEVICE, "cudaMalloc"); }
cudaError_t cudaMallocAsync(void** p, size_t n, cudaStream_t) { return do_alloc(p, n, simt::A_DEVICE, "cudaMallocAsync"); }
cudaError_t cudaMallocManaged(void** p, size_t n, unsigned) { return do_alloc(p, n, simt::A_MANAGED, "cudaMallocManaged"); }
cudaError_t cudaMallocHost(void** p, size_t n) { return do_alloc(p, n, simt::A_PINNED, "cudaMallocHost"); }
cudaError_t cudaHostAlloc(void** p, size_t n, unsigned) { return do_alloc(p, n, simt::A_PINNED, "cudaHostAlloc"); }
cudaError_t cudaFree(void* p) { return do_free(p, "cudaFree", false); }
cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return do_free(p, "cudaFreeAsync", false); }
cudaError_t cudaFreeHost(void* p) { return do_free(p, "cudaFreeHost", true); }
// A copy as an operation on stream s (stream-race rule). cudaMemcpy also synchronises the host as CUDA
// documents: not at all between device buffers; a pageable upload waits for the legacy stream's earlier
// work only; anything else returns when the copy is done.
static void copy_op(const char* api, void* dst, const void* src, size_t n, cudaStream_t s, bool blocking) {
  simt::MemAccess acc[2] = {{src, n, false}, {dst, n, true}};
  bool dst_dev = simt::device_of(dst) >= 0, src_dev = simt::device_of(src) >= 0;
  bool src_pinned = !src_dev && ptr_pinned(src);
  bool before = blocking && !src_dev && !src_pinned && dst_dev, after = blocking && !(src_dev && dst_dev) && !before;
  if (before) { sync_host_with_stream(s); t_counts.host_syncs++; }
  stream_op_at(s, simt::SO_COPY, api, acc, 2, simt::capture_site());
  if (after) { sync_host_with_stream(s); t_counts.host_syncs++; }
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind k) {
  hazard("cudaMemcpy", S_LEGACY);
  cudaError_t e = check_copy("cudaMemcpy", dst, src, n, k);
  if (e == cudaSuccess && n) { copy_op("cudaMemcpy", dst, src, n, 0, true); simt::note_device_write(dst, n); memmove(dst, src, n); }
  return e;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind k, cudaStream_t s) {
  if (!simt::stream_ok(s)) return ret(cudaErrorInvalidResourceHandle);
  hazard_on("cudaMemcpyAsync", s);
  cudaError_t e = check_copy("cudaMemcpyAsync", dst, src, n, k);
  if (e == cudaSuccess && n) { copy_op("cudaMemcpyAsync", dst, src, n, s, false); simt::note_device_write(dst, n); memmove(dst, src, n); }
  return e;
}
static cudaError_t do_memset(const char* api, void* p, int v, size_t n, cudaStream_t s) {
  if (n && !simt::device_range_ok(p, n)) { report("memset-range", "%s(%p, %d, %zu): not inside one device allocation", api, p, v, n); return ret(cudaErrorInvalidValue); }
  simt::MemAccess acc{p, n, true};
  stream_op_at(s, simt::SO_COPY, api, &acc, 1, simt::capture_site());
  simt::note_device_write(p, n);
  memset(p, v, n); return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int v, size_t n) { hazard("cudaMemset", S_LEGACY); return do_memset("cudaMemset", p, v, n, 0); }
cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t s) {
  if (!simt::stream_ok(s)) return ret(cudaErrorInvalidResourceHandle);
  hazard_on("cudaMemsetAsync", s);
  return do_memset("cudaMemsetAsync", p, v, n, s);
}
cudaError_t cudaMemcpyToSymbol(const void* sym, const void* src, size_t n, size_t off, cudaMemcpyKind) {
  memcpy((char*)sym + off, src, n); return cudaSuccess;
}
cudaError_t cudaMemcpyFromSymbol(void* dst, const void* sym, size_t n, size_t off, cudaMemcpyKind) {
  memcpy(dst, (const char*)sym + off, n); return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_b, size_t* total) {
  *total = 80ull << 30;
  std::lock_guard<std::mutex> lk(R().reg_mu);
  *free_b = *total > R().allocated ? *total - R().allocated : 0;
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithPriority(cudaStream_t* s, unsigned flags, int prio) {
  SimtStream* x = new SimtStream{kStreamMagic, prio, simt::t_device, !(flags & cudaStreamNonBlocking), -1};
  simt::Site site = simt::capture_site();
  {
    std::lock_guard<std::mutex> lk(g_ord.mu);
    x->sid = new_sid(x->dev, x->blocking ? S_BLOCKING : S_NONBLOCKING, x, &site);
  }
  std::lock_guard<std::mutex> lk(g_obj_mu);
  g_streams.insert(x); *s = (cudaStream_t)x; return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithPriority(s, cudaStreamDefault, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned f) { return cudaStreamCreateWithPriority(s, f, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  std::lock_guard<std::mutex> lk(g_obj_mu);
  if (!g_streams.erase((const void*)s)) return ret(cudaErrorInvalidResourceHandle);
  delete (SimtStream*)s; return cudaSuccess;
}
cudaError_t cudaDeviceGetStreamPriorityRange(int* least, int* greatest) { if (least) *least = 0; if (greatest) *greatest = -5; return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  t_counts.stream_syncs++;
  if (!simt::stream_ok(s)) return ret(cudaErrorInvalidResourceHandle);
  if (s == 0 || s == cudaStreamLegacy) hazard("cudaStreamSynchronize", S_LEGACY);
  t_counts.host_syncs++;
  sync_host_with_stream(s);
  return simt::t_last_error;
}
// The stream's work is always done here, and a query that says so is a host synchronisation.
cudaError_t cudaStreamQuery(cudaStream_t s) {
  if (!simt::stream_ok(s)) return ret(cudaErrorInvalidResourceHandle);
  t_counts.host_syncs++;
  sync_host_with_stream(s);
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
  if (!simt::stream_ok(s) || !event_ok(e)) return ret(cudaErrorInvalidResourceHandle);
  t_counts.stream_waits++;
  t_stream_counts[(const void*)s].event_waits++;
  std::lock_guard<std::mutex> lk(g_ord.mu);
  vc_join(g_ord.streams[sid_of(s)].vc, ((SimtEvent*)e)->vc);  // an event never recorded: nothing to wait for
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
  t_counts.device_syncs++;
  t_counts.host_syncs++;
  hazard("cudaDeviceSynchronize", S_DEVICE);
  std::lock_guard<std::mutex> lk(g_ord.mu);
  legacy_sid(simt::t_device);
  for (const OrdStream& o : g_ord.streams) if (o.dev == simt::t_device) host_join(o.vc);
  return simt::t_last_error;
}
cudaError_t cudaGetLastError(void) { cudaError_t e = simt::t_last_error; simt::t_last_error = cudaSuccess; return e; }
cudaError_t cudaPeekAtLastError(void) { return simt::t_last_error; }

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags) {
  SimtEvent* x = new SimtEvent{kEventMagic, !(flags & cudaEventDisableTiming), false, 0, simt::t_device};
  std::lock_guard<std::mutex> lk(g_obj_mu);
  g_events.insert(x); *e = (cudaEvent_t)x; return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  std::lock_guard<std::mutex> lk(g_obj_mu);
  if (!g_events.erase((const void*)e)) return ret(cudaErrorInvalidResourceHandle);
  delete (SimtEvent*)e; return cudaSuccess;
}
// Work is synchronous, so the host clock at record time is when the stream got there.
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (!event_ok(e) || !simt::stream_ok(s)) return ret(cudaErrorInvalidResourceHandle);
  SimtEvent* x = (SimtEvent*)e;
  int sd = simt::stream_device(s);
  if (x->dev != sd) {  // as CUDA: an event is recorded on a stream of its own device
    report_at_caller("wrong-device", "cudaEventRecord: event of device %d recorded on a stream of device %d", x->dev, sd);
    return ret(cudaErrorInvalidResourceHandle);
  }
  t_counts.event_records++;
  t_stream_counts[(const void*)s].event_records++;
  {
    std::lock_guard<std::mutex> lk(g_ord.mu);
    int sid = sid_of(s);
    tick(sid);  // the event completes after the stream's earlier work, and after what the host knew
    x->vc = g_ord.streams[sid].vc;
  }
  x->t = simt::now_s(); x->recorded = true; return cudaSuccess;
}
cudaError_t cudaEventRecordWithFlags(cudaEvent_t e, cudaStream_t s, unsigned) { return cudaEventRecord(e, s); }
static void sync_host_with_event(cudaEvent_t e) {
  t_counts.host_syncs++;
  std::lock_guard<std::mutex> lk(g_ord.mu);
  host_join(((SimtEvent*)e)->vc);
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  if (!event_ok(e)) return ret(cudaErrorInvalidResourceHandle);
  t_counts.event_syncs++;
  sync_host_with_event(e);
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t e) {  // always complete here: a host synchronisation
  if (!event_ok(e)) return ret(cudaErrorInvalidResourceHandle);
  sync_host_with_event(e);
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  if (!event_ok(a) || !event_ok(b)) return ret(cudaErrorInvalidResourceHandle);
  SimtEvent *x = (SimtEvent*)a, *y = (SimtEvent*)b;
  if (!x->timing || !y->timing) return ret(cudaErrorInvalidResourceHandle);  // as CUDA: created with DisableTiming
  if (!x->recorded || !y->recorded) return ret(cudaErrorInvalidResourceHandle);
  *ms = (float)((y->t - x->t) * 1e3);
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int d) { if (!device_ok(d)) return ret(cudaErrorInvalidDevice); simt::t_device = d; return cudaSuccess; }
cudaError_t cudaGetDevice(int* d) { *d = simt::t_device; return cudaSuccess; }
cudaError_t cudaGetDeviceCount(int* n) { *n = R().ndev; return cudaSuccess; }
cudaError_t cudaDeviceCanAccessPeer(int* can, int d, int peer) {
  if (!device_ok(d) || !device_ok(peer)) return ret(cudaErrorInvalidDevice);
  *can = d != peer; return cudaSuccess;
}
// The current device may then dereference `peer`'s memory (one direction, as in CUDA).
cudaError_t cudaDeviceEnablePeerAccess(int peer, unsigned) {
  if (!device_ok(peer) || peer == simt::t_device) return ret(cudaErrorInvalidDevice);
  std::lock_guard<std::mutex> lk(R().reg_mu);
  bool& p = R().peer[simt::t_device][peer];
  if (p) return ret(cudaErrorPeerAccessAlreadyEnabled);
  p = true; return cudaSuccess;
}
cudaError_t cudaDeviceDisablePeerAccess(int peer) {
  if (!device_ok(peer)) return ret(cudaErrorInvalidDevice);
  std::lock_guard<std::mutex> lk(R().reg_mu);
  bool& p = R().peer[simt::t_device][peer];
  if (!p) return ret(cudaErrorPeerAccessNotEnabled);
  p = false; return cudaSuccess;
}
cudaError_t cudaDeviceReset(void) { return cudaSuccess; }
cudaError_t cudaDeviceSetLimit(cudaLimit, size_t) { return cudaSuccess; }
cudaError_t cudaRuntimeGetVersion(int* v) { *v = CUDART_VERSION; return cudaSuccess; }
cudaError_t cudaDriverGetVersion(int* v) { *v = CUDART_VERSION; return cudaSuccess; }
cudaError_t cudaFuncSetAttribute(const void* f, cudaFuncAttribute a, int v) {
  if (a == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (v < 0 || v > SIMT_SMEM_OPTIN) return ret(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lk(R().reg_mu);
    R().smem_optin_by_addr[f] = v;
  }
  return cudaSuccess;
}
// H100 (sm_90) values, so that code sizing grids from the device sees realistic numbers.
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int dev) {
  if (!device_ok(dev)) return ret(cudaErrorInvalidDevice);
  switch (a) {
    case cudaDevAttrMultiProcessorCount: *v = 132; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = SIMT_SMEM_OPTIN; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = 48 * 1024; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *v = 228 * 1024; break;
    case cudaDevAttrComputeCapabilityMajor: *v = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *v = 0; break;
    case cudaDevAttrWarpSize: *v = 32; break;
    case cudaDevAttrMaxThreadsPerBlock: *v = 1024; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *v = 2048; break;
    case cudaDevAttrMaxBlockDimX: case cudaDevAttrMaxBlockDimY: *v = 1024; break;
    case cudaDevAttrMaxBlockDimZ: *v = 64; break;
    case cudaDevAttrMaxGridDimX: *v = 2147483647; break;
    case cudaDevAttrMaxGridDimY: case cudaDevAttrMaxGridDimZ: *v = 65535; break;
    case cudaDevAttrMaxRegistersPerBlock: *v = 65536; break;
    case cudaDevAttrL2CacheSize: *v = 50 * 1024 * 1024; break;
    case cudaDevAttrUnifiedAddressing: case cudaDevAttrManagedMemory: *v = 1; break;
    default: *v = 0;
  }
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int dev) {
  if (!device_ok(dev)) return ret(cudaErrorInvalidDevice);
  memset(p, 0, sizeof *p);
  strcpy(p->name, "SIMT on CPU (H100 limits)");
  p->major = 9; p->minor = 0; p->multiProcessorCount = 132; p->warpSize = 32;
  p->maxThreadsPerBlock = 1024; p->maxThreadsPerMultiProcessor = 2048;
  p->maxThreadsDim[0] = 1024; p->maxThreadsDim[1] = 1024; p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647; p->maxGridSize[1] = 65535; p->maxGridSize[2] = 65535;
  p->sharedMemPerBlock = 48 * 1024; p->sharedMemPerBlockOptin = SIMT_SMEM_OPTIN; p->sharedMemPerMultiprocessor = 228 * 1024;
  p->regsPerBlock = 65536; p->regsPerMultiprocessor = 65536; p->totalGlobalMem = 80ull << 30; p->l2CacheSize = 50 << 20;
  p->totalConstMem = 64 * 1024; p->unifiedAddressing = 1; p->managedMemory = 1; p->concurrentKernels = 1;
  return cudaSuccess;
}
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, const void*, int block, size_t) {
  *n = block > 0 ? std::max(1, 2048 / block) : 0; return cudaSuccess;
}
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorPeerAccessAlreadyEnabled: return "cudaErrorPeerAccessAlreadyEnabled";
    case cudaErrorPeerAccessNotEnabled: return "cudaErrorPeerAccessNotEnabled";
    default: return "cudaErrorUnknown";
  }
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure (SIMT: see the SIMT ERROR report)";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered (SIMT: see the SIMT ERROR report)";
    case cudaErrorPeerAccessAlreadyEnabled: return "peer access is already enabled";
    case cudaErrorPeerAccessNotEnabled: return "peer access has not been enabled";
    default: return "unknown error (SIMT runtime)";
  }
}
}  // extern "C"

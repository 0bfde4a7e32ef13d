// simt_test_util.h -- small host-side helpers for kernel tests (sim mode or nvcc).
//
//   CHECK(cond, "fmt", ...)             count a pass or print a failure with its line
//   validate("name", got, ref, n, atol, rtol)  elementwise |got - ref| <= atol + rtol * |ref|
//   to_device(vec) / from_device<T>(ptr, n)    cudaMalloc + copy, copy back
//   run_child(fn, timeout_s)           run fn in a forked child, capture stdout+stderr, kill it on
//                                      timeout: how a deliberately broken kernel is tested without
//                                      letting it hang or end the test binary
//   expect_report("name", fn, {"substr", ...})  CHECK that the child's output has every substring
//   return test_summary();             prints the project's last line "N passed, N failed"
#pragma once
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

namespace simt_test {
inline int& passes() { static int n = 0; return n; }
inline int& failures() { static int n = 0; return n; }
inline void check(bool ok, const char* file, int line, const char* what) {
  if (ok) { passes()++; return; }
  failures()++;
  printf("FAIL %s:%d: %s\n", file, line, what);
  fflush(stdout);
}
#define CHECK(cond, ...)                                                          \
  do {                                                                            \
    bool simt_ok_ = (cond);                                                       \
    char simt_buf_[512] = "";                                                     \
    if (!simt_ok_) snprintf(simt_buf_, sizeof simt_buf_, __VA_ARGS__);            \
    ::simt_test::check(simt_ok_, __FILE__, __LINE__, simt_buf_);                  \
  } while (0)

inline int test_summary() {
  printf("%d passed, %d failed\n", passes(), failures());
  fflush(stdout);
  return failures() != 0;
}

inline float to_float(float x) { return x; }
inline float to_float(double x) { return (float)x; }
inline float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
inline float to_float(__half x) { return __half2float(x); }

// Returns the number of mismatches (and counts one CHECK). NaN never matches.
template <class T, class U>
int validate(const char* name, const T* got, const U* ref, size_t n, double atol, double rtol, int show = 5) {
  int bad = 0; double worst = 0; size_t worst_i = 0;
  for (size_t i = 0; i < n; i++) {
    double g = to_float(got[i]), r = to_float(ref[i]), d = fabs(g - r);
    bool ok = d <= atol + rtol * fabs(r);  // false for NaN
    if (!ok) {
      if (bad < show) printf("  %s[%zu]: got %.8g, expected %.8g\n", name, i, g, r);
      bad++;
    }
    if (!(d <= worst)) { worst = d; worst_i = i; }
  }
  CHECK(bad == 0, "%s: %d of %zu elements outside atol %g rtol %g (worst |diff| %g at %zu)", name, bad, n, atol, rtol, worst, worst_i);
  return bad;
}

template <class T> T* to_device(const std::vector<T>& h) {
  T* d = nullptr;
  if (cudaMalloc((void**)&d, h.size() * sizeof(T) + (h.empty() ? 1 : 0)) != cudaSuccess) { fprintf(stderr, "cudaMalloc failed\n"); exit(1); }
  cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
  return d;
}
template <class T> std::vector<T> from_device(const T* d, size_t n) {
  std::vector<T> h(n);
  cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
  return h;
}
inline double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct ChildResult {
  bool timed_out = false;
  int exit_code = -1;  // when it exited
  int signal = 0;      // when a signal killed it
  std::string output;  // stdout and stderr, interleaved
};
// Runs fn() in a forked child. The child ends with exit(fn's return) when `use_exit` (so atexit
// handlers run), else _exit (no leak checks or exit hooks of a half-broken process).
inline ChildResult run_child(const std::function<int()>& fn, double timeout_s = 20, bool use_exit = false) {
  ChildResult res;
  int fd[2];
  if (pipe(fd) != 0) { perror("pipe"); exit(1); }
  fflush(stdout); fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    close(fd[0]);
    dup2(fd[1], 1); dup2(fd[1], 2); close(fd[1]);
    setvbuf(stdout, nullptr, _IONBF, 0);
    int code = fn();
    fflush(stdout); fflush(stderr);
    if (use_exit) exit(code);
    _exit(code);
  }
  close(fd[1]);
  double deadline = now_s() + timeout_s;
  char buf[4096];
  for (;;) {
    int left_ms = (int)((deadline - now_s()) * 1000);
    if (left_ms <= 0) { res.timed_out = true; kill(pid, SIGKILL); break; }
    pollfd p{fd[0], POLLIN, 0};
    int r = poll(&p, 1, left_ms);
    if (r < 0) continue;
    if (r == 0) continue;  // deadline handled above
    ssize_t n = read(fd[0], buf, sizeof buf);
    if (n <= 0) break;     // child closed its end: it has exited
    res.output.append(buf, (size_t)n);
  }
  close(fd[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  if (WIFEXITED(st)) res.exit_code = WEXITSTATUS(st);
  if (WIFSIGNALED(st)) res.signal = WTERMSIG(st);
  return res;
}

// Runs fn in a child and CHECKs that it finished within the timeout and printed every substring.
// Prints the child's output when a check fails. Returns the result for further checks.
inline ChildResult expect_report(const char* name, const std::function<int()>& fn, std::initializer_list<std::string> want,
                                 double timeout_s = 20, bool use_exit = false) {
  ChildResult r = run_child(fn, timeout_s, use_exit);
  bool ok = !r.timed_out;
  CHECK(!r.timed_out, "%s: child still running after %.0f s (a hang)", name, timeout_s);
  for (const std::string& w : want) {
    bool found = r.output.find(w) != std::string::npos;
    CHECK(found, "%s: report lacks \"%s\"", name, w.c_str());
    ok &= found;
  }
  if (!ok) printf("---- output of %s:\n%s---- end\n", name, r.output.c_str());
  return r;
}

// Line of the first line of `file` containing `marker`, for checking reported source lines
// against markers in the test's own source. 0 if not found (which fails the checks that use it).
inline int line_of_marker(const char* file, const char* marker) {
  FILE* f = fopen(file, "r");
  if (!f) return 0;
  char line[1024]; int n = 0, found = 0;
  while (fgets(line, sizeof line, f)) { n++; if (strstr(line, marker)) { found = n; break; } }
  fclose(f);
  return found;
}
inline std::string at_line(const char* file, int line) { return std::string(file) + ":" + std::to_string(line); }
}  // namespace simt_test

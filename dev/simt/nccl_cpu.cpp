// nccl_cpu.cpp -- the NCCL subset a pipeline-parallel trainer uses, for sim mode. Ranks are host
// threads of ONE process (one thread per rank), buffers are cudaMalloc'd host memory, and every
// call completes before it returns (streams are synchronous in sim mode). Compiled against the
// REAL nccl.h and linked instead of -lnccl.
//
// Semantics kept strict, so that what passes here does not hang on real NCCL:
//  * ncclSend/ncclRecv outside a group are rendezvous: a send returns once the peer received it.
//    Inside ncclGroupStart/End, all sends of the group are posted first, then receives and
//    collectives run in issue order.
//  * Collectives match by order: the i-th collective of every rank must be the same call (kind,
//    count, type, op, root), else it is reported.
//  * Deadlock: when every live rank of a communicator is blocked in NCCL and none can proceed
//    (e.g. both pipeline neighbours send first), all of them return ncclInvalidUsage at once and
//    the report says who waits where. A rank that never calls NCCL again is caught by a timeout
//    (SIMT_NCCL_TIMEOUT seconds, default 120).
//  * Devices: each rank's communicator belongs to the device current at ncclCommInitRank; two ranks
//    of one communicator on one device fail as in NCCL ("Duplicate GPU detected", ncclInvalidUsage),
//    and buffers or streams of another device are reported. Ranks that used different unique ids
//    never meet: the timeout report says so.
//  * While a rank waits in NCCL, its operation is pending on its device: another rank's cudaMalloc,
//    cudaFree, device sync or implicitly synchronising stream work there is a deadlock hazard
//    (reported by the runtime, simt_runtime.cpp).
//  * ncclCommAbort wakes the ranks blocked in the same communicator with ncclRemoteError (real NCCL
//    leaves them waiting); ncclCommGetAsyncError reports it.
// Reductions run in rank order in fp32 (fp64 for doubles, int64 for integers) and are rounded
// once, so all ranks get bitwise identical results; real NCCL's order differs (use tolerances).
#include <nccl.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>
#include "simt_host.h"

namespace {
enum Kind { K_SEND, K_RECV, K_ALLREDUCE, K_BROADCAST, K_REDUCE, K_ALLGATHER, K_REDUCESCATTER };
const char* kind_name(int k) {
  static const char* n[] = {"ncclSend", "ncclRecv", "ncclAllReduce", "ncclBroadcast", "ncclReduce", "ncclAllGather", "ncclReduceScatter"};
  return n[k];
}
struct Op {
  int kind; const void* sbuf; void* rbuf; size_t count; ncclDataType_t type; ncclRedOp_t red; int peer;  // peer = root for collectives
  cudaStream_t stream;
};
struct Msg { const void* buf; size_t bytes; ncclDataType_t type; bool taken = false, done = false; };
struct Round {  // one collective, matched across ranks by sequence number
  std::vector<Op> ops; std::vector<bool> present; int arrived = 0, computed = 0, left = 0;
};
enum RState { R_OUTSIDE, R_BLOCKED, R_GONE };
struct Fabric {
  std::string key;
  int nranks = 0, joined = 0, destroyed = 0;
  std::vector<RState> state; std::vector<unsigned long> seen; std::vector<std::string> waiting;
  std::vector<int> dev;     // each rank's device
  int aborted_by = -1;      // the rank that called ncclCommAbort
  unsigned long epoch = 0;  // bumped by every change that could unblock someone
  bool broken = false;      // a deadlock or mismatch was reported: every later call fails
  std::map<std::pair<int, int>, std::deque<Msg*>> q;  // (src, dst) -> posted sends, FIFO
  std::map<unsigned long, Round> rounds;
};
std::mutex g_mu;
std::condition_variable g_cv;
std::map<std::string, Fabric*> g_fabrics;
thread_local int t_group_depth = 0;
thread_local std::string t_last_error;

double timeout_s() { const char* s = getenv("SIMT_NCCL_TIMEOUT"); return s && *s ? atof(s) : 120.0; }
size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: return 0;
  }
}
const char* type_name(ncclDataType_t t) {
  static const char* n[] = {"ncclInt8", "ncclUint8", "ncclInt32", "ncclUint32", "ncclInt64", "ncclUint64", "ncclFloat16",
                            "ncclFloat32", "ncclFloat64", "ncclBfloat16"};
  return (int)t >= 0 && (int)t < 10 ? n[t] : "an unknown type";
}
void bump(Fabric* f) { f->epoch++; g_cv.notify_all(); }
}  // namespace

struct ncclComm {
  int rank, nranks, dev; Fabric* f;
  unsigned long coll_seq = 0;
  std::vector<Op> pending;  // inside a group
};

namespace {
thread_local std::vector<ncclComm*> t_group_comms;

ncclResult_t err(ncclResult_t r, const char* kind, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
ncclResult_t err(ncclResult_t r, const char* kind, const char* fmt, ...) {
  char b[1536]; va_list ap; va_start(ap, fmt); vsnprintf(b, sizeof b, fmt, ap); va_end(ap);
  t_last_error = b;
  simt::report_error(kind, "%s: %s", simt::site_str(simt::capture_site()).c_str(), b);  // the NCCL call's file:line
  return r;
}

// The error a call gets on a communicator that an earlier failure (or an abort) made unusable.
ncclResult_t broken_code(const Fabric* f) { return f->aborted_by >= 0 ? ncclRemoteError : ncclInvalidUsage; }

// Block (holding g_mu via lk) until pred() holds. Returns false after reporting a deadlock or a
// timeout, or if the communicator is already broken. `op`: the operation waited for (pending on the
// rank's device meanwhile); nullptr while initialising.
template <class Pred> bool wait_for(std::unique_lock<std::mutex>& lk, ncclComm* c, const std::string& what, Pred pred,
                                    const Op* op = nullptr) {
  Fabric* f = c->f;
  auto t0 = std::chrono::steady_clock::now();
  f->state[c->rank] = R_BLOCKED; f->waiting[c->rank] = what;
  int pending = op ? simt::nccl_pending_begin(c->dev, (const void*)op->stream, "rank " + std::to_string(c->rank) + "'s " + what) : -1;
  bool ok = true;
  for (;;) {
    if (pred()) break;
    if (f->broken) {
      if (f->aborted_by >= 0) {
        int by = f->aborted_by;
        lk.unlock();
        err(ncclRemoteError, "nccl-aborted", "rank %d: %s interrupted: rank %d called ncclCommAbort on this communicator", c->rank,
            what.c_str(), by);
        lk.lock();
      }
      ok = false; break;
    }
    f->seen[c->rank] = f->epoch;
    bool all_stuck = true;
    for (int r = 0; r < f->nranks; r++)
      if (f->state[r] == R_OUTSIDE || (f->state[r] == R_BLOCKED && f->seen[r] != f->epoch)) all_stuck = false;
    if (all_stuck) {  // everyone is waiting and nobody changed anything since they last looked
      std::string s;
      for (int r = 0; r < f->nranks; r++)
        s += "\n  rank " + std::to_string(r) + (f->state[r] == R_GONE ? " destroyed its communicator" : " waits in " + f->waiting[r]);
      // the others are woken after the report: one that fails on the broken communicator may exit at once
      f->broken = true;
      lk.unlock();
      err(ncclInvalidUsage, "nccl-deadlock", "deadlock: every rank is blocked and none can proceed (this would hang on real NCCL):%s", s.c_str());
      lk.lock();
      bump(f);
      ok = false; break;
    }
    g_cv.wait_for(lk, std::chrono::milliseconds(200));
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_s()) {
      f->broken = true;
      // Ranks that got different unique ids each wait in a communicator of their own.
      int others = 0;
      if (f->joined < f->nranks)
        for (auto& kv : g_fabrics) others += kv.second != f && kv.second->joined < kv.second->nranks;
      std::string hint = others ? ": " + std::to_string(others) + " other communicator(s) also wait for ranks, so the ranks "
                                  "probably used different ncclUniqueIds" : "; another rank never made the matching call";
      lk.unlock();
      err(ncclInvalidUsage, "nccl-timeout", "rank %d: %s not matched within %.0f s (SIMT_NCCL_TIMEOUT)%s", c->rank, what.c_str(),
          timeout_s(), hint.c_str());
      lk.lock();
      bump(f);
      ok = false; break;
    }
  }
  if (pending >= 0) simt::nccl_pending_end(pending);
  f->state[c->rank] = R_OUTSIDE;
  return ok;
}

std::string describe(const Op& o) {
  char b[160];
  if (o.kind == K_SEND || o.kind == K_RECV)
    snprintf(b, sizeof b, "%s %s rank %d (%zu elements)", kind_name(o.kind), o.kind == K_SEND ? "to" : "from", o.peer, o.count);
  else
    snprintf(b, sizeof b, "%s (%zu elements, type %d, op %d, root %d)", kind_name(o.kind), o.count, (int)o.type, (int)o.red, o.peer);
  return b;
}

float ldf(const void* p, ncclDataType_t t, size_t i) {
  switch (t) {
    case ncclFloat32: return ((const float*)p)[i];
    case ncclBfloat16: return __bfloat162float(((const __nv_bfloat16*)p)[i]);
    default: return __half2float(((const __half*)p)[i]);
  }
}
void stf(void* p, ncclDataType_t t, size_t i, float v) {
  switch (t) {
    case ncclFloat32: ((float*)p)[i] = v; break;
    case ncclBfloat16: ((__nv_bfloat16*)p)[i] = __float2bfloat16(v); break;
    default: ((__half*)p)[i] = __float2half(v); break;
  }
}
long long ldi(const void* p, ncclDataType_t t, size_t i) {
  switch (t) {
    case ncclInt8: return ((const int8_t*)p)[i]; case ncclUint8: return ((const uint8_t*)p)[i];
    case ncclInt32: return ((const int32_t*)p)[i]; case ncclUint32: return ((const uint32_t*)p)[i];
    case ncclInt64: return ((const int64_t*)p)[i]; default: return (long long)((const uint64_t*)p)[i];
  }
}
void sti(void* p, ncclDataType_t t, size_t i, long long v) {
  switch (t) {
    case ncclInt8: ((int8_t*)p)[i] = (int8_t)v; break; case ncclUint8: ((uint8_t*)p)[i] = (uint8_t)v; break;
    case ncclInt32: ((int32_t*)p)[i] = (int32_t)v; break; case ncclUint32: ((uint32_t*)p)[i] = (uint32_t)v; break;
    case ncclInt64: ((int64_t*)p)[i] = v; break; default: ((uint64_t*)p)[i] = (uint64_t)v; break;
  }
}
template <class T> T red(T a, T b, ncclRedOp_t op) {
  switch (op) { case ncclProd: return a * b; case ncclMax: return a > b ? a : b; case ncclMin: return a < b ? a : b; default: return a + b; }
}
// out[i] = reduce over ranks r of src_r[off + i], in rank order; written to `out` of type t.
void reduce_into(const std::vector<Op>& ops, size_t off, size_t n, ncclDataType_t t, ncclRedOp_t op, void* out) {
  int R = (int)ops.size();
  bool is_float = t == ncclFloat32 || t == ncclBfloat16 || t == ncclFloat16;
  for (size_t i = 0; i < n; i++) {
    if (is_float) {
      float a = ldf(ops[0].sbuf, t, off + i);
      for (int r = 1; r < R; r++) a = red(a, ldf(ops[r].sbuf, t, off + i), op);
      stf(out, t, i, op == ncclAvg ? a / R : a);
    } else if (t == ncclFloat64) {
      double a = ((const double*)ops[0].sbuf)[off + i];
      for (int r = 1; r < R; r++) a = red(a, ((const double*)ops[r].sbuf)[off + i], op);
      ((double*)out)[i] = op == ncclAvg ? a / R : a;
    } else {
      long long a = ldi(ops[0].sbuf, t, off + i);
      for (int r = 1; r < R; r++) a = red(a, ldi(ops[r].sbuf, t, off + i), op);
      sti(out, t, i, op == ncclAvg ? a / R : a);
    }
  }
}

bool same_call(const Op& a, const Op& b) {
  return a.kind == b.kind && a.count == b.count && a.type == b.type &&
         (a.kind == K_BROADCAST || a.kind == K_ALLGATHER || a.red == b.red) &&
         ((a.kind != K_BROADCAST && a.kind != K_REDUCE) || a.peer == b.peer);
}

// A collective: deposit, wait for all ranks, compute this rank's result into a temporary (others
// may still read our send buffer, which may be our receive buffer), wait again, then store it.
ncclResult_t run_collective(std::unique_lock<std::mutex>& lk, ncclComm* c, const Op& o) {
  Fabric* f = c->f;
  unsigned long seq = c->coll_seq++;
  Round& rd = f->rounds[seq];
  if (rd.ops.empty()) { rd.ops.resize(f->nranks); rd.present.assign(f->nranks, false); }
  rd.ops[c->rank] = o; rd.present[c->rank] = true; rd.arrived++;
  bump(f);
  std::string what = describe(o);
  if (!wait_for(lk, c, what, [&] { return rd.arrived == f->nranks; }, &o)) return broken_code(f);
  for (int r = 0; r < f->nranks; r++)
    if (!same_call(rd.ops[r], rd.ops[0])) {
      if (!f->broken) {
        f->broken = true; bump(f);
        std::string a = describe(rd.ops[0]), b = describe(rd.ops[r]);
        lk.unlock();
        err(ncclInvalidUsage, "nccl-mismatch", "collective #%lu differs between ranks: rank 0 calls %s, rank %d calls %s (this would hang or corrupt data on real NCCL)",
            seq, a.c_str(), r, b.c_str());
        lk.lock();
      }
      return broken_code(f);
    }
  size_t ts = type_size(o.type), out_n = o.count;
  if (o.kind == K_ALLGATHER) out_n = o.count * f->nranks;
  std::vector<unsigned char> tmp(out_n * ts);
  lk.unlock();  // reading the other ranks' send buffers: they wait for us below
  switch (o.kind) {
    case K_ALLREDUCE: case K_REDUCE: reduce_into(rd.ops, 0, o.count, o.type, o.red, tmp.data()); break;
    case K_REDUCESCATTER: reduce_into(rd.ops, (size_t)c->rank * o.count, o.count, o.type, o.red, tmp.data()); break;
    case K_BROADCAST: memcpy(tmp.data(), rd.ops[o.peer].sbuf, o.count * ts); break;
    case K_ALLGATHER: for (int r = 0; r < f->nranks; r++) memcpy(tmp.data() + r * o.count * ts, rd.ops[r].sbuf, o.count * ts); break;
  }
  lk.lock();
  rd.computed++; bump(f);
  if (!wait_for(lk, c, what + " (waiting for the other ranks to finish reading)", [&] { return rd.computed == f->nranks; }, &o))
    return broken_code(f);
  if (o.kind != K_REDUCE || c->rank == o.peer) memcpy(o.rbuf, tmp.data(), tmp.size());
  if (++rd.left == f->nranks) f->rounds.erase(seq);
  bump(f);
  return ncclSuccess;
}

// Run one rank's operations (a single call, or a group that may span communicators): post every
// send first, then receives and collectives in issue order, then wait until the sends were received.
typedef std::vector<std::pair<ncclComm*, std::vector<Op>>> Work;
ncclResult_t run_ops(const Work& work) {
  std::unique_lock<std::mutex> lk(g_mu);
  for (auto& w : work)
    if (w.first->f->broken)
      return err(broken_code(w.first->f), "nccl-broken", "rank %d: communicator unusable after an earlier error%s", w.first->rank,
                 w.first->f->aborted_by >= 0 ? " (ncclCommAbort)" : "");
  struct Posted { ncclComm* c; Msg* m; const Op* o; };
  std::vector<Posted> mine;
  for (auto& w : work)
    for (auto& o : w.second)
      if (o.kind == K_SEND) {
        Msg* m = new Msg{o.sbuf, o.count * type_size(o.type), o.type};
        w.first->f->q[{w.first->rank, o.peer}].push_back(m); mine.push_back({w.first, m, &o});
        bump(w.first->f);
      }
  ncclResult_t res = ncclSuccess;
  for (auto& w : work) {
    ncclComm* c = w.first; Fabric* f = c->f;
    const std::vector<Op>& ops = w.second;
    for (size_t i = 0; i < ops.size() && res == ncclSuccess;) {
      const Op& o = ops[i];
      if (o.kind == K_SEND) { i++; continue; }
      if (o.kind != K_RECV) { res = run_collective(lk, c, o); i++; continue; }
      // A run of receives: on a GPU they progress together, so each takes its message as soon as it is
      // there, in any order (one peer's send may depend on another's receive of ours).
      size_t end = i;
      while (end < ops.size() && (ops[end].kind == K_RECV || ops[end].kind == K_SEND)) end++;
      std::vector<bool> got(end, false);
      auto first_free = [&](const Op& r) -> Msg* {
        for (Msg* x : f->q[{r.peer, c->rank}]) if (!x->taken) return x;
        return nullptr;
      };
      for (;;) {
        const Op* waiting = nullptr;
        int left = 0;
        for (size_t j = i; j < end; j++)
          if (ops[j].kind == K_RECV && !got[j]) { left++; if (!waiting) waiting = &ops[j]; }
        if (!left) break;
        std::string what = describe(*waiting) + (left > 1 ? " (and " + std::to_string(left - 1) + " more receive(s) of the group)" : "");
        auto ready = [&] {
          for (size_t j = i; j < end; j++) if (ops[j].kind == K_RECV && !got[j] && first_free(ops[j])) return true;
          return false;
        };
        if (!wait_for(lk, c, what, ready, waiting)) { res = broken_code(f); break; }
        for (size_t j = i; j < end && res == ncclSuccess; j++) {
          const Op& r = ops[j];
          Msg* m;
          if (r.kind != K_RECV || got[j] || !(m = first_free(r))) continue;
          size_t want = r.count * type_size(r.type);
          if (m->bytes != want || m->type != r.type) {
            size_t sent = m->bytes;  // the sender frees m once the communicator is broken
            ncclDataType_t sent_type = m->type;
            f->broken = true; bump(f);
            lk.unlock();
            res = sent != want
                ? err(ncclInvalidUsage, "nccl-size", "rank %d receives %zu bytes from rank %d, which sent %zu", c->rank, want, r.peer, sent)
                : err(ncclInvalidUsage, "nccl-type", "rank %d receives %zu elements of %s from rank %d, which sent %s (the bytes "
                      "would be reinterpreted)", c->rank, r.count, type_name(r.type), r.peer, type_name(sent_type));
            lk.lock();
            break;
          }
          m->taken = true;
          memcpy(r.rbuf, m->buf, want);
          m->done = true;
          got[j] = true;
          bump(f);
        }
      }
      i = end;
    }
  }
  for (auto& p : mine) {
    if (res == ncclSuccess && !wait_for(lk, p.c, describe(*p.o), [&] { return p.m->done; }, p.o)) res = broken_code(p.c->f);
    auto& dq = p.c->f->q[{p.c->rank, p.o->peer}];
    for (auto it = dq.begin(); it != dq.end(); ++it) if (*it == p.m) { dq.erase(it); break; }
    delete p.m;
  }
  return res;
}

// The elements an operation of rank c reads from sbuf (in) and writes to rbuf (out); 0: that buffer is not used.
void op_counts(const ncclComm* c, const Op& o, size_t* in_n, size_t* out_n) {
  *in_n = o.kind == K_REDUCESCATTER ? o.count * c->nranks : o.count;
  *out_n = o.kind == K_ALLGATHER ? o.count * c->nranks : o.count;
  if (o.kind == K_RECV || (o.kind == K_BROADCAST && c->rank != o.peer)) *in_n = 0;
  if (o.kind == K_SEND || (o.kind == K_REDUCE && c->rank != o.peer)) *out_n = 0;
}

// The operations of a group run concurrently on a GPU: one that writes bytes that another of the group
// reads or writes (a receive into a buffer that the group also sends) gives undefined results there.
bool group_overlap_ok(const Work& work) {
  struct Rg { uintptr_t lo, hi; bool w; const Op* o; const ncclComm* c; };
  std::vector<Rg> rg;
  for (auto& w : work)
    for (auto& o : w.second) {
      size_t in_n, out_n, ts = type_size(o.type);
      op_counts(w.first, o, &in_n, &out_n);
      if (in_n) rg.push_back({(uintptr_t)o.sbuf, (uintptr_t)o.sbuf + in_n * ts, false, &o, w.first});
      if (out_n) rg.push_back({(uintptr_t)o.rbuf, (uintptr_t)o.rbuf + out_n * ts, true, &o, w.first});
    }
  for (size_t i = 0; i < rg.size(); i++)
    for (size_t j = i + 1; j < rg.size(); j++) {
      const Rg &a = rg[i], &b = rg[j];
      if (a.o == b.o || !(a.w || b.w) || a.hi <= b.lo || b.hi <= a.lo) continue;
      std::string da = describe(*a.o), db = describe(*b.o);
      {
        std::lock_guard<std::mutex> lk(g_mu);
        for (auto& w : work) { w.first->f->broken = true; bump(w.first->f); }
      }
      err(ncclInvalidUsage, "nccl-group-overlap", "rank %d: inside one ncclGroupStart/End, %s %s bytes [%p, %p) that %s %s "
          "(the operations of a group run concurrently on a GPU)", a.c->rank, da.c_str(), a.w ? "writes" : "reads",
          (void*)std::max(a.lo, b.lo), (void*)std::min(a.hi, b.hi), db.c_str(), b.w ? "also writes" : "reads");
      return false;
    }
  return true;
}

ncclResult_t enqueue(ncclComm* c, const Op& o) {
  if (!c) return err(ncclInvalidArgument, "nccl-arg", "%s: null communicator", kind_name(o.kind));
  size_t ts = type_size(o.type);
  if (!ts) return err(ncclInvalidArgument, "nccl-arg", "rank %d: %s: unsupported data type %d", c->rank, kind_name(o.kind), (int)o.type);
  if (o.kind == K_SEND || o.kind == K_RECV) {
    if (o.peer < 0 || o.peer >= c->nranks || o.peer == c->rank)
      return err(ncclInvalidArgument, "nccl-arg", "rank %d: %s with invalid peer %d", c->rank, kind_name(o.kind), o.peer);
  } else if ((o.kind == K_BROADCAST || o.kind == K_REDUCE) && (o.peer < 0 || o.peer >= c->nranks)) {
    return err(ncclInvalidArgument, "nccl-arg", "rank %d: %s with invalid root %d", c->rank, kind_name(o.kind), o.peer);
  }
  // Buffers must be device memory (cudaMalloc), as for real NCCL.
  size_t in_n, out_n;
  op_counts(c, o, &in_n, &out_n);
  bool has_in = in_n != 0, has_out = out_n != 0;
  if (o.count && has_in && !simt::device_range_ok(o.sbuf, in_n * ts))
    return err(ncclInvalidArgument, "nccl-buffer", "rank %d: %s: send buffer %p (%zu bytes) is not inside one device allocation", c->rank, kind_name(o.kind), o.sbuf, in_n * ts);
  if (o.count && has_out && !simt::device_range_ok(o.rbuf, out_n * ts))
    return err(ncclInvalidArgument, "nccl-buffer", "rank %d: %s: receive buffer %p (%zu bytes) is not inside one device allocation", c->rank, kind_name(o.kind), o.rbuf, out_n * ts);
  // Buffers and stream of the communicator's device (NCCL runs its kernels there).
  const void* bufs[2] = {o.count && has_in ? o.sbuf : nullptr, o.count && has_out ? o.rbuf : nullptr};
  for (int i = 0; i < 2; i++)
    if (bufs[i] && simt::device_of(bufs[i]) != c->dev) {
      simt::report_at_caller("wrong-device", "rank %d: %s: %s buffer %p is memory of device %d, but the communicator is on device %d",
                             c->rank, kind_name(o.kind), i ? "receive" : "send", bufs[i], simt::device_of(bufs[i]), c->dev);
      return ncclInvalidArgument;
    }
  if (simt::stream_device((const void*)o.stream) != c->dev) {
    simt::report_at_caller("wrong-device", "rank %d: %s on a stream of device %d, but the communicator is on device %d", c->rank,
                           kind_name(o.kind), simt::stream_device((const void*)o.stream), c->dev);
    return ncclInvalidArgument;
  }
  // An operation on its stream: it reads the send buffer and writes the receive buffer (stream-race rule).
  simt::MemAccess acc[2];
  int na = 0;
  if (o.count && has_in) acc[na++] = {o.sbuf, in_n * ts, false};
  if (o.count && has_out) acc[na++] = {o.rbuf, out_n * ts, true};
  simt::stream_op((const void*)o.stream, simt::SO_NCCL, describe(o).c_str(), acc, na);
  if (t_group_depth > 0) {
    if (c->pending.empty()) t_group_comms.push_back(c);
    c->pending.push_back(o);
    return ncclSuccess;
  }
  return run_ops(Work{{c, std::vector<Op>{o}}});
}
}  // namespace

extern "C" {
ncclResult_t ncclGetVersion(int* v) { *v = NCCL_VERSION_CODE; return ncclSuccess; }
const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "no error";
    case ncclInvalidArgument: return "invalid argument (SIMT NCCL)";
    case ncclInvalidUsage: return "invalid usage (SIMT NCCL: see the SIMT ERROR report)";
    default: return "NCCL error (SIMT NCCL)";
  }
}
const char* ncclGetLastError(ncclComm_t) { return t_last_error.c_str(); }
ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  static std::mutex mu; static std::mt19937_64 rng(std::random_device{}());
  std::lock_guard<std::mutex> lk(mu);
  memset(id->internal, 0, sizeof id->internal);
  snprintf(id->internal, sizeof id->internal, "simt-nccl-%016llx", (unsigned long long)rng());
  return ncclSuccess;
}
ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  if (nranks < 1 || rank < 0 || rank >= nranks)
    return err(ncclInvalidArgument, "nccl-arg", "ncclCommInitRank: rank %d of %d", rank, nranks);
  std::unique_lock<std::mutex> lk(g_mu);
  std::string key(id.internal, strnlen(id.internal, sizeof id.internal));
  Fabric*& f = g_fabrics[key];
  if (!f) {
    f = new Fabric; f->key = key; f->nranks = nranks;
    f->state.assign(nranks, R_OUTSIDE); f->seen.assign(nranks, ~0ul); f->waiting.assign(nranks, ""); f->dev.assign(nranks, -1);
  }
  if (f->nranks != nranks) {
    lk.unlock();
    return err(ncclInvalidArgument, "nccl-arg", "ncclCommInitRank: rank %d says %d ranks, an earlier rank said %d", rank, nranks, f->nranks);
  }
  ncclComm* c = new ncclComm{rank, nranks, simt::current_device(), f, 0, {}};
  f->dev[rank] = c->dev;
  f->joined++; bump(f);
  if (!wait_for(lk, c, "ncclCommInitRank", [&] { return f->joined >= nranks; })) { delete c; return ncclInvalidUsage; }
  for (int r = 0; r < nranks; r++)
    if (r != rank && f->dev[r] == c->dev) {  // NCCL's check (init.cc), with its message; the bus id stands for the device
      lk.unlock();
      delete c;
      return err(ncclInvalidUsage, "nccl-duplicate-gpu", "Duplicate GPU detected : rank %d and rank %d both on CUDA device %x "
                 "(SIMT device %d): NCCL needs one device per rank (cudaSetDevice before ncclCommInitRank)",
                 rank, r, (unsigned)(f->dev[r] + 1) << 12, f->dev[r]);
    }
  *comm = c;
  return ncclSuccess;
}
ncclResult_t ncclCommDestroy(ncclComm_t c) {
  if (!c) return ncclSuccess;
  std::unique_lock<std::mutex> lk(g_mu);
  Fabric* f = c->f;
  f->state[c->rank] = R_GONE; bump(f);
  if (++f->destroyed == f->nranks) {
    for (auto& kv : f->q) for (Msg* m : kv.second) delete m;
    g_fabrics.erase(f->key); delete f;
  }
  delete c;
  return ncclSuccess;
}
ncclResult_t ncclCommFinalize(ncclComm_t) { return ncclSuccess; }
ncclResult_t ncclCommAbort(ncclComm_t c) {
  if (!c) return ncclSuccess;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    if (!c->f->broken) { c->f->broken = true; c->f->aborted_by = c->rank; }
    bump(c->f);  // wakes the peers blocked in this communicator
  }
  return ncclCommDestroy(c);
}
ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t* e) {
  std::lock_guard<std::mutex> lk(g_mu);
  *e = c && c->f->broken ? broken_code(c->f) : ncclSuccess; return ncclSuccess;
}
ncclResult_t ncclCommCount(const ncclComm_t c, int* n) { *n = c->nranks; return ncclSuccess; }
ncclResult_t ncclCommUserRank(const ncclComm_t c, int* r) { *r = c->rank; return ncclSuccess; }
ncclResult_t ncclCommCuDevice(const ncclComm_t c, int* d) { *d = c->dev; return ncclSuccess; }
ncclResult_t ncclGroupStart() { t_group_depth++; return ncclSuccess; }
ncclResult_t ncclGroupEnd() {
  if (t_group_depth == 0) return err(ncclInvalidUsage, "nccl-group", "ncclGroupEnd without ncclGroupStart");
  if (--t_group_depth > 0) return ncclSuccess;
  Work work;
  for (ncclComm* c : t_group_comms) { work.emplace_back(c, std::vector<Op>{}); work.back().second.swap(c->pending); }
  t_group_comms.clear();
  if (!group_overlap_ok(work)) return ncclInvalidUsage;
  return work.empty() ? ncclSuccess : run_ops(work);
}
ncclResult_t ncclSend(const void* buf, size_t count, ncclDataType_t t, int peer, ncclComm_t c, cudaStream_t st) {
  return enqueue(c, Op{K_SEND, buf, nullptr, count, t, ncclSum, peer, st});
}
ncclResult_t ncclRecv(void* buf, size_t count, ncclDataType_t t, int peer, ncclComm_t c, cudaStream_t st) {
  return enqueue(c, Op{K_RECV, nullptr, buf, count, t, ncclSum, peer, st});
}
ncclResult_t ncclAllReduce(const void* s, void* r, size_t count, ncclDataType_t t, ncclRedOp_t op, ncclComm_t c, cudaStream_t st) {
  if ((int)op < 0 || (int)op > (int)ncclAvg) return err(ncclInvalidArgument, "nccl-arg", "ncclAllReduce: unsupported op %d", (int)op);
  return enqueue(c, Op{K_ALLREDUCE, s, r, count, t, op, 0, st});
}
ncclResult_t ncclReduce(const void* s, void* r, size_t count, ncclDataType_t t, ncclRedOp_t op, int root, ncclComm_t c, cudaStream_t st) {
  if ((int)op < 0 || (int)op > (int)ncclAvg) return err(ncclInvalidArgument, "nccl-arg", "ncclReduce: unsupported op %d", (int)op);
  return enqueue(c, Op{K_REDUCE, s, r, count, t, op, root, st});
}
ncclResult_t ncclBroadcast(const void* s, void* r, size_t count, ncclDataType_t t, int root, ncclComm_t c, cudaStream_t st) {
  return enqueue(c, Op{K_BROADCAST, s, r, count, t, ncclSum, root, st});
}
ncclResult_t ncclBcast(void* buf, size_t count, ncclDataType_t t, int root, ncclComm_t c, cudaStream_t st) {
  return ncclBroadcast(buf, buf, count, t, root, c, st);
}
ncclResult_t ncclAllGather(const void* s, void* r, size_t sendcount, ncclDataType_t t, ncclComm_t c, cudaStream_t st) {
  return enqueue(c, Op{K_ALLGATHER, s, r, sendcount, t, ncclSum, 0, st});
}
ncclResult_t ncclReduceScatter(const void* s, void* r, size_t recvcount, ncclDataType_t t, ncclRedOp_t op, ncclComm_t c, cudaStream_t st) {
  if ((int)op < 0 || (int)op > (int)ncclAvg) return err(ncclInvalidArgument, "nccl-arg", "ncclReduceScatter: unsupported op %d", (int)op);
  return enqueue(c, Op{K_REDUCESCATTER, s, r, recvcount, t, op, 0, st});
}
}  // extern "C"

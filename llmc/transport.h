/*
How the ranks of the CPU trainer talk: point-to-point messages, and the few collectives built on them.
One of two backends, chosen once at start-up:
  - threads: every rank is a thread of this process; a send copies the message into the receiver's mailbox;
  - MPI: one process per rank (built with -DUSE_MPI, launched with mpirun).
A send never blocks (the payload is copied), so the buffer can be reused at once; a receive blocks until its
message arrives, or stops the job with a message naming the peer once the deadline (-to) passes, so a frozen
rank cannot hang the others. Messages from one peer with one tag arrive in the order they were sent.
The collectives are built from send/recv and add in rank order on rank 0, so their results are the same bits
under both backends.
*/
#ifndef LLMC_TRANSPORT_H
#define LLMC_TRANSPORT_H

#include <pthread.h>
#include <time.h>
#include <errno.h>
#ifdef USE_MPI
#include <mpi.h>
#endif
// defines: fatal, malloc_check, calloc_check
#include "utils.h"

typedef enum { TAG_ACTIVATION, TAG_GRADIENT, TAG_TIED_WTE, TAG_GATHER, TAG_COLLECTIVE, TAG_DATA_PARALLEL } MessageTag;
static const char* const message_tag_names[] = {"activation", "gradient", "tied-wte gradient", "checkpoint gather",
                                                "collective", "data-parallel"};

// a message in flight between two threads of this process
typedef struct Message {
    struct Message* next;
    int src, tag;
    size_t bytes;
    char data[];
} Message;

// the threads backend: one mailbox per rank, under one lock
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t arrived;
    Message** inbox;  // (world) FIFO lists, oldest first
} Mailboxes;

// A transport speaks for one group of ranks: member r of the group is world rank base + stride * r, so the
// same calls serve a whole job (base 0, stride 1), one pipeline, or one data-parallel group (llmc/data_parallel.h).
typedef struct {
    int rank, world;     // this rank's place in the group, and the group's size
    int base, stride;    // the group's members in the job (transport_group)
    double timeout;      // seconds a receive may wait
    Mailboxes* boxes;    // threads backend, shared by every rank; NULL under MPI
#ifdef USE_MPI
    MPI_Request* pending;  // MPI: sends not yet known to be complete, their copies and where they go
    void** pending_bufs;
    int* pending_peers;
    int num_pending, cap_pending;
#endif
} Transport;

// the job's rank of the group's member r
static inline int transport_job_rank(const Transport* t, int r) { return t->base + t->stride * r; }

// a transport of the whole job (every rank)
static inline Transport transport_job(int rank, int world, double timeout, Mailboxes* boxes) {
    return (Transport){.rank = rank, .world = world, .base = 0, .stride = 1, .timeout = timeout, .boxes = boxes};
}

// the group of `size` ranks base, base + stride, ... of which this job rank is one; free it like any transport
static inline Transport transport_group(const Transport* job, int base, int stride, int size) {
    Transport g = transport_job((job->rank - base) / stride, size, job->timeout, job->boxes);
    g.base = base;
    g.stride = stride;
    return g;
}

static inline Mailboxes* mailboxes_new(int world) {
    Mailboxes* mb = (Mailboxes*)calloc_check(1, sizeof(Mailboxes));
    pthread_mutex_init(&mb->lock, NULL);
    pthread_cond_init(&mb->arrived, NULL);
    mb->inbox = (Message**)calloc_check(world, sizeof(Message*));
    return mb;
}

static inline void mailboxes_free(Mailboxes* mb, int world) {
    for (int r = 0; r < world; r++) {
        while (mb->inbox[r]) { Message* m = mb->inbox[r]; mb->inbox[r] = m->next; free(m); }
    }
    free(mb->inbox);
    pthread_mutex_destroy(&mb->lock);
    pthread_cond_destroy(&mb->arrived);
    free(mb);
}

static inline void transport_send(Transport* t, int peer, MessageTag tag, const void* buf, size_t bytes) {
    if (t->boxes) {
        Message* msg = (Message*)malloc_check(sizeof(Message) + bytes);
        msg->next = NULL;
        msg->src = transport_job_rank(t, t->rank);
        msg->tag = tag;
        msg->bytes = bytes;
        memcpy(msg->data, buf, bytes);
        pthread_mutex_lock(&t->boxes->lock);
        Message** tail = &t->boxes->inbox[transport_job_rank(t, peer)];
        while (*tail) { tail = &(*tail)->next; }
        *tail = msg;
        pthread_cond_broadcast(&t->boxes->arrived);
        pthread_mutex_unlock(&t->boxes->lock);
        return;
    }
#ifdef USE_MPI
    if (bytes > (size_t)INT32_MAX) { fatal("message of %zu bytes is too large for one MPI send", bytes); }
    if (t->num_pending == t->cap_pending) {
        t->cap_pending = t->cap_pending ? 2 * t->cap_pending : 16;
        t->pending = (MPI_Request*)realloc(t->pending, t->cap_pending * sizeof(MPI_Request));
        t->pending_bufs = (void**)realloc(t->pending_bufs, t->cap_pending * sizeof(void*));
        t->pending_peers = (int*)realloc(t->pending_peers, t->cap_pending * sizeof(int));
        if (!t->pending || !t->pending_bufs || !t->pending_peers) { fatal("out of memory for MPI requests"); }
    }
    void* copy = malloc_check(bytes ? bytes : 1);
    memcpy(copy, buf, bytes);
    t->pending_bufs[t->num_pending] = copy;
    t->pending_peers[t->num_pending] = transport_job_rank(t, peer);
    MPI_Isend(copy, (int)bytes, MPI_BYTE, transport_job_rank(t, peer), tag, MPI_COMM_WORLD, &t->pending[t->num_pending++]);
#endif
}

// seconds on the monotonic clock, for deadlines
static inline double transport_clock(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static inline void transport_timeout(const Transport* t, int peer, MessageTag tag, double waited) {
    fatal("rank %d: no %s message from rank %d within %.0f s (-to): that rank is stuck or gone",
          transport_job_rank(t, t->rank), message_tag_names[tag], transport_job_rank(t, peer), waited);
}

// receives within `waited` seconds
static inline void transport_recv_within(Transport* t, int peer, MessageTag tag, void* buf, size_t bytes, double waited) {
    double deadline = transport_clock() + waited;
    if (t->boxes) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)waited;
        pthread_mutex_lock(&t->boxes->lock);
        for (;;) {
            for (Message** p = &t->boxes->inbox[transport_job_rank(t, t->rank)]; *p; p = &(*p)->next) {
                Message* msg = *p;
                if (msg->src != transport_job_rank(t, peer) || msg->tag != (int)tag) { continue; }
                *p = msg->next;
                pthread_mutex_unlock(&t->boxes->lock);
                if (msg->bytes != bytes) {
                    fatal("rank %d: %s message from rank %d has %zu bytes, expected %zu", transport_job_rank(t, t->rank),
                          message_tag_names[tag], msg->src, msg->bytes, bytes);
                }
                memcpy(buf, msg->data, bytes);
                free(msg);
                return;
            }
            if (pthread_cond_timedwait(&t->boxes->arrived, &t->boxes->lock, &until) == ETIMEDOUT) {
                pthread_mutex_unlock(&t->boxes->lock);
                transport_timeout(t, peer, tag, waited);
            }
        }
    }
#ifdef USE_MPI
    // polled, not MPI_Recv: a blocking receive would wait forever on a frozen peer
    MPI_Request req;
    MPI_Irecv(buf, (int)bytes, MPI_BYTE, transport_job_rank(t, peer), tag, MPI_COMM_WORLD, &req);
    for (long polls = 0;; polls++) {
        int done = 0;
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (done) { return; }
        if (polls > 10000) {  // past the first few milliseconds, stop spinning a core
            struct timespec nap = {0, 100000};
            nanosleep(&nap, NULL);
            if (transport_clock() > deadline) { transport_timeout(t, peer, tag, waited); }
        }
    }
#else
    (void)deadline;
#endif
}

static inline void transport_recv(Transport* t, int peer, MessageTag tag, void* buf, size_t bytes) {
    transport_recv_within(t, peer, tag, buf, bytes, t->timeout);
}

// Waits until every send of this rank has left its copy (MPI); mailbox sends are complete at once. A receiver
// that has not taken a send is stuck or waits on a message itself; it gets twice the deadline, so its own
// watchdog names what it waits on first.
static inline void transport_wait_sends(Transport* t) {
#ifdef USE_MPI
    if (t->boxes) { return; }
    double deadline = transport_clock() + 2 * t->timeout;
    for (int i = 0; i < t->num_pending; i++) {
        for (;;) {
            int done = 0;
            MPI_Test(&t->pending[i], &done, MPI_STATUS_IGNORE);
            if (done) { break; }
            struct timespec nap = {0, 100000};
            nanosleep(&nap, NULL);
            if (transport_clock() > deadline) {
                fatal("rank %d: rank %d did not receive a message sent to it within %.0f s (2 x -to): that rank is "
                      "stuck or gone", transport_job_rank(t, t->rank), t->pending_peers[i], 2 * t->timeout);
            }
        }
        free(t->pending_bufs[i]);
    }
    t->num_pending = 0;
#else
    (void)t;
#endif
}

// x[0..n) summed over ranks, on every rank; rank 0 adds in rank order. The others wait for rank 0 twice as
// long as rank 0 waits for them, so a stuck rank is named by rank 0, not blamed on rank 0.
static inline void transport_allreduce_sum(Transport* t, double* x, int n) {
    if (t->world == 1) { return; }
    size_t bytes = n * sizeof(double);
    if (t->rank != 0) {
        transport_send(t, 0, TAG_COLLECTIVE, x, bytes);
        transport_recv_within(t, 0, TAG_COLLECTIVE, x, bytes, 2 * t->timeout);
    } else {
        double* other = (double*)malloc_check(bytes);
        for (int r = 1; r < t->world; r++) {
            transport_recv(t, r, TAG_COLLECTIVE, other, bytes);
            for (int i = 0; i < n; i++) { x[i] += other[i]; }
        }
        free(other);
        for (int r = 1; r < t->world; r++) { transport_send(t, r, TAG_COLLECTIVE, x, bytes); }
    }
    transport_wait_sends(t);
}

static inline double transport_sum(Transport* t, double x) {
    transport_allreduce_sum(t, &x, 1);
    return x;
}

// root's bytes to every rank
static inline void transport_broadcast(Transport* t, int root, void* buf, size_t bytes) {
    if (t->rank == root) {
        for (int r = 0; r < t->world; r++) { if (r != root) { transport_send(t, r, TAG_COLLECTIVE, buf, bytes); } }
    } else {
        transport_recv_within(t, root, TAG_COLLECTIVE, buf, bytes, 2 * t->timeout);
    }
    transport_wait_sends(t);
}

static inline void transport_free(Transport* t) {
    transport_wait_sends(t);
#ifdef USE_MPI
    free(t->pending);
    free(t->pending_bufs);
    free(t->pending_peers);
#endif
}

#endif

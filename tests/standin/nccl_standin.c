/*
 * A stand-in for NCCL (libnccl.so.2) over the CUDA stand-in's GPUs (built into the same library: device pointers
 * are host addresses), so that the runtime's NCCL path runs on machines without GPUs. It implements the entry
 * points the runtime binds with nccl.h's signatures, types (ncclInt32 = 2, ncclFloat32 = 7) and reductions
 * (ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3; maxima and minima as NCCL's fmaxf and fminf, where a
 * NaN loses to a number):
 *
 *   - ncclCommInitAll makes a clique of communicators, rank k on devices[k];
 *   - a call returns at once, its operation queued on the member's GPU (standin.h); the collective runs when the
 *     last member of the clique makes its call, which completes it on every member's GPU. The members' calls must
 *     agree on kind, count, type and reduction, else the GPUs' next work fails saying so; NCCL's layouts
 *     (all-gather rank-major, reduce-scatter chunk k to rank k);
 *   - ncclSend and ncclRecv between ncclGroupStart and ncclGroupEnd: at ncclGroupEnd each send is delivered (to a
 *     waiting receive of the peer, else kept for it) and each receive takes the first message kept from its peer
 *     or waits for one, queued on the receiver's GPU; counts and types must agree;
 *   - ncclCommAbort ends the operations pending on the clique (they complete without a result) and makes every
 *     later call on it fail.
 */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "standin.h"

typedef int ncclResult_t;
enum {
    ncclSuccess = 0, ncclUnhandledCudaError = 1, ncclSystemError = 2, ncclInternalError = 3, ncclInvalidArgument = 4,
    ncclInvalidUsage = 5
};
enum { ncclInt32 = 2, ncclFloat32 = 7 };
enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3 };
enum kind { ALL_REDUCE, ALL_GATHER, REDUCE_SCATTER };

#define MAX_RANKS 64
#define MAX_P2P 256

struct call { enum kind kind; const void *send; void *recv; size_t count; int type, op; };

/* A send kept for its receiver (data copied), or a receive waiting for its sender (buffer). */
struct message { void *data; size_t count; int type; struct message *next; };

struct clique {
    int ranks;
    int aborted;
    int devices[MAX_RANKS];
    pthread_mutex_t lock;
    int arrived;
    int posted[MAX_RANKS];
    struct call calls[MAX_RANKS];
    struct message *kept[MAX_RANKS][MAX_RANKS];      /* [from][to] sends not yet received, in order */
    struct message *waiting[MAX_RANKS][MAX_RANKS];   /* [from][to] receives not yet sent, in order */
};

struct comm { struct clique *clique; int rank, device; };

struct pending { int send; void *buffer; size_t count; int type, peer; struct comm *comm; };
static __thread int t_depth, t_count;
static __thread struct pending t_pending[MAX_P2P];

const char *ncclGetErrorString(ncclResult_t r)
{
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclSystemError: return "unhandled system error";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    default: return "unknown result";
    }
}

ncclResult_t ncclCommInitAll(struct comm **comms, int ndev, const int *devices)
{
    if (!comms || ndev <= 0 || ndev > MAX_RANKS) return ncclInvalidArgument;
    struct clique *c = calloc(1, sizeof *c);
    if (!c) return ncclSystemError;
    c->ranks = ndev;
    pthread_mutex_init(&c->lock, NULL);
    for (int i = 0; i < ndev; i++) {
        c->devices[i] = devices ? devices[i] : i;
        for (int j = 0; j < i; j++)
            if (c->devices[j] == c->devices[i]) return ncclInvalidUsage;   /* as NCCL: one rank per GPU */
        comms[i] = calloc(1, sizeof *comms[i]);
        if (!comms[i]) return ncclSystemError;
        *comms[i] = (struct comm){ c, i, c->devices[i] };
    }
    return ncclSuccess;
}

ncclResult_t ncclCommAbort(struct comm *comm)
{
    if (!comm) return ncclInvalidArgument;
    struct clique *c = comm->clique;
    pthread_mutex_lock(&c->lock);
    if (!c->aborted) {
        c->aborted = 1;
        for (int r = 0; r < c->ranks; r++) {
            if (c->posted[r]) standin_complete(c->devices[r], NULL);
            c->posted[r] = 0;
            for (int from = 0; from < c->ranks; from++)
                for (struct message *m; (m = c->waiting[from][r]) != NULL; free(m)) {
                    c->waiting[from][r] = m->next;
                    standin_complete(c->devices[r], NULL);
                }
        }
        c->arrived = 0;
    }
    pthread_mutex_unlock(&c->lock);
    return ncclSuccess;   /* the communicator stays allocated: its clique's other members may still name it */
}

ncclResult_t ncclCommDestroy(struct comm *comm)
{
    free(comm);   /* the clique stays: other members may still be destroying theirs */
    return ncclSuccess;
}

static size_t type_size(int type) { return type == ncclInt32 || type == ncclFloat32 ? 4 : 0; }

static double reduce(int op, double a, double b)
{
    switch (op) {
    case ncclSum: return a + b;
    case ncclProd: return a * b;
    case ncclMax: return fmax(a, b);
    default: return fmin(a, b);
    }
}

static double get(const void *p, int type, size_t i)
{
    return type == ncclFloat32 ? ((const float *)p)[i] : ((const int32_t *)p)[i];
}

static void put(void *p, int type, size_t i, double v)
{
    if (type == ncclFloat32) ((float *)p)[i] = (float)v;
    else ((int32_t *)p)[i] = (int32_t)v;
}

/* Runs the clique's collective (every send read before any receive is written); NULL, or why it failed. */
static const char *perform(struct clique *c, char *why, size_t size)
{
    struct call *first = &c->calls[0];
    for (int r = 1; r < c->ranks; r++) {
        struct call *k = &c->calls[r];
        if (k->kind != first->kind || k->count != first->count || k->type != first->type
            || (first->kind != ALL_GATHER && k->op != first->op)) {
            snprintf(why, size,
                     "NCCL calls disagree: rank %d made (kind %d, count %zu, type %d, op %d), "
                     "rank 0 (kind %d, count %zu, type %d, op %d)",
                     r, k->kind, k->count, k->type, k->op, first->kind, first->count, first->type, first->op);
            return why;
        }
    }
    int type = first->type, n = c->ranks;
    size_t count = first->count, elem = type_size(type);
    size_t total = first->kind == ALL_REDUCE ? count : count * n;
    char *result = malloc(total * elem + 1);
    if (!result) return "out of host memory";
    if (first->kind == ALL_GATHER)
        for (int r = 0; r < n; r++) memcpy(result + r * count * elem, c->calls[r].send, count * elem);
    else
        for (size_t i = 0; i < total; i++) {
            double v = get(c->calls[0].send, type, i);
            for (int r = 1; r < n; r++) v = reduce(first->op, v, get(c->calls[r].send, type, i));
            put(result, type, i, v);
        }
    for (int r = 0; r < n; r++)
        memcpy(c->calls[r].recv, first->kind == REDUCE_SCATTER ? result + r * count * elem : result,
               first->kind == ALL_GATHER ? total * elem : count * elem);
    free(result);
    return NULL;
}

static ncclResult_t collective(struct comm *comm, struct call call)
{
    if (!comm) return ncclInvalidArgument;
    if (!type_size(call.type) || call.op < ncclSum || call.op > ncclMin) return ncclInvalidArgument;
    struct clique *c = comm->clique;
    pthread_mutex_lock(&c->lock);
    if (c->aborted) {
        pthread_mutex_unlock(&c->lock);
        return ncclInvalidUsage;
    }
    if (c->posted[comm->rank]) {
        /* The runtime waits for each collective before the next; a second one queued behind it is not modelled. */
        pthread_mutex_unlock(&c->lock);
        return ncclInvalidUsage;
    }
    standin_enqueue(comm->device);
    c->calls[comm->rank] = call;
    c->posted[comm->rank] = 1;
    if (++c->arrived == c->ranks) {
        char why[512];
        const char *failure = perform(c, why, sizeof why);
        c->arrived = 0;
        for (int r = 0; r < c->ranks; r++) {
            c->posted[r] = 0;
            standin_complete(c->devices[r], failure);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, int type, int op, struct comm *comm,
                           void *stream)
{
    (void)stream;
    return collective(comm, (struct call){ ALL_REDUCE, send, recv, count, type, op });
}

ncclResult_t ncclAllGather(const void *send, void *recv, size_t count, int type, struct comm *comm, void *stream)
{
    (void)stream;
    return collective(comm, (struct call){ ALL_GATHER, send, recv, count, type, 0 });
}

ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t count, int type, int op, struct comm *comm,
                               void *stream)
{
    (void)stream;
    return collective(comm, (struct call){ REDUCE_SCATTER, send, recv, count, type, op });
}

ncclResult_t ncclGroupStart(void)
{
    t_depth++;
    return ncclSuccess;
}

static ncclResult_t p2p(int send, void *buffer, size_t count, int type, int peer, struct comm *comm)
{
    if (!comm || !type_size(type) || peer < 0 || peer >= comm->clique->ranks) return ncclInvalidArgument;
    if (t_depth == 0 || t_count == MAX_P2P) return ncclInvalidUsage;   /* the runtime always groups them */
    t_pending[t_count++] = (struct pending){ send, buffer, count, type, peer, comm };
    return ncclSuccess;
}

ncclResult_t ncclSend(const void *buffer, size_t count, int type, int peer, struct comm *comm, void *stream)
{
    (void)stream;
    return p2p(1, (void *)buffer, count, type, peer, comm);
}

ncclResult_t ncclRecv(void *buffer, size_t count, int type, int peer, struct comm *comm, void *stream)
{
    (void)stream;
    return p2p(0, buffer, count, type, peer, comm);
}

static void append(struct message **list, struct message *m)
{
    while (*list) list = &(*list)->next;
    *list = m;
}

static struct message *take(struct message **list)
{
    struct message *m = *list;
    if (m) *list = m->next;
    return m;
}

/* Delivers `data` into the receive `r` of GPU `device` (count and type checked) and completes it there. */
static void deliver(struct message *r, const void *data, size_t count, int type, int device, int from, int to)
{
    char why[256];
    const char *failure = NULL;
    if (r->count != count || r->type != type) {
        snprintf(why, sizeof why, "rank %d receives %zu elements of type %d from rank %d, which sent %zu of type %d",
                 to, r->count, r->type, from, count, type);
        failure = why;
    } else memcpy(r->data, data, count * type_size(type));
    standin_complete(device, failure);
    free(r);
}

ncclResult_t ncclGroupEnd(void)
{
    if (t_depth == 0) return ncclInvalidUsage;
    if (--t_depth > 0) return ncclSuccess;
    for (int i = 0; i < t_count; i++) {
        struct pending *p = &t_pending[i];
        struct clique *c = p->comm->clique;
        int me = p->comm->rank;
        size_t bytes = p->count * type_size(p->type);
        pthread_mutex_lock(&c->lock);
        if (c->aborted) {
            pthread_mutex_unlock(&c->lock);
            t_count = 0;
            return ncclInvalidUsage;
        }
        if (p->send) {
            struct message *r = take(&c->waiting[me][p->peer]);
            if (r) deliver(r, p->buffer, p->count, p->type, c->devices[p->peer], me, p->peer);
            else {
                struct message *m = malloc(sizeof *m);
                void *copy = malloc(bytes + 1);
                if (!m || !copy) {
                    pthread_mutex_unlock(&c->lock);
                    return ncclSystemError;
                }
                memcpy(copy, p->buffer, bytes);
                *m = (struct message){ copy, p->count, p->type, NULL };
                append(&c->kept[me][p->peer], m);
            }
        } else {
            struct message *r = malloc(sizeof *r);
            if (!r) {
                pthread_mutex_unlock(&c->lock);
                return ncclSystemError;
            }
            *r = (struct message){ p->buffer, p->count, p->type, NULL };
            standin_enqueue(p->comm->device);
            struct message *m = take(&c->kept[p->peer][me]);
            if (m) {
                deliver(r, m->data, m->count, m->type, p->comm->device, p->peer, me);
                free(m->data);
                free(m);
            } else append(&c->waiting[p->peer][me], r);
        }
        pthread_mutex_unlock(&c->lock);
    }
    t_count = 0;
    return ncclSuccess;
}

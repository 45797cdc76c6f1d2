/*
 * A stand-in for NCCL (libnccl.so.2) over the CUDA stand-in's devices (device pointers are host addresses), so
 * that the runtime's NCCL path runs on machines without GPUs. It implements the entry points the runtime binds
 * with nccl.h's signatures, types (ncclInt32 = 2, ncclFloat32 = 7) and reductions (ncclSum = 0, ncclProd = 1,
 * ncclMax = 2, ncclMin = 3):
 *
 *   - ncclCommInitAll makes a clique of communicators, rank k on devices[k];
 *   - a collective returns once every member of the clique has made the same call (the k-th collective of each
 *     member must agree on kind, count, type and reduction, else ncclInvalidUsage), with NCCL's layouts
 *     (all-gather rank-major, reduce-scatter chunk k to rank k); a member that does not come within
 *     MPLC_STANDIN_TIMEOUT seconds (default 60) makes the others fail with ncclSystemError rather than hang;
 *   - ncclSend and ncclRecv between ncclGroupStart and ncclGroupEnd are matched per pair of ranks, in order, at
 *     ncclGroupEnd, with equal counts and types.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int ncclResult_t;
enum { ncclSuccess = 0, ncclUnhandledCudaError = 1, ncclSystemError = 2, ncclInternalError = 3, ncclInvalidArgument = 4, ncclInvalidUsage = 5 };
enum { ncclInt32 = 2, ncclFloat32 = 7 };
enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3 };
enum kind { ALL_REDUCE, ALL_GATHER, REDUCE_SCATTER };

#define MAX_RANKS 64
#define MAX_P2P 256

struct call { enum kind kind; const void *send; void *recv; size_t count; int type, op; };

struct message { const void *data; size_t count; int type; struct message *next; };

struct clique {
    int ranks;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    long generation;             /* collectives completed */
    int arrived;
    struct call calls[MAX_RANKS];
    ncclResult_t result;
    struct message *mailbox[MAX_RANKS][MAX_RANKS];   /* [from][to], in order */
};

struct comm { struct clique *clique; int rank, device; };

struct pending { int send; void *buffer; size_t count; int type, peer; struct comm *comm; };
static __thread int t_depth, t_count;
static __thread struct pending t_pending[MAX_P2P];

const char *ncclGetErrorString(ncclResult_t r)
{
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclSystemError: return "unhandled system error (a member of the communicator never came)";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage (the members' calls disagree)";
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
    pthread_cond_init(&c->changed, NULL);
    for (int i = 0; i < ndev; i++) {
        comms[i] = calloc(1, sizeof *comms[i]);
        if (!comms[i]) return ncclSystemError;
        *comms[i] = (struct comm){ c, i, devices ? devices[i] : i };
    }
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(struct comm *comm)
{
    free(comm);   /* the clique lives on: other members may still be destroying theirs */
    return ncclSuccess;
}

static size_t type_size(int type) { return type == ncclInt32 || type == ncclFloat32 ? 4 : 0; }

static double reduce(int op, double a, double b)
{
    switch (op) {
    case ncclSum: return a + b;
    case ncclProd: return a * b;
    case ncclMax: return a > b || b != b ? (a != a ? a : (a > b ? a : b)) : b;
    default: return a < b ? a : b;
    }
}

static double get(const void *p, int type, size_t i) { return type == ncclFloat32 ? ((const float *)p)[i] : ((const int32_t *)p)[i]; }

static void put(void *p, int type, size_t i, double v)
{
    if (type == ncclFloat32) ((float *)p)[i] = (float)v;
    else ((int32_t *)p)[i] = (int32_t)v;
}

/* Done by the last member to arrive, while the others wait: every send is read before any receive is written. */
static ncclResult_t perform(struct clique *c)
{
    struct call *first = &c->calls[0];
    for (int r = 1; r < c->ranks; r++) {
        struct call *k = &c->calls[r];
        if (k->kind != first->kind || k->count != first->count || k->type != first->type || (first->kind != ALL_GATHER && k->op != first->op)) {
            fprintf(stderr, "[nccl stand-in] rank %d's call (kind %d, count %zu, type %d, op %d) differs from rank 0's (kind %d, count %zu, type %d, op %d)\n",
                    r, k->kind, k->count, k->type, k->op, first->kind, first->count, first->type, first->op);
            return ncclInvalidUsage;
        }
    }
    int type = first->type, n = c->ranks;
    size_t count = first->count, elem = type_size(type);
    if (first->kind == ALL_GATHER) {
        char *all = malloc(count * elem * n + 1);
        if (!all) return ncclSystemError;
        for (int r = 0; r < n; r++) memcpy(all + r * count * elem, c->calls[r].send, count * elem);
        for (int r = 0; r < n; r++) memcpy(c->calls[r].recv, all, count * elem * n);
        free(all);
        return ncclSuccess;
    }
    /* The reduction of all sends, over the whole buffer (all-reduce: count; reduce-scatter: count per rank). */
    size_t total = first->kind == ALL_REDUCE ? count : count * n;
    char *sum = malloc(total * elem + 1);
    if (!sum) return ncclSystemError;
    for (size_t i = 0; i < total; i++) {
        double v = get(c->calls[0].send, type, i);
        for (int r = 1; r < n; r++) v = reduce(first->op, v, get(c->calls[r].send, type, i));
        put(sum, type, i, v);
    }
    for (int r = 0; r < n; r++)
        memcpy(c->calls[r].recv, first->kind == ALL_REDUCE ? sum : sum + r * count * elem, count * elem);
    free(sum);
    return ncclSuccess;
}

static int timeout_seconds(void)
{
    const char *t = getenv("MPLC_STANDIN_TIMEOUT");
    return t && atoi(t) > 0 ? atoi(t) : 60;
}

static ncclResult_t collective(struct comm *comm, struct call call)
{
    if (!comm) return ncclInvalidArgument;
    if (!type_size(call.type) || call.op < ncclSum || call.op > ncclMin) return ncclInvalidArgument;
    struct clique *c = comm->clique;
    pthread_mutex_lock(&c->lock);
    long generation = c->generation;
    c->calls[comm->rank] = call;
    if (++c->arrived == c->ranks) {
        c->result = perform(c);
        c->arrived = 0;
        c->generation++;
        pthread_cond_broadcast(&c->changed);
    } else {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += timeout_seconds();
        while (c->generation == generation)
            if (pthread_cond_timedwait(&c->changed, &c->lock, &deadline) == ETIMEDOUT) {
                fprintf(stderr, "[nccl stand-in] rank %d waited %d s for the other members of its communicator\n", comm->rank, timeout_seconds());
                pthread_mutex_unlock(&c->lock);
                return ncclSystemError;
            }
    }
    ncclResult_t r = c->result;
    pthread_mutex_unlock(&c->lock);
    return r;
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, int type, int op, struct comm *comm, void *stream)
{
    (void)stream;
    return collective(comm, (struct call){ ALL_REDUCE, send, recv, count, type, op });
}

ncclResult_t ncclAllGather(const void *send, void *recv, size_t count, int type, struct comm *comm, void *stream)
{
    (void)stream;
    return collective(comm, (struct call){ ALL_GATHER, send, recv, count, type, 0 });
}

ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t count, int type, int op, struct comm *comm, void *stream)
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

/* Posts the group's sends (copied), then takes each receive's message from its peer, in order. */
ncclResult_t ncclGroupEnd(void)
{
    if (t_depth == 0) return ncclInvalidUsage;
    if (--t_depth > 0) return ncclSuccess;
    ncclResult_t result = ncclSuccess;
    for (int i = 0; i < t_count; i++) {
        struct pending *p = &t_pending[i];
        if (!p->send) continue;
        struct clique *c = p->comm->clique;
        struct message *m = malloc(sizeof *m);
        void *copy = malloc(p->count * type_size(p->type) + 1);
        if (!m || !copy) return ncclSystemError;
        memcpy(copy, p->buffer, p->count * type_size(p->type));
        *m = (struct message){ copy, p->count, p->type, NULL };
        pthread_mutex_lock(&c->lock);
        struct message **tail = &c->mailbox[p->comm->rank][p->peer];
        while (*tail) tail = &(*tail)->next;
        *tail = m;
        pthread_cond_broadcast(&c->changed);
        pthread_mutex_unlock(&c->lock);
    }
    for (int i = 0; i < t_count && result == ncclSuccess; i++) {
        struct pending *p = &t_pending[i];
        if (p->send) continue;
        struct clique *c = p->comm->clique;
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += timeout_seconds();
        pthread_mutex_lock(&c->lock);
        struct message **box = &c->mailbox[p->peer][p->comm->rank];
        while (!*box && result == ncclSuccess)
            if (pthread_cond_timedwait(&c->changed, &c->lock, &deadline) == ETIMEDOUT) {
                fprintf(stderr, "[nccl stand-in] rank %d waited %d s for a message from rank %d\n", p->comm->rank, timeout_seconds(), p->peer);
                result = ncclSystemError;
            }
        if (result == ncclSuccess) {
            struct message *m = *box;
            *box = m->next;
            if (m->count != p->count || m->type != p->type) {
                fprintf(stderr, "[nccl stand-in] rank %d receives %zu elements of type %d from rank %d, which sent %zu of type %d\n",
                        p->comm->rank, p->count, p->type, p->peer, m->count, m->type);
                result = ncclInvalidUsage;
            } else memcpy(p->buffer, m->data, m->count * type_size(m->type));
            free((void *)m->data);
            free(m);
        }
        pthread_mutex_unlock(&c->lock);
    }
    t_count = 0;
    return result;
}

/*
 * A stand-in for NCCL (libnccl.so.2) over the CUDA stand-in's GPUs (built into the same library: device pointers
 * are host addresses), so that the runtime's NCCL path runs on machines without GPUs. It implements the entry
 * points the runtime binds with nccl.h's signatures, types (ncclInt32 = 2, ncclFloat32 = 7) and reductions
 * (ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3; maxima and minima as NCCL's fmaxf and fminf, where a
 * NaN loses to a number):
 *
 *   - ncclCommInitAll makes a clique of communicators, rank k on devices[k];
 *   - a call returns at once, its operation queued on the stream it names (standin.h: checked against the other
 *     streams' accesses to its buffers); each member's calls on a clique run in the order it made them, the k-th
 *     when the last member has made its k-th, which completes it on every member's stream. The members' calls
 *     must agree on kind, count, type and reduction, else the GPUs' next work fails saying so; NCCL's layouts
 *     (all-gather rank-major, reduce-scatter chunk k to rank k);
 *   - ncclSend and ncclRecv between ncclGroupStart and ncclGroupEnd: at ncclGroupEnd each send is delivered (to a
 *     waiting receive of the peer, else kept for it) and each receive takes the first message kept from its peer
 *     or waits for one, queued on the receiver's GPU; counts and types must agree;
 *   - ncclCommAbort ends the operations pending on the clique (they complete without a result) and makes every
 *     later call on it fail;
 *   - across processes (an MPI job): ncclGetUniqueId makes a fresh folder (under MPLC_STANDIN_DIR, default /tmp)
 *     whose path is the id, and ncclCommInitRank makes a member on the current context's GPU. A member's call
 *     writes its data to a file there (written whole, then renamed) and is queued on its stream; waits poll
 *     (standin_progress), and a collective completes once every member's file of it is there (computed as in one
 *     process, in rank order), a receive once the sender's file is there (which it removes), and a send only once
 *     its receiver has taken it: sends wait for their receives, as large ones do in NCCL.
 */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
#define QUEUE 64

struct call {
    enum kind kind;
    const void *send;
    void *recv;
    size_t count;
    int type, op;
    struct standin_ticket ticket;
};

/* A send kept for its receiver (data copied), or a receive waiting for its sender (buffer, and its place on the
   receiver's stream). */
struct message { void *data; size_t count; int type; struct message *next; struct standin_ticket ticket; };

struct clique {
    int ranks;
    int aborted;
    int devices[MAX_RANKS];
    pthread_mutex_t lock;
    int posted[MAX_RANKS];                   /* calls queued by each rank and not yet performed, in order */
    struct call queued[MAX_RANKS][QUEUE];
    struct call calls[MAX_RANKS];            /* the calls being performed */
    struct message *kept[MAX_RANKS][MAX_RANKS];      /* [from][to] sends not yet received, in order */
    struct message *waiting[MAX_RANKS][MAX_RANKS];   /* [from][to] receives not yet sent, in order */
};

/* A member of a clique in this process, or (clique NULL) of a communicator across processes, in folder `dir`. */
struct comm {
    struct clique *clique;
    int rank, device, ranks, aborted;
    char dir[128];
    unsigned long seq, sent[MAX_RANKS], received[MAX_RANKS];
};

struct pending {
    int send;
    void *buffer;
    size_t count;
    int type, peer;
    struct comm *comm;
    struct standin_ticket ticket;
};
static __thread int t_depth, t_count;
static __thread struct pending t_pending[MAX_P2P];

const char *ncclGetErrorString(ncclResult_t r)
{
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError:
        return "unhandled cuda error (the stand-in found a race between streams or a bad stream: see its message)";
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
        *comms[i] = (struct comm){ .clique = c, .rank = i, .device = c->devices[i], .ranks = ndev };
    }
    return ncclSuccess;
}

static void cross_abort(struct comm *comm);
static void cross_destroy(struct comm *comm);

ncclResult_t ncclCommAbort(struct comm *comm)
{
    if (!comm) return ncclInvalidArgument;
    if (!comm->clique) {
        cross_abort(comm);
        return ncclSuccess;
    }
    struct clique *c = comm->clique;
    pthread_mutex_lock(&c->lock);
    if (!c->aborted) {
        c->aborted = 1;
        for (int r = 0; r < c->ranks; r++) {
            for (int k = 0; k < c->posted[r]; k++) standin_complete(c->devices[r], c->queued[r][k].ticket, NULL);
            c->posted[r] = 0;
            for (int from = 0; from < c->ranks; from++)
                for (struct message *m; (m = c->waiting[from][r]) != NULL; free(m)) {
                    c->waiting[from][r] = m->next;
                    standin_complete(c->devices[r], m->ticket, NULL);
                }
        }
    }
    pthread_mutex_unlock(&c->lock);
    return ncclSuccess;   /* the communicator stays allocated: its clique's other members may still name it */
}

ncclResult_t ncclCommDestroy(struct comm *comm)
{
    if (comm && !comm->clique) cross_destroy(comm);
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

static ncclResult_t cross_collective(struct comm *comm, struct call call);

static const char *const s_names[] = { "ncclAllReduce", "ncclAllGather", "ncclReduceScatter" };

/* Queues the call on `stream` (checked against the other streams' accesses to its buffers, standin.h). */
static ncclResult_t issue(struct comm *comm, struct call *call, void *stream)
{
    size_t elem = type_size(call->type), n = comm->ranks;
    struct standin_range ranges[2] = {
        { call->send, call->count * elem * (call->kind == REDUCE_SCATTER ? n : 1), 0 },
        { call->recv, call->count * elem * (call->kind == ALL_GATHER ? n : 1), 1 },
    };
    char what[96];
    snprintf(what, sizeof what, "%s (rank %d)", s_names[call->kind], comm->rank);
    return standin_issue(comm->device, stream, ranges, 2, what, 1, &call->ticket) ? ncclUnhandledCudaError
                                                                                  : ncclSuccess;
}

static ncclResult_t collective(struct comm *comm, struct call call, void *stream)
{
    if (!comm) return ncclInvalidArgument;
    if (!type_size(call.type) || call.op < ncclSum || call.op > ncclMin) return ncclInvalidArgument;
    if (!comm->clique) {
        if (comm->aborted) return ncclInvalidUsage;
        ncclResult_t r = issue(comm, &call, stream);
        return r == ncclSuccess ? cross_collective(comm, call) : r;
    }
    struct clique *c = comm->clique;
    pthread_mutex_lock(&c->lock);
    ncclResult_t r = c->aborted                       ? ncclInvalidUsage
                     : c->posted[comm->rank] == QUEUE ? ncclInvalidUsage
                                                      : issue(comm, &call, stream);
    if (r != ncclSuccess) {
        pthread_mutex_unlock(&c->lock);
        return r;
    }
    c->queued[comm->rank][c->posted[comm->rank]++] = call;
    /* Each member's calls run in the order it made them: the first of every member's together. */
    for (;;) {
        int ready = 1;
        for (int k = 0; k < c->ranks; k++) ready &= c->posted[k] > 0;
        if (!ready) break;
        for (int k = 0; k < c->ranks; k++) {
            c->calls[k] = c->queued[k][0];
            memmove(&c->queued[k][0], &c->queued[k][1], --c->posted[k] * sizeof c->queued[k][0]);
        }
        char why[512];
        const char *failure = perform(c, why, sizeof why);
        for (int k = 0; k < c->ranks; k++) standin_complete(c->devices[k], c->calls[k].ticket, failure);
    }
    pthread_mutex_unlock(&c->lock);
    return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, int type, int op, struct comm *comm,
                           void *stream)
{
    return collective(comm, (struct call){ ALL_REDUCE, send, recv, count, type, op, { 0, 0 } }, stream);
}

ncclResult_t ncclAllGather(const void *send, void *recv, size_t count, int type, struct comm *comm, void *stream)
{
    return collective(comm, (struct call){ ALL_GATHER, send, recv, count, type, 0, { 0, 0 } }, stream);
}

ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t count, int type, int op, struct comm *comm,
                               void *stream)
{
    return collective(comm, (struct call){ REDUCE_SCATTER, send, recv, count, type, op, { 0, 0 } }, stream);
}

ncclResult_t ncclGroupStart(void)
{
    t_depth++;
    return ncclSuccess;
}

/* Issued on the stream when called (a receive, and a send to another process, stay queued until they complete; a
   send within the process is copied at ncclGroupEnd, so it is done then). */
static ncclResult_t p2p(int send, void *buffer, size_t count, int type, int peer, struct comm *comm, void *stream)
{
    if (!comm || !type_size(type) || peer < 0 || peer >= comm->ranks) return ncclInvalidArgument;
    if (t_depth == 0 || t_count == MAX_P2P) return ncclInvalidUsage;   /* the runtime always groups them */
    struct pending p = { send, buffer, count, type, peer, comm, { 0, 0 } };
    struct standin_range range = { buffer, count * type_size(type), !send };
    char what[96];
    snprintf(what, sizeof what, "%s (rank %d, peer %d)", send ? "ncclSend" : "ncclRecv", comm->rank, peer);
    if (standin_issue(comm->device, stream, &range, 1, what, !send || !comm->clique, &p.ticket))
        return ncclUnhandledCudaError;
    t_pending[t_count++] = p;
    return ncclSuccess;
}

ncclResult_t ncclSend(const void *buffer, size_t count, int type, int peer, struct comm *comm, void *stream)
{
    return p2p(1, (void *)buffer, count, type, peer, comm, stream);
}

ncclResult_t ncclRecv(void *buffer, size_t count, int type, int peer, struct comm *comm, void *stream)
{
    return p2p(0, buffer, count, type, peer, comm, stream);
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
    standin_complete(device, r->ticket, failure);
    free(r);
}

static ncclResult_t cross_p2p(struct pending *p);

/* Delivers or keeps one send, or posts one receive, of the group (a member of this process's clique). */
static ncclResult_t group_one(struct pending *p)
{
    struct clique *c = p->comm->clique;
    int me = p->comm->rank;
    size_t bytes = p->count * type_size(p->type);
    pthread_mutex_lock(&c->lock);
    ncclResult_t result = ncclSuccess;
    if (c->aborted) result = ncclInvalidUsage;
    else if (p->send) {
        struct message *r = take(&c->waiting[me][p->peer]);
        if (r) deliver(r, p->buffer, p->count, p->type, c->devices[p->peer], me, p->peer);
        else {
            struct message *m = malloc(sizeof *m);
            void *copy = malloc(bytes + 1);
            if (!m || !copy) {
                free(m);
                free(copy);
                result = ncclSystemError;
            } else {
                memcpy(copy, p->buffer, bytes);
                *m = (struct message){ copy, p->count, p->type, NULL, { 0, 0 } };
                append(&c->kept[me][p->peer], m);
            }
        }
    } else {
        struct message *r = malloc(sizeof *r);
        if (!r) result = ncclSystemError;
        else {
            *r = (struct message){ p->buffer, p->count, p->type, NULL, p->ticket };
            struct message *m = take(&c->kept[p->peer][me]);
            if (m) {
                deliver(r, m->data, m->count, m->type, p->comm->device, p->peer, me);
                free(m->data);
                free(m);
            } else append(&c->waiting[p->peer][me], r);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return result;
}

ncclResult_t ncclGroupEnd(void)
{
    if (t_depth == 0) return ncclInvalidUsage;
    if (--t_depth > 0) return ncclSuccess;
    ncclResult_t r = ncclSuccess;
    int i = 0;
    for (; i < t_count && r == ncclSuccess; i++)
        r = t_pending[i].comm->clique ? group_one(&t_pending[i]) : cross_p2p(&t_pending[i]);
    /* What was not issued after a failure leaves its stream (the failed one itself included). */
    for (int k = r == ncclSuccess ? t_count : i - 1; k < t_count; k++)
        standin_complete(t_pending[k].comm->device, t_pending[k].ticket, NULL);
    t_count = 0;
    return r;
}

/* ---- communicators across processes ---- */

typedef struct { char internal[128]; } ncclUniqueId;

enum { P2P_SEND = 10, P2P_RECV = 11 };

/* An operation of a member across processes, queued on its GPU until standin_progress completes it. */
struct op {
    int kind;
    struct comm *comm;
    unsigned long seq;
    void *recv;
    size_t count;
    int type, op;
    char path[300];
    struct standin_ticket ticket;
    struct op *next;
};

struct header { int kind; size_t count; int type, op; };

static pthread_mutex_t s_cross_lock = PTHREAD_MUTEX_INITIALIZER;
static struct op *s_ops;

ncclResult_t ncclGetUniqueId(ncclUniqueId *id)
{
    if (!id) return ncclInvalidArgument;
    const char *base = getenv("MPLC_STANDIN_DIR");
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "%s/mplc-nccl-XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(id->internal) ? ncclSuccess : ncclSystemError;
}

ncclResult_t ncclCommInitRank(struct comm **comm, int nranks, ncclUniqueId id, int rank)
{
    if (!comm || nranks <= 0 || nranks > MAX_RANKS || rank < 0 || rank >= nranks) return ncclInvalidArgument;
    struct stat st;
    if (id.internal[0] != '/' || memchr(id.internal, 0, sizeof id.internal) == NULL || stat(id.internal, &st) != 0)
        return ncclInvalidArgument;
    int device = standin_current_device();
    if (device < 0) return ncclUnhandledCudaError;   /* NCCL takes the current GPU */
    struct comm *c = calloc(1, sizeof *c);
    if (!c) return ncclSystemError;
    c->rank = rank;
    c->device = device;
    c->ranks = nranks;
    memcpy(c->dir, id.internal, sizeof c->dir);
    *comm = c;
    return ncclSuccess;
}

/* Writes the header and data to `path`, whole: to a temporary name, then renamed. */
static int write_file(const char *path, struct header h, const void *data, size_t bytes)
{
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return -1;
    int ok = fwrite(&h, sizeof h, 1, f) == 1 && (bytes == 0 || fwrite(data, bytes, 1, f) == 1);
    ok &= fclose(f) == 0;
    return ok && rename(tmp, path) == 0 ? 0 : -1;
}

/* The header and data of `path` (NULL when it is not there yet); the caller frees the data. */
static void *read_file(const char *path, struct header *h)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *data = NULL;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (size_t)st.st_size >= sizeof *h && fread(h, sizeof *h, 1, f) == 1) {
        size_t bytes = (size_t)st.st_size - sizeof *h;
        data = malloc(bytes + 1);
        if (data && bytes > 0 && fread(data, bytes, 1, f) != 1) {
            free(data);
            data = NULL;
        }
    }
    fclose(f);
    return data;
}

static ncclResult_t queue(struct op o)
{
    struct op *p = malloc(sizeof *p);
    if (!p) return ncclSystemError;
    *p = o;
    pthread_mutex_lock(&s_cross_lock);
    p->next = s_ops;
    s_ops = p;
    pthread_mutex_unlock(&s_cross_lock);
    return ncclSuccess;
}

static ncclResult_t cross_collective(struct comm *comm, struct call call)
{
    size_t elem = type_size(call.type), sent = call.kind == REDUCE_SCATTER ? call.count * comm->ranks : call.count;
    char path[300];
    snprintf(path, sizeof path, "%s/c%lu-%d", comm->dir, comm->seq, comm->rank);
    struct header h = { call.kind, call.count, call.type, call.op };
    if (write_file(path, h, call.send, sent * elem) != 0) {
        standin_complete(comm->device, call.ticket, "cannot write a collective's file");
        return ncclSystemError;
    }
    /* The files stay until the communicator is destroyed: with started collectives a member may make many calls
       before the others read its first. */
    struct op o = { .kind = call.kind, .comm = comm, .seq = comm->seq++, .recv = call.recv, .count = call.count,
                    .type = call.type, .op = call.op, .ticket = call.ticket };
    return queue(o);
}

static ncclResult_t cross_p2p(struct pending *p)
{
    struct comm *c = p->comm;
    if (c->aborted) return ncclInvalidUsage;
    struct op o = { .kind = p->send ? P2P_SEND : P2P_RECV, .comm = c, .recv = p->buffer, .count = p->count,
                    .type = p->type, .ticket = p->ticket };
    int from = p->send ? c->rank : p->peer, to = p->send ? p->peer : c->rank;
    o.seq = p->send ? c->sent[to]++ : c->received[from]++;
    snprintf(o.path, sizeof o.path, "%s/p%d-%d-%lu", c->dir, from, to, o.seq);
    if (p->send) {
        struct header h = { P2P_SEND, p->count, p->type, 0 };
        if (write_file(o.path, h, p->buffer, p->count * type_size(p->type)) != 0) return ncclSystemError;
    }
    return queue(o);
}

/* Completes `o` if it can: 1 when done (with `why` set on a failure), 0 when still waiting. */
static int try_complete(struct op *o, char *why, size_t size)
{
    struct comm *c = o->comm;
    if (o->kind == P2P_SEND) return access(o->path, F_OK) != 0;
    if (o->kind == P2P_RECV) {
        struct header h;
        void *data = read_file(o->path, &h);
        if (!data) return 0;
        if (h.count != o->count || h.type != o->type)
            snprintf(why, size, "rank %d receives %zu elements of type %d from a rank that sent %zu of type %d",
                     c->rank, o->count, o->type, h.count, h.type);
        else memcpy(o->recv, data, o->count * type_size(o->type));
        free(data);
        unlink(o->path);
        return 1;
    }
    char path[300];
    for (int r = 0; r < c->ranks; r++) {
        snprintf(path, sizeof path, "%s/c%lu-%d", c->dir, o->seq, r);
        if (access(path, F_OK) != 0) return 0;
    }
    struct call calls[MAX_RANKS];
    void *data[MAX_RANKS] = { 0 };
    int n = c->ranks, bad = 0;
    for (int r = 0; r < n; r++) {
        struct header h;
        snprintf(path, sizeof path, "%s/c%lu-%d", c->dir, o->seq, r);
        data[r] = read_file(path, &h);
        if (!data[r]) bad = 1;
        calls[r] = (struct call){ h.kind, data[r], NULL, h.count, h.type, h.op, { 0, 0 } };
    }
    if (bad) snprintf(why, size, "cannot read the files of collective %lu in %s", o->seq, c->dir);
    for (int r = 0; r < n && !bad; r++)
        if ((int)calls[r].kind != o->kind || calls[r].count != o->count || calls[r].type != o->type
            || (o->kind != ALL_GATHER && calls[r].op != o->op)) {
            snprintf(why, size,
                     "NCCL calls disagree: rank %d made (kind %d, count %zu, type %d, op %d), "
                     "rank %d (kind %d, count %zu, type %d, op %d)",
                     r, calls[r].kind, calls[r].count, calls[r].type, calls[r].op, c->rank, o->kind, o->count,
                     o->type, o->op);
            bad = 1;
        }
    if (!bad) {
        size_t elem = type_size(o->type), count = o->count;
        if (o->kind == ALL_GATHER)
            for (int r = 0; r < n; r++) memcpy((char *)o->recv + r * count * elem, data[r], count * elem);
        else {
            /* The same arithmetic as in one process: rank order, in double, for this member's elements. */
            size_t from = o->kind == REDUCE_SCATTER ? c->rank * count : 0;
            for (size_t i = 0; i < count; i++) {
                double v = get(data[0], o->type, from + i);
                for (int r = 1; r < n; r++) v = reduce(o->op, v, get(data[r], o->type, from + i));
                put(o->recv, o->type, i, v);
            }
        }
    }
    for (int r = 0; r < n; r++) free(data[r]);
    return 1;
}

int standin_progress(void)
{
    pthread_mutex_lock(&s_cross_lock);
    for (struct op **at = &s_ops; *at;) {
        struct op *o = *at;
        char why[512];
        why[0] = 0;
        if (try_complete(o, why, sizeof why)) {
            *at = o->next;
            standin_complete(o->comm->device, o->ticket, why[0] ? why : NULL);
            free(o);
        } else at = &o->next;
    }
    int pending = s_ops != NULL;
    pthread_mutex_unlock(&s_cross_lock);
    return pending;
}

/* The member's pending operations complete without a result; later calls fail. */
static void cross_abort(struct comm *comm)
{
    pthread_mutex_lock(&s_cross_lock);
    comm->aborted = 1;
    for (struct op **at = &s_ops; *at;) {
        struct op *o = *at;
        if (o->comm == comm) {
            *at = o->next;
            standin_complete(comm->device, o->ticket, NULL);
            free(o);
        } else at = &o->next;
    }
    pthread_mutex_unlock(&s_cross_lock);
}

/* Removes the member's files; the last member to go removes the folder. */
static void cross_destroy(struct comm *comm)
{
    cross_abort(comm);
    char path[300];
    for (unsigned long k = 0; k < comm->seq; k++) {
        snprintf(path, sizeof path, "%s/c%lu-%d", comm->dir, k, comm->rank);
        unlink(path);
    }
    rmdir(comm->dir);
}

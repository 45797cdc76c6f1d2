/*
 * The streams of the CUDA stand-in's GPUs and the order between them (standin.h), for the CUDA and NCCL stand-ins.
 *
 * Each stream keeps, for every stream, how many of that stream's operations it is ordered after (a vector clock):
 * its own earlier operations; on the legacy default stream, everything issued before on the blocking streams of its
 * GPU and, on a blocking stream, everything issued before on the legacy one (CUDA's implicit synchronisation); what
 * an event it waits for (cuStreamWaitEvent) was ordered after; and what the host had seen complete when it issued
 * the operation (cuStreamSynchronize, cuCtxSynchronize, cuEventSynchronize, and the copies to and from the host,
 * which return once done). Each allocation keeps, per stream, the last operation that read it and the last that
 * wrote it; an operation that reads what another stream wrote, or writes what another stream read or wrote, without
 * being ordered after that access, is a race: the call fails, saying so on stderr.
 *
 * The stand-in runs kernels and copies when they are issued, so what is physically waited for is only the NCCL
 * operations still queued (deferred) on the streams an operation is ordered after, and on its own stream.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "standin.h"

#define MAX_DEVICES 16
#define MAX_STREAMS 1024
#define MAX_PENDING 1024
#define MAX_ACCESSORS 8

struct stream {
    int index, device, legacy, blocking;
    unsigned long seq;
    unsigned long seen[MAX_STREAMS];
    int npending;
    unsigned long pending[MAX_PENDING];
};

struct accessor {
    int stream;
    unsigned long read, written;
    char reader[112], writer[112];
};

struct tracked {
    uintptr_t base;
    size_t bytes;
    int device, n;
    struct accessor acc[MAX_ACCESSORS];
    struct tracked *next;
};

struct event {
    int recorded, stream;
    unsigned long seq;
    double ms;
    unsigned long seen[MAX_STREAMS];
};

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_changed = PTHREAD_COND_INITIALIZER;
static struct stream *s_streams[MAX_STREAMS];
static int s_count;
static unsigned long s_host[MAX_STREAMS];
static char s_failure[MAX_DEVICES][256];
static struct tracked *s_tracked;

int standin_timeout(void)
{
    const char *t = getenv("MPLC_STANDIN_TIMEOUT");
    return t && atoi(t) > 0 ? atoi(t) : 60;
}

static struct stream *make(int device, int legacy, int blocking)
{
    if (s_count == MAX_STREAMS) return NULL;
    struct stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->index = s_count;
    s->device = device;
    s->legacy = legacy;
    s->blocking = blocking;
    s_streams[s_count++] = s;
    return s;
}

void standin_streams_init(int devices)
{
    pthread_mutex_lock(&s_lock);
    for (int d = s_count; d < devices && d < MAX_DEVICES; d++) make(d, 1, 1);
    pthread_mutex_unlock(&s_lock);
}

void *standin_stream_create(int device, unsigned flags)
{
    pthread_mutex_lock(&s_lock);
    struct stream *s = make(device, 0, (flags & 1) == 0);
    pthread_mutex_unlock(&s_lock);
    return s;
}

/* The stream `stream` names on `device` (NULL: its legacy stream), or NULL when it is not one of that GPU's. Call
   with s_lock held. */
static struct stream *resolve(int device, void *stream)
{
    if (device < 0 || device >= s_count || device >= MAX_DEVICES) return NULL;
    if (!stream) return s_streams[device];
    for (int i = 0; i < s_count; i++)
        if (s_streams[i] == stream) return s_streams[i]->device == device ? s_streams[i] : NULL;
    return NULL;
}

int standin_stream_of(void *stream, int device)
{
    pthread_mutex_lock(&s_lock);
    int r = resolve(device, stream) != NULL;
    pthread_mutex_unlock(&s_lock);
    return r;
}

static void merge(unsigned long *into, const unsigned long *from)
{
    for (int i = 0; i < s_count; i++)
        if (from[i] > into[i]) into[i] = from[i];
}

/* What an operation issued now on `x` is ordered after, besides x's own: the host's view and the legacy stream's
   implicit synchronisation with the blocking streams of its GPU. */
static void order(struct stream *x)
{
    merge(x->seen, s_host);
    if (!x->blocking) return;
    for (int i = 0; i < s_count; i++) {
        struct stream *y = s_streams[i];
        if (y == x || y->device != x->device || !y->blocking || !(x->legacy || y->legacy)) continue;
        merge(x->seen, y->seen);
        if (y->seq > x->seen[i]) x->seen[i] = y->seq;
    }
}

static const char *kind(const struct stream *s)
{
    return s->legacy ? "the legacy default stream" : s->blocking ? "a blocking stream" : "a non-blocking stream";
}

/* ---- waiting for deferred operations ---- */

static int is_pending(const struct stream *y, unsigned long seq)
{
    for (int k = 0; k < y->npending; k++)
        if (y->pending[k] == seq) return 1;
    return 0;
}

static int has_pending_upto(const struct stream *y, unsigned long upto)
{
    for (int k = 0; k < y->npending; k++)
        if (y->pending[k] <= upto) return 1;
    return 0;
}

/* Whether the deferred operations `x` waits for completed: its own and those it is ordered after. */
static int settled(const void *arg)
{
    const struct stream *x = arg;
    for (int i = 0; i < s_count; i++)
        if (has_pending_upto(s_streams[i], s_streams[i] == x ? (unsigned long)-1 : x->seen[i])) return 0;
    return 1;
}

static int device_settled(const void *arg)
{
    int device = *(const int *)arg;
    for (int i = 0; i < s_count; i++)
        if (s_streams[i]->device == device && s_streams[i]->npending > 0) return 0;
    return 1;
}

static int event_done(const void *arg)
{
    const struct event *e = arg;
    for (int i = 0; i < s_count; i++)
        if (has_pending_upto(s_streams[i], i == e->stream ? e->seq : e->seen[i])) return 0;
    return 1;
}

/* Waits until done(arg), polling the operations across processes; s_lock held on entry and on return. 0, or nonzero
   after saying why (a timeout, or a failure of an operation on `device`). */
static int wait_for(int device, int (*done)(const void *), const void *arg)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += standin_timeout();
    int r = 0;
    while (!done(arg)) {
        pthread_mutex_unlock(&s_lock);
        int polling = standin_progress();
        pthread_mutex_lock(&s_lock);
        if (done(arg)) break;
        struct timespec now, until;
        clock_gettime(CLOCK_REALTIME, &now);
        until = deadline;
        if (polling) {
            until = now;
            until.tv_nsec += 2000000;
            if (until.tv_nsec >= 1000000000) { until.tv_sec++; until.tv_nsec -= 1000000000; }
            if (until.tv_sec > deadline.tv_sec || (until.tv_sec == deadline.tv_sec && until.tv_nsec > deadline.tv_nsec))
                until = deadline;
        }
        pthread_cond_timedwait(&s_changed, &s_lock, &until);
        if (done(arg)) break;
        clock_gettime(CLOCK_REALTIME, &now);
        if (now.tv_sec > deadline.tv_sec || (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec)) {
            fprintf(stderr,
                    "[cuda stand-in] GPU %d waited %d s for NCCL work queued on it: "
                    "another member of its communicator never made its call\n",
                    device, standin_timeout());
            r = 1;
            break;
        }
    }
    if (device >= 0 && device < MAX_DEVICES && s_failure[device][0]) {
        fprintf(stderr, "[cuda stand-in] GPU %d: %s\n", device, s_failure[device]);
        s_failure[device][0] = 0;
        r = 1;
    }
    return r;
}

/* ---- access records ---- */

void standin_track(const void *base, size_t bytes, int device)
{
    struct tracked *t = calloc(1, sizeof *t);
    if (!t) return;   /* untracked: unchecked, never a false race */
    t->base = (uintptr_t)base;
    t->bytes = bytes;
    t->device = device;
    pthread_mutex_lock(&s_lock);
    t->next = s_tracked;
    s_tracked = t;
    pthread_mutex_unlock(&s_lock);
}

void standin_untrack(const void *base)
{
    pthread_mutex_lock(&s_lock);
    for (struct tracked **t = &s_tracked; *t; t = &(*t)->next)
        if ((*t)->base == (uintptr_t)base) {
            struct tracked *dead = *t;
            *t = dead->next;
            free(dead);
            break;
        }
    pthread_mutex_unlock(&s_lock);
}

static struct tracked *lookup(const void *p)
{
    for (struct tracked *t = s_tracked; t; t = t->next)
        if ((uintptr_t)p >= t->base && (uintptr_t)p < t->base + t->bytes) return t;
    return NULL;
}

static int race(const struct stream *x, const char *what, const struct standin_range *r, const struct tracked *t,
                const struct accessor *a, int wrote)
{
    const struct stream *y = s_streams[a->stream];
    fprintf(stderr,
            "[cuda stand-in] race on GPU %d: %s (stream %d, %s) %s [0x%lx, +%zu), an allocation that %s "
            "(stream %d, %s, its operation %lu) %s, and nothing orders the two (no event the stream waits for, no "
            "host synchronisation)\n",
            x->device, what, x->index, kind(x), r->write == 2 ? "reads or writes" : r->write ? "writes" : "reads",
            (unsigned long)t->base, t->bytes, wrote ? a->writer : a->reader, y->index, kind(y),
            wrote ? a->written : a->read, wrote ? "writes" : "reads");
    return 1;
}

/* Checks `x`'s access to each range against the other streams' (and, for a deferred operation, that what it reads
   is not still being written by a deferred operation of its own stream, which the stand-in does not model). */
static int check(const struct stream *x, const struct standin_range *ranges, int n, const char *what, int deferred)
{
    for (int k = 0; k < n; k++) {
        const struct tracked *t = lookup(ranges[k].p);
        if (!t) continue;
        for (int i = 0; i < t->n; i++) {
            const struct accessor *a = &t->acc[i];
            if (a->stream == x->index) {
                if (deferred && !ranges[k].write && a->written && is_pending(x, a->written)) {
                    fprintf(stderr,
                            "[cuda stand-in] %s on stream %d reads [0x%lx, +%zu), which %s queued before it on the "
                            "same stream writes: not modelled (it would read the old contents)\n",
                            what, x->index, (unsigned long)t->base, t->bytes, a->writer);
                    return 1;
                }
                continue;
            }
            if (a->written > x->seen[a->stream]) return race(x, what, &ranges[k], t, a, 1);
            if (ranges[k].write && a->read > x->seen[a->stream]) return race(x, what, &ranges[k], t, a, 0);
        }
    }
    return 0;
}

static void record(const struct stream *x, unsigned long seq, const struct standin_range *ranges, int n,
                   const char *what)
{
    for (int k = 0; k < n; k++) {
        struct tracked *t = lookup(ranges[k].p);
        if (!t) continue;
        struct accessor *a = NULL;
        for (int i = 0; i < t->n && !a; i++)
            if (t->acc[i].stream == x->index) a = &t->acc[i];
        if (!a) {
            /* Full: the stream with the oldest accesses gives up its record (a check lost, never a false race). */
            int slot = t->n < MAX_ACCESSORS ? t->n++ : 0;
            for (int i = 1; t->n == MAX_ACCESSORS && i < MAX_ACCESSORS; i++)
                if ((t->acc[i].read > t->acc[i].written ? t->acc[i].read : t->acc[i].written)
                    < (t->acc[slot].read > t->acc[slot].written ? t->acc[slot].read : t->acc[slot].written))
                    slot = i;
            a = &t->acc[slot];
            memset(a, 0, sizeof *a);
            a->stream = x->index;
        }
        if (ranges[k].write) {
            a->written = seq;
            snprintf(a->writer, sizeof a->writer, "%s", what);
        } else {
            a->read = seq;
            snprintf(a->reader, sizeof a->reader, "%s", what);
        }
    }
}

/* ---- operations ---- */

int standin_issue(int device, void *stream, const struct standin_range *ranges, int n, const char *what,
                  int deferred, struct standin_ticket *ticket)
{
    pthread_mutex_lock(&s_lock);
    struct stream *x = resolve(device, stream);
    int r = 0;
    if (!x) {
        fprintf(stderr, "[cuda stand-in] %s: the stream is not a stream of GPU %d\n", what, device);
        r = 1;
    } else if (deferred && x->npending == MAX_PENDING) {
        fprintf(stderr, "[cuda stand-in] %s: more than %d operations queued on stream %d\n", what, MAX_PENDING,
                x->index);
        r = 1;
    } else {
        order(x);
        r = check(x, ranges, n, what, deferred);
    }
    if (r == 0) {
        unsigned long seq = ++x->seq;
        x->seen[x->index] = seq;
        record(x, seq, ranges, n, what);
        if (deferred) x->pending[x->npending++] = seq;
        if (ticket) *ticket = (struct standin_ticket){ x->index, seq };
    }
    pthread_mutex_unlock(&s_lock);
    return r;
}

void standin_complete(int device, struct standin_ticket ticket, const char *failure)
{
    pthread_mutex_lock(&s_lock);
    if (ticket.stream >= 0 && ticket.stream < s_count) {
        struct stream *s = s_streams[ticket.stream];
        for (int k = 0; k < s->npending; k++)
            if (s->pending[k] == ticket.seq) {
                s->pending[k] = s->pending[--s->npending];
                break;
            }
    }
    if (failure && device >= 0 && device < MAX_DEVICES && !s_failure[device][0])
        snprintf(s_failure[device], sizeof s_failure[device], "%s", failure);
    pthread_cond_broadcast(&s_changed);
    pthread_mutex_unlock(&s_lock);
}

enum { LAUNCH_TIMEOUT = 702, LAUNCH_FAILED = 719, INVALID_HANDLE = 400 };

int standin_run(int device, void *stream, const struct standin_range *ranges, int n, const char *what,
                int host_sync)
{
    pthread_mutex_lock(&s_lock);
    struct stream *x = resolve(device, stream);
    int r = 0;
    if (!x) {
        fprintf(stderr, "[cuda stand-in] %s: the stream is not a stream of GPU %d\n", what, device);
        r = INVALID_HANDLE;
    } else {
        order(x);
        if (wait_for(device, settled, x)) r = LAUNCH_TIMEOUT;
        else if (check(x, ranges, n, what, 0)) r = LAUNCH_FAILED;
    }
    if (r == 0) {
        unsigned long seq = ++x->seq;
        x->seen[x->index] = seq;
        record(x, seq, ranges, n, what);
        if (host_sync) merge(s_host, x->seen);
    }
    pthread_mutex_unlock(&s_lock);
    return r;
}

int standin_synchronize(int device, void *stream, int all)
{
    pthread_mutex_lock(&s_lock);
    int r = 0;
    struct stream *x = all ? NULL : resolve(device, stream);
    if (!all && !x) r = INVALID_HANDLE;
    else if (wait_for(device, all ? device_settled : settled, all ? (const void *)&device : x)) r = LAUNCH_TIMEOUT;
    else
        for (int i = 0; i < s_count; i++)
            if (all ? s_streams[i]->device == device : s_streams[i] == x) {
                merge(s_host, s_streams[i]->seen);
                if (s_streams[i]->seq > s_host[i]) s_host[i] = s_streams[i]->seq;
            }
    pthread_mutex_unlock(&s_lock);
    return r;
}

/* ---- events ---- */

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

void *standin_event_create(void) { return calloc(1, sizeof(struct event)); }

int standin_event_record(void *event, int device, void *stream)
{
    struct event *e = event;
    pthread_mutex_lock(&s_lock);
    struct stream *x = resolve(device, stream);
    if (x) {
        order(x);
        memcpy(e->seen, x->seen, sizeof e->seen);
        e->stream = x->index;
        e->seq = x->seq;
        e->ms = now_ms();
        e->recorded = 1;
    }
    pthread_mutex_unlock(&s_lock);
    return x ? 0 : INVALID_HANDLE;
}

int standin_stream_wait_event(void *stream, int device, void *event)
{
    struct event *e = event;
    pthread_mutex_lock(&s_lock);
    struct stream *x = resolve(device, stream);
    if (x && e->recorded) {
        merge(x->seen, e->seen);
        if (e->seq > x->seen[e->stream]) x->seen[e->stream] = e->seq;
    }
    pthread_mutex_unlock(&s_lock);
    return x ? 0 : INVALID_HANDLE;
}

int standin_event_synchronize(void *event)
{
    struct event *e = event;
    pthread_mutex_lock(&s_lock);
    int r = 0;
    if (e->recorded) {
        if (wait_for(s_streams[e->stream]->device, event_done, e)) r = LAUNCH_TIMEOUT;
        else {
            merge(s_host, e->seen);
            if (e->seq > s_host[e->stream]) s_host[e->stream] = e->seq;
        }
    }
    pthread_mutex_unlock(&s_lock);
    return r;
}

void standin_event_destroy(void *event) { free(event); }

double standin_event_ms(void *event) { return ((struct event *)event)->recorded ? ((struct event *)event)->ms : -1; }

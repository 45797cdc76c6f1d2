/*
 * What the CUDA and NCCL stand-ins share (they are built into one library with streams_standin.c): the streams of
 * each GPU and the ordering between them. Kernels, copies and memsets run at once, when issued, after the work
 * their stream is ordered after; NCCL calls return at once, as NCCL's do, and their operation stays queued on its
 * stream until it completes (every member made its call). Work that waits for an operation that never completes
 * fails after MPLC_STANDIN_TIMEOUT seconds (default 60), naming the GPU, where it would hang on GPUs.
 *
 * Every operation is checked against the order CUDA guarantees (a stream's own order, the legacy default stream's
 * implicit synchronisation with blocking streams, cuStreamWaitEvent, and host synchronisation): an operation that
 * touches an allocation another stream wrote, or writes one another stream read, without being ordered after that
 * access, is a race, which fails the call and says so on stderr. A kernel's pointer parameters count as read and
 * written (the stand-in cannot tell which).
 */
#ifndef STANDIN_H
#define STANDIN_H

#include <stddef.h>

/* A range an operation reads or writes (device pointers are host addresses). */
struct standin_range {
    const void *p;
    size_t bytes;
    int write;
};

/* An operation queued on a stream: which stream (its index) and its position there. */
struct standin_ticket {
    int stream;
    unsigned long seq;
};

/* Issues an operation named `what` on `stream` of GPU `device` (NULL: the GPU's legacy default stream): checks that
   each of its ranges is ordered after the other streams' conflicting accesses and records them; a `deferred` one
   (an NCCL operation) stays queued, as `ticket`, until standin_complete. Returns 0, or nonzero after saying why on
   stderr (a race, a stream of another GPU): nothing is then issued. */
int standin_issue(int device, void *stream, const struct standin_range *ranges, int n, const char *what,
                  int deferred, struct standin_ticket *ticket);
/* The deferred operation completed on GPU `device`; `failure` (or NULL) is why it failed. */
void standin_complete(int device, struct standin_ticket ticket, const char *failure);
/* The device of the calling thread's current context, or -1. */
int standin_current_device(void);
/* Polls the NCCL operations whose communicators span processes, completing those whose data has come: nonzero
   while any is pending. */
int standin_progress(void);
/* MPLC_STANDIN_TIMEOUT, in seconds. */
int standin_timeout(void);

/* For the CUDA stand-in (streams_standin.c). */
/* Sets up GPU `device`'s legacy default stream. */
void standin_streams_init(int devices);
/* A new stream on `device` (flags as cuStreamCreate's: 1 = CU_STREAM_NON_BLOCKING), or NULL when there are too
   many. */
void *standin_stream_create(int device, unsigned flags);
/* Whether `stream` is a stream of `device` (NULL, the legacy stream, is). */
int standin_stream_of(void *stream, int device);
/* Runs an operation on `stream` now: waits for what the stream is ordered after, then checks and records its
   ranges (`what` names it). 0, or a CUresult-style nonzero after saying why on stderr. `host_sync`: the call
   returns to the host after the work completes (cuMemcpyHtoD, cuMemcpyDtoH), which orders the host's later work
   after it. */
int standin_run(int device, void *stream, const struct standin_range *ranges, int n, const char *what,
                int host_sync);
/* Waits for the work of `stream` (NULL: the legacy one; `all`: every stream of the device) and orders the host's
   later work after it. 0, or nonzero after saying why on stderr. */
int standin_synchronize(int device, void *stream, int all);
/* Allocations, for the access records. */
void standin_track(const void *base, size_t bytes, int device);
void standin_untrack(const void *base);
/* Events: one records the position of its stream (and what that stream is ordered after). */
void *standin_event_create(void);
int standin_event_record(void *event, int device, void *stream);
int standin_stream_wait_event(void *stream, int device, void *event);
int standin_event_synchronize(void *event);
void standin_event_destroy(void *event);
/* When the event was recorded (a monotonic clock, in ms), or a negative number before that. */
double standin_event_ms(void *event);

#endif

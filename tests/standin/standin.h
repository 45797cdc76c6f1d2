/*
 * What the CUDA and NCCL stand-ins share (they are built into one library): each GPU's default stream, reduced
 * to the NCCL operations queued on it and not yet complete. NCCL calls return at once, as NCCL's do; the GPU's
 * later work (a synchronisation, a copy, a launch) waits for them, so a program that waits for a collective
 * while a member's host thread cannot reach its own call hangs here as it would on GPUs (here it fails after
 * MPLC_STANDIN_TIMEOUT seconds, default 60, naming the GPU).
 */
#ifndef STANDIN_H
#define STANDIN_H

/* An operation queued on GPU `device`'s stream. */
void standin_enqueue(int device);
/* It completed; `failure` (or NULL) is why it failed. */
void standin_complete(int device, const char *failure);
/* Waits until GPU `device`'s queued operations completed: 0, or nonzero (after saying why on stderr) when one
   failed or they did not complete in time. */
int standin_wait(int device);
/* The device of the calling thread's current context, or -1. */
int standin_current_device(void);
/* Polls the NCCL operations whose communicators span processes, completing those whose data has come: nonzero
   while any is pending. */
int standin_progress(void);
/* MPLC_STANDIN_TIMEOUT, in seconds. */
int standin_timeout(void);

#endif

/*
 * A stand-in for the CUDA driver (libcuda.so.1) that runs on the CPU, so that the runtime's CUDA path (its
 * P/Invoke bindings, contexts, copies, launches, events) runs on machines without a GPU. It implements the
 * entry points the runtime binds, with the driver API's signatures and result codes (cuda.h):
 *
 *   - devices: MPLC_STANDIN_GPUS of them (default 1), each with MPLC_STANDIN_MEMORY bytes (default 4 GiB);
 *   - memory: host memory; a device pointer is its host address. Every copy and memset must lie within one live
 *     allocation of the current context's device (a peer copy: source on the source context's), or the call fails
 *     with CUDA_ERROR_INVALID_VALUE, as a driver would for a bad device pointer;
 *   - modules: PTX text, checked for a .version, a .target and the .entry of every kernel looked up; a launch runs
 *     the kernel of the same name from a host-grid library (a bundle's libkernels-grid.so: one call per block,
 *     the block's threads run by the kernel itself), refusing a block larger than the entry's .maxntid. The
 *     library is the one MPLC_STANDIN_GRID names or else, under the folder MPLC_STANDIN_BUNDLES names, that of
 *     the bundle whose kernels.ptx is the PTX loaded, or failing that the first that has every entry of it (the
 *     collective kernels, which every bundle has);
 *   - streams and events (streams_standin.c): the legacy default stream and streams of cuStreamCreate, blocking or
 *     not; launches and copies run at once, after the NCCL operations queued on the streams they are ordered
 *     after, and every one is checked against the order events and synchronisation impose (standin.h: a race
 *     fails the call, 719, saying so on stderr); events read a monotonic clock.
 *
 * MPLC_STANDIN_LOG=1 prints every call to stderr.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ftw.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>

#include "standin.h"

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;

enum {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_IMAGE = 200,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
    CUDA_ERROR_LAUNCH_TIMEOUT = 702,
    CUDA_ERROR_LAUNCH_FAILED = 719,
};

#define MAX_DEVICES 16
#define MAX_ENTRIES 4096

struct context { int device; int retained; };
struct allocation { uintptr_t base; size_t bytes; int device; struct allocation *next; };
struct entry { char name[256]; int params; long maxntid; void *fn; };
struct module { int device; void *grid; int count; struct entry entries[MAX_ENTRIES]; };

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
/* Shared memory of the host-grid kernels is a global of their library: one launch at a time. */
static pthread_mutex_t s_launch = PTHREAD_MUTEX_INITIALIZER;
static int s_initialised, s_devices = 1;
static size_t s_memory = (size_t)4 << 30, s_used[MAX_DEVICES];
static struct context s_contexts[MAX_DEVICES];
static struct allocation *s_allocations;
static __thread struct context *t_current;
static int s_log;

#define LOG(...) do { if (s_log) { fprintf(stderr, "[cuda stand-in] " __VA_ARGS__); fputc('\n', stderr); } } while (0)

static const char *error_text(CUresult r)
{
    switch (r) {
    case CUDA_SUCCESS: return "no error";
    case CUDA_ERROR_INVALID_VALUE: return "invalid argument";
    case CUDA_ERROR_OUT_OF_MEMORY: return "out of memory";
    case CUDA_ERROR_NOT_INITIALIZED: return "initialization error";
    case CUDA_ERROR_INVALID_DEVICE: return "invalid device ordinal";
    case CUDA_ERROR_INVALID_IMAGE: return "device kernel image is invalid";
    case CUDA_ERROR_INVALID_CONTEXT: return "invalid device context";
    case CUDA_ERROR_INVALID_HANDLE: return "invalid resource handle";
    case CUDA_ERROR_NOT_FOUND: return "named symbol not found";
    case CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: return "too many resources requested for launch";
    case CUDA_ERROR_LAUNCH_TIMEOUT:
        return "the launch timed out and was terminated (queued NCCL work never completed or failed)";
    case CUDA_ERROR_LAUNCH_FAILED:
        return "unspecified launch failure (the stand-in found a race between streams: see its message)";
    default: return "unknown error";
    }
}

CUresult cuGetErrorString(CUresult error, const char **text) { *text = error_text(error); return CUDA_SUCCESS; }

int standin_current_device(void) { return t_current ? t_current->device : -1; }

/* Runs an operation on `stream` of the current GPU now, after what it is ordered after (streams_standin.c). */
#define RUN(stream, ranges, n, what, host_sync)                                                                   \
    do {                                                                                                          \
        CUresult r_ = standin_run(t_current->device, (stream), (ranges), (n), (what), (host_sync));               \
        if (r_ != CUDA_SUCCESS) return r_;                                                                        \
    } while (0)

CUresult cuInit(unsigned int flags)
{
    if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&s_lock);
    if (!s_initialised) {
        const char *n = getenv("MPLC_STANDIN_GPUS"), *m = getenv("MPLC_STANDIN_MEMORY"),
                   *l = getenv("MPLC_STANDIN_LOG");
        if (n && atoi(n) > 0) s_devices = atoi(n) < MAX_DEVICES ? atoi(n) : MAX_DEVICES;
        if (m && atoll(m) > 0) s_memory = (size_t)atoll(m);
        s_log = l && strcmp(l, "1") == 0;
        for (int i = 0; i < MAX_DEVICES; i++) s_contexts[i].device = i;
        standin_streams_init(MAX_DEVICES);
        s_initialised = 1;
    }
    pthread_mutex_unlock(&s_lock);
    return CUDA_SUCCESS;
}

CUresult cuDriverGetVersion(int *version) { *version = 13000; return CUDA_SUCCESS; }

CUresult cuDeviceGetCount(int *count)
{
    if (!s_initialised) return CUDA_ERROR_NOT_INITIALIZED;
    *count = s_devices;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice *device, int ordinal)
{
    if (!s_initialised) return CUDA_ERROR_NOT_INITIALIZED;
    if (ordinal < 0 || ordinal >= s_devices) return CUDA_ERROR_INVALID_DEVICE;
    *device = ordinal;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetAttribute(int *value, int attribute, CUdevice device)
{
    if (device < 0 || device >= s_devices) return CUDA_ERROR_INVALID_DEVICE;
    switch (attribute) {
    case 1: *value = 1024; break;   /* max threads per block */
    case 16: *value = 132; break;   /* multiprocessors */
    case 75: *value = 9; break;     /* compute capability major */
    case 76: *value = 0; break;     /* minor */
    default: *value = 0; break;
    }
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(void **context, CUdevice device)
{
    if (!s_initialised) return CUDA_ERROR_NOT_INITIALIZED;
    if (device < 0 || device >= s_devices) return CUDA_ERROR_INVALID_DEVICE;
    pthread_mutex_lock(&s_lock);
    s_contexts[device].retained++;
    pthread_mutex_unlock(&s_lock);
    *context = &s_contexts[device];
    LOG("cuDevicePrimaryCtxRetain(%d)", device);
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease(CUdevice device)
{
    if (device < 0 || device >= s_devices) return CUDA_ERROR_INVALID_DEVICE;
    pthread_mutex_lock(&s_lock);
    CUresult r = s_contexts[device].retained > 0 ? (s_contexts[device].retained--, CUDA_SUCCESS)
                                                  : CUDA_ERROR_INVALID_CONTEXT;
    pthread_mutex_unlock(&s_lock);
    return r;
}

static int valid_context(const void *c)
{
    const struct context *ctx = c;
    return ctx >= s_contexts && ctx < s_contexts + s_devices && ctx->retained > 0;
}

CUresult cuCtxSetCurrent(void *context)
{
    if (context != NULL && !valid_context(context)) return CUDA_ERROR_INVALID_CONTEXT;
    t_current = context;
    return CUDA_SUCCESS;
}

CUresult cuCtxSynchronize(void)
{
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    return standin_synchronize(t_current->device, NULL, 1);
}

/* ---- streams ---- */

CUresult cuStreamCreate(void **stream, unsigned int flags)
{
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    if (!stream || flags > 1) return CUDA_ERROR_INVALID_VALUE;
    *stream = standin_stream_create(t_current->device, flags);
    LOG("cuStreamCreate(%u) on %d = %p", flags, t_current->device, *stream);
    return *stream ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

/* The stream's work still completes; its record stays (the access records name it). */
CUresult cuStreamDestroy_v2(void *stream)
{
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    return stream && standin_stream_of(stream, t_current->device) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

CUresult cuStreamSynchronize(void *stream)
{
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    if (!standin_stream_of(stream, t_current->device)) return CUDA_ERROR_INVALID_HANDLE;
    return standin_synchronize(t_current->device, stream, 0);
}

CUresult cuStreamWaitEvent(void *stream, void *event, unsigned int flags)
{
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    if (!event || flags != 0) return CUDA_ERROR_INVALID_VALUE;
    return standin_stream_wait_event(stream, t_current->device, event);
}

/* ---- memory ---- */

/* The allocation of `device` holding [p, p + bytes), or NULL. Call with s_lock held. */
static struct allocation *find(uintptr_t p, size_t bytes, int device)
{
    for (struct allocation *a = s_allocations; a; a = a->next)
        if (a->device == device && p >= a->base && p + bytes <= a->base + a->bytes && p + bytes >= p) return a;
    return NULL;
}

static CUresult check_range(CUdeviceptr p, size_t bytes, int device, const char *call)
{
    pthread_mutex_lock(&s_lock);
    struct allocation *a = find((uintptr_t)p, bytes, device);
    pthread_mutex_unlock(&s_lock);
    if (a) return CUDA_SUCCESS;
    fprintf(stderr, "[cuda stand-in] %s: [0x%llx, +%zu) is not within an allocation of GPU %d\n",
            call, p, bytes, device);
    return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuMemAlloc_v2(CUdeviceptr *pointer, size_t bytes)
{
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    if (bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    int device = t_current->device;
    pthread_mutex_lock(&s_lock);
    if (s_used[device] + bytes > s_memory) {
        pthread_mutex_unlock(&s_lock);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    void *p = aligned_alloc(256, (bytes + 255) / 256 * 256);
    struct allocation *a = malloc(sizeof *a);
    if (!p || !a) {
        free(p);
        free(a);
        pthread_mutex_unlock(&s_lock);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *a = (struct allocation){ (uintptr_t)p, bytes, device, s_allocations };
    s_allocations = a;
    s_used[device] += bytes;
    pthread_mutex_unlock(&s_lock);
    standin_track(p, bytes, device);
    *pointer = (CUdeviceptr)(uintptr_t)p;
    LOG("cuMemAlloc(%zu) on %d = 0x%llx", bytes, device, *pointer);
    return CUDA_SUCCESS;
}

CUresult cuMemFree_v2(CUdeviceptr pointer)
{
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    /* As on GPUs, freeing waits for the device's work. */
    CUresult waited = standin_synchronize(t_current->device, NULL, 1);
    if (waited != CUDA_SUCCESS) return waited;
    standin_untrack((void *)(uintptr_t)pointer);
    pthread_mutex_lock(&s_lock);
    for (struct allocation **a = &s_allocations; *a; a = &(*a)->next)
        if ((*a)->base == (uintptr_t)pointer) {
            struct allocation *dead = *a;
            *a = dead->next;
            s_used[dead->device] -= dead->bytes;
            pthread_mutex_unlock(&s_lock);
            free((void *)dead->base);
            free(dead);
            return CUDA_SUCCESS;
        }
    pthread_mutex_unlock(&s_lock);
    fprintf(stderr, "[cuda stand-in] cuMemFree: 0x%llx is not an allocation\n", pointer);
    return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total)
{
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    pthread_mutex_lock(&s_lock);
    *free_bytes = s_memory - s_used[t_current->device];
    pthread_mutex_unlock(&s_lock);
    *total = s_memory;
    return CUDA_SUCCESS;
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t bytes)
{
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    CUresult r = check_range(dst, bytes, t_current->device, "cuMemcpyHtoD");
    if (r != CUDA_SUCCESS) return r;
    struct standin_range w = { (void *)(uintptr_t)dst, bytes, 1 };
    RUN(NULL, &w, 1, "cuMemcpyHtoD", 1);
    memcpy((void *)(uintptr_t)dst, src, bytes);
    return CUDA_SUCCESS;
}

/* Asynchronous with respect to the host's later work on the GPU (from pageable memory it returns once the source is
   staged, as here, where the bytes move at once): only the stream's order and the events it waits for order it. */
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t bytes, void *stream)
{
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    if (!standin_stream_of(stream, t_current->device)) return CUDA_ERROR_INVALID_HANDLE;
    CUresult r = check_range(dst, bytes, t_current->device, "cuMemcpyHtoDAsync");
    if (r != CUDA_SUCCESS) return r;
    struct standin_range w = { (void *)(uintptr_t)dst, bytes, 1 };
    RUN(stream, &w, 1, "cuMemcpyHtoDAsync", 0);
    memcpy((void *)(uintptr_t)dst, src, bytes);
    return CUDA_SUCCESS;
}

CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t bytes)
{
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    CUresult r = check_range(src, bytes, t_current->device, "cuMemcpyDtoH");
    if (r != CUDA_SUCCESS) return r;
    struct standin_range rd = { (void *)(uintptr_t)src, bytes, 0 };
    RUN(NULL, &rd, 1, "cuMemcpyDtoH", 1);
    memcpy(dst, (const void *)(uintptr_t)src, bytes);
    return CUDA_SUCCESS;
}

CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes)
{
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    CUresult r = check_range(dst, bytes, t_current->device, "cuMemcpyDtoD");
    if (r == CUDA_SUCCESS) r = check_range(src, bytes, t_current->device, "cuMemcpyDtoD");
    if (r != CUDA_SUCCESS) return r;
    /* Asynchronous with respect to the host, as on GPUs: it does not order the host's later work. */
    struct standin_range rw[2] = { { (void *)(uintptr_t)src, bytes, 0 }, { (void *)(uintptr_t)dst, bytes, 1 } };
    RUN(NULL, rw, 2, "cuMemcpyDtoD", 0);
    memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, bytes);
    return CUDA_SUCCESS;
}

CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes, void *stream)
{
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    if (!standin_stream_of(stream, t_current->device)) return CUDA_ERROR_INVALID_HANDLE;
    CUresult r = check_range(dst, bytes, t_current->device, "cuMemcpyDtoDAsync");
    if (r == CUDA_SUCCESS) r = check_range(src, bytes, t_current->device, "cuMemcpyDtoDAsync");
    if (r != CUDA_SUCCESS) return r;
    struct standin_range rw[2] = { { (void *)(uintptr_t)src, bytes, 0 }, { (void *)(uintptr_t)dst, bytes, 1 } };
    RUN(stream, rw, 2, "cuMemcpyDtoDAsync", 0);
    memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, bytes);
    return CUDA_SUCCESS;
}

CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char value, size_t count, void *stream)
{
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    if (!standin_stream_of(stream, t_current->device)) return CUDA_ERROR_INVALID_HANDLE;
    CUresult r = check_range(dst, count, t_current->device, "cuMemsetD8Async");
    if (r != CUDA_SUCCESS) return r;
    struct standin_range w = { (void *)(uintptr_t)dst, count, 1 };
    RUN(stream, &w, 1, "cuMemsetD8Async", 0);
    memset((void *)(uintptr_t)dst, value, count);
    return CUDA_SUCCESS;
}

/* On a stream of the destination GPU (the current context's), not serialised with the source GPU's work
   (cuMemcpyPeer would be). */
CUresult cuMemcpyPeerAsync(CUdeviceptr dst, void *dst_context, CUdeviceptr src, void *src_context, size_t bytes,
                           void *stream)
{
    if (!valid_context(dst_context) || !valid_context(src_context) || t_current != dst_context)
        return CUDA_ERROR_INVALID_CONTEXT;
    if (!standin_stream_of(stream, t_current->device)) return CUDA_ERROR_INVALID_HANDLE;
    CUresult r = check_range(dst, bytes, ((struct context *)dst_context)->device, "cuMemcpyPeerAsync");
    if (r == CUDA_SUCCESS) r = check_range(src, bytes, ((struct context *)src_context)->device, "cuMemcpyPeerAsync");
    if (r != CUDA_SUCCESS) return r;
    struct standin_range rw[2] = { { (void *)(uintptr_t)src, bytes, 0 }, { (void *)(uintptr_t)dst, bytes, 1 } };
    RUN(stream, rw, 2, "cuMemcpyPeerAsync", 0);
    memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, bytes);
    return CUDA_SUCCESS;
}

CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t count)
{
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    CUresult r = check_range(dst, count, t_current->device, "cuMemsetD8");
    if (r != CUDA_SUCCESS) return r;
    struct standin_range w = { (void *)(uintptr_t)dst, count, 1 };
    RUN(NULL, &w, 1, "cuMemsetD8", 0);
    memset((void *)(uintptr_t)dst, value, count);
    return CUDA_SUCCESS;
}

/* ---- modules and launches ---- */

/* Reads the PTX's entries: name, number of .param lines, and .maxntid (product) if declared. */
static int parse_ptx(const char *ptx, struct module *m)
{
    if (!strstr(ptx, ".version") || !strstr(ptx, ".target")) return 0;
    for (const char *p = strstr(ptx, ".entry "); p && m->count < MAX_ENTRIES; p = strstr(p + 1, ".entry ")) {
        struct entry *e = &m->entries[m->count];
        const char *name = p + 7, *paren = strchr(name, '(');
        if (!paren || paren - name >= (long)sizeof e->name) return 0;
        memcpy(e->name, name, paren - name);
        e->name[paren - name] = 0;
        const char *close = strchr(paren, ')');
        if (!close) return 0;
        e->params = 0;
        for (const char *q = strstr(paren, ".param"); q && q < close; q = strstr(q + 1, ".param")) e->params++;
        e->maxntid = 0;
        const char *body = strchr(close, '{'), *bound = strstr(close, ".maxntid");
        if (bound && body && bound < body) {
            long x = 1, y = 1, z = 1;
            sscanf(bound, ".maxntid %ld, %ld, %ld", &x, &y, &z);
            e->maxntid = x * y * z;
        }
        m->count++;
    }
    return 1;
}

/* ---- finding the host-grid library of a module ---- */

#define MAX_BUNDLES 256
static char s_bundles[MAX_BUNDLES][4096];
static int s_bundle_count;

static int collect(const char *path, const struct stat *st, int kind, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    size_t n = strlen(path);
    if (kind == FTW_F && n >= 12 && strcmp(path + n - 12, "/kernels.ptx") == 0 && s_bundle_count < MAX_BUNDLES
        && n - 12 < sizeof s_bundles[0]) {
        memcpy(s_bundles[s_bundle_count], path, n - 12);
        s_bundles[s_bundle_count++][n - 12] = 0;
    }
    return 0;
}

static int same_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = strlen(text), i = 0;
    int c, same = 1;
    while (same && (c = fgetc(f)) != EOF) same = i < n && text[i++] == (char)c;
    fclose(f);
    return same && i == n;
}

static int has_entries(void *lib, const struct module *m)
{
    for (int i = 0; i < m->count; i++)
        if (!dlsym(lib, m->entries[i].name)) return 0;
    return 1;
}

static void *grid_library(const char *ptx, const struct module *m)
{
    const char *grid = getenv("MPLC_STANDIN_GRID"), *bundles = getenv("MPLC_STANDIN_BUNDLES");
    if (grid) {
        void *lib = dlopen(grid, RTLD_NOW | RTLD_LOCAL);
        if (!lib) fprintf(stderr, "[cuda stand-in] MPLC_STANDIN_GRID: %s\n", dlerror());
        return lib;
    }
    if (!bundles) {
        fprintf(stderr, "[cuda stand-in] set MPLC_STANDIN_GRID to a host-grid kernel library "
                        "or MPLC_STANDIN_BUNDLES to a folder of bundles\n");
        return NULL;
    }
    pthread_mutex_lock(&s_lock);
    s_bundle_count = 0;
    nftw(bundles, collect, 16, FTW_PHYS);
    void *found = NULL;
    char path[4096 + 32];
    for (int pass = 0; pass < 2 && !found; pass++)
        for (int i = 0; i < s_bundle_count && !found; i++) {
            snprintf(path, sizeof path, "%.4000s/kernels.ptx", s_bundles[i]);
            if (pass == 0 && !same_text(path, ptx)) continue;
            snprintf(path, sizeof path, "%.4000s/libkernels-grid.so", s_bundles[i]);
            void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
            if (lib && has_entries(lib, m)) found = lib;
            else if (lib) dlclose(lib);
        }
    pthread_mutex_unlock(&s_lock);
    if (!found) fprintf(stderr, "[cuda stand-in] no bundle under %s has a host-grid library for this PTX\n", bundles);
    return found;
}

CUresult cuModuleLoadDataEx(void **module, const void *image, unsigned int options, void *option_keys,
                            void *option_values)
{
    (void)option_keys;
    (void)option_values;
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    if (!image || options != 0) return CUDA_ERROR_INVALID_VALUE;
    struct module *m = calloc(1, sizeof *m);
    if (!m) return CUDA_ERROR_OUT_OF_MEMORY;
    if (!parse_ptx(image, m)) {
        free(m);
        return CUDA_ERROR_INVALID_IMAGE;
    }
    m->grid = grid_library(image, m);
    if (!m->grid) {
        free(m);
        return CUDA_ERROR_INVALID_IMAGE;
    }
    m->device = t_current->device;
    *module = m;
    LOG("cuModuleLoadDataEx: %d entries on %d", m->count, m->device);
    return CUDA_SUCCESS;
}

CUresult cuModuleUnload(void *module)
{
    struct module *m = module;
    if (!m) return CUDA_ERROR_INVALID_HANDLE;
    dlclose(m->grid);
    free(m);
    return CUDA_SUCCESS;
}

CUresult cuModuleGetFunction(void **function, void *module, const char *name)
{
    struct module *m = module;
    if (!m) return CUDA_ERROR_INVALID_HANDLE;
    for (int i = 0; i < m->count; i++)
        if (strcmp(m->entries[i].name, name) == 0) {
            if (!m->entries[i].fn) m->entries[i].fn = dlsym(m->grid, name);
            if (!m->entries[i].fn) return CUDA_ERROR_NOT_FOUND;
            *function = &m->entries[i];
            return CUDA_SUCCESS;
        }
    return CUDA_ERROR_NOT_FOUND;
}

CUresult cuLaunchKernel(void *function, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shared_bytes, void *stream, void **params, void **extra)
{
    struct entry *e = function;
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    if (!e || !e->fn) return CUDA_ERROR_INVALID_HANDLE;
    if (extra != NULL || shared_bytes != 0) return CUDA_ERROR_INVALID_VALUE;
    if (!standin_stream_of(stream, t_current->device)) return CUDA_ERROR_INVALID_HANDLE;
    if (!gx || !gy || !gz || !bx || !by || !bz || gy > 65535 || gz > 65535 || (long)bx * by * bz > 1024)
        return CUDA_ERROR_INVALID_VALUE;
    if (e->maxntid && (long)bx * by * bz > e->maxntid) {
        fprintf(stderr, "[cuda stand-in] %s: a block of %u threads, more than its .maxntid of %ld\n",
                e->name, bx * by * bz, e->maxntid);
        return CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES;
    }
    if (e->params > 0 && !params) return CUDA_ERROR_INVALID_VALUE;
    /* The host-grid kernel's argument table: each parameter's 64-bit value (device pointers are host addresses). */
    uint64_t table[64];
    if (e->params > 64) return CUDA_ERROR_INVALID_VALUE;
    for (int i = 0; i < e->params; i++) memcpy(&table[i], params[i], sizeof table[i]);
    /* A parameter within an allocation of this GPU is a pointer the kernel may read or write. */
    struct standin_range ranges[64];
    int n = 0;
    pthread_mutex_lock(&s_lock);
    for (int i = 0; i < e->params; i++)
        if (find((uintptr_t)table[i], 1, t_current->device))
            ranges[n++] = (struct standin_range){ (void *)(uintptr_t)table[i], 1, 2 };
    pthread_mutex_unlock(&s_lock);
    char what[300];
    snprintf(what, sizeof what, "kernel %s", e->name);
    RUN(stream, ranges, n, what, 0);
    LOG("cuLaunchKernel(%s, grid %u,%u,%u, block %u,%u,%u) on %d", e->name, gx, gy, gz, bx, by, bz, t_current->device);
    /* Registers in the runtime's order: ntid.x, ctaid.x, ctaid.y, ctaid.z, nctaid.x. */
    int64_t registers[5] = { bx, 0, 0, 0, gx };
    void (*fn)(void *, int64_t *) = (void (*)(void *, int64_t *))e->fn;
    pthread_mutex_lock(&s_launch);
    for (unsigned z = 0; z < gz; z++)
        for (unsigned y = 0; y < gy; y++)
            for (unsigned x = 0; x < gx; x++) {
                registers[1] = x;
                registers[2] = y;
                registers[3] = z;
                fn(table, registers);
            }
    pthread_mutex_unlock(&s_launch);
    return CUDA_SUCCESS;
}

/* ---- events (streams_standin.c) ---- */

CUresult cuEventCreate(void **event, unsigned int flags)
{
    if (!event || (flags & ~3u) != 0) return CUDA_ERROR_INVALID_VALUE;
    *event = standin_event_create();
    return *event ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

CUresult cuEventRecord(void *event, void *stream)
{
    if (!event) return CUDA_ERROR_INVALID_VALUE;
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    return standin_event_record(event, t_current->device, stream);
}

CUresult cuEventSynchronize(void *event)
{
    return event ? standin_event_synchronize(event) : CUDA_ERROR_INVALID_HANDLE;
}

CUresult cuEventElapsedTime(float *ms, void *start, void *end)
{
    if (!start || !end) return CUDA_ERROR_INVALID_HANDLE;
    double a = standin_event_ms(start), b = standin_event_ms(end);
    if (a < 0 || b < 0) return CUDA_ERROR_INVALID_HANDLE;
    *ms = (float)(b - a);
    return CUDA_SUCCESS;
}

CUresult cuEventDestroy_v2(void *event)
{
    standin_event_destroy(event);
    return CUDA_SUCCESS;
}

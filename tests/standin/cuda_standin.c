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
 *   - launches and copies run at once, after the NCCL operations queued on the GPU (standin.h); events read a
 *     monotonic clock.
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
};

#define MAX_DEVICES 16
#define MAX_ENTRIES 4096

struct context { int device; int retained; };
struct allocation { uintptr_t base; size_t bytes; int device; struct allocation *next; };
struct entry { char name[256]; int params; long maxntid; void *fn; };
struct module { int device; void *grid; int count; struct entry entries[MAX_ENTRIES]; };
struct event { double ms; };

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
    default: return "unknown error";
    }
}

CUresult cuGetErrorString(CUresult error, const char **text) { *text = error_text(error); return CUDA_SUCCESS; }

/* ---- streams (standin.h) ---- */

static pthread_mutex_t s_stream_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_stream_changed = PTHREAD_COND_INITIALIZER;
static int s_queued[MAX_DEVICES];
static char s_failure[MAX_DEVICES][256];

int standin_timeout(void)
{
    const char *t = getenv("MPLC_STANDIN_TIMEOUT");
    return t && atoi(t) > 0 ? atoi(t) : 60;
}

void standin_enqueue(int device)
{
    pthread_mutex_lock(&s_stream_lock);
    s_queued[device]++;
    pthread_mutex_unlock(&s_stream_lock);
}

void standin_complete(int device, const char *failure)
{
    pthread_mutex_lock(&s_stream_lock);
    s_queued[device]--;
    if (failure && !s_failure[device][0]) snprintf(s_failure[device], sizeof s_failure[device], "%s", failure);
    pthread_cond_broadcast(&s_stream_changed);
    pthread_mutex_unlock(&s_stream_lock);
}

int standin_current_device(void) { return t_current ? t_current->device : -1; }

int standin_wait(int device)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += standin_timeout();
    int r = 0;
    for (;;) {
        /* Operations whose other members are in other processes complete only when polled. */
        int polling = standin_progress();
        pthread_mutex_lock(&s_stream_lock);
        if (s_queued[device] == 0) break;
        struct timespec now, until;
        clock_gettime(CLOCK_REALTIME, &now);
        until = now;
        if (polling) {
            until.tv_nsec += 2000000;
            if (until.tv_nsec >= 1000000000) { until.tv_sec++; until.tv_nsec -= 1000000000; }
        } else until = deadline;
        if (until.tv_sec > deadline.tv_sec || (until.tv_sec == deadline.tv_sec && until.tv_nsec > deadline.tv_nsec))
            until = deadline;
        pthread_cond_timedwait(&s_stream_changed, &s_stream_lock, &until);
        if (s_queued[device] == 0) break;
        clock_gettime(CLOCK_REALTIME, &now);
        if (now.tv_sec > deadline.tv_sec || (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec)) {
            fprintf(stderr,
                    "[cuda stand-in] GPU %d waited %d s for NCCL work queued on it: "
                    "another member of its communicator never made its call\n",
                    device, standin_timeout());
            r = 1;
            break;
        }
        pthread_mutex_unlock(&s_stream_lock);
    }
    if (s_failure[device][0]) {
        fprintf(stderr, "[cuda stand-in] GPU %d: %s\n", device, s_failure[device]);
        s_failure[device][0] = 0;
        r = 1;
    }
    pthread_mutex_unlock(&s_stream_lock);
    return r;
}

/* Work on the current GPU's stream starts after what is queued there. */
#define AFTER_QUEUED(device) do { if (standin_wait(device)) return CUDA_ERROR_LAUNCH_TIMEOUT; } while (0)

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
    AFTER_QUEUED(t_current->device);
    return CUDA_SUCCESS;
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
    *pointer = (CUdeviceptr)(uintptr_t)p;
    LOG("cuMemAlloc(%zu) on %d = 0x%llx", bytes, device, *pointer);
    return CUDA_SUCCESS;
}

CUresult cuMemFree_v2(CUdeviceptr pointer)
{
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    AFTER_QUEUED(t_current->device);
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
    AFTER_QUEUED(t_current->device);
    CUresult r = check_range(dst, bytes, t_current->device, "cuMemcpyHtoD");
    if (r == CUDA_SUCCESS) memcpy((void *)(uintptr_t)dst, src, bytes);
    return r;
}

CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t bytes)
{
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    AFTER_QUEUED(t_current->device);
    CUresult r = check_range(src, bytes, t_current->device, "cuMemcpyDtoH");
    if (r == CUDA_SUCCESS) memcpy(dst, (const void *)(uintptr_t)src, bytes);
    return r;
}

CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes)
{
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    AFTER_QUEUED(t_current->device);
    CUresult r = check_range(dst, bytes, t_current->device, "cuMemcpyDtoD");
    if (r == CUDA_SUCCESS) r = check_range(src, bytes, t_current->device, "cuMemcpyDtoD");
    if (r == CUDA_SUCCESS) memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, bytes);
    return r;
}

/* On the destination's stream (the current context's default stream; no other here), not serialised with the
   source GPU's work (cuMemcpyPeer would be). */
CUresult cuMemcpyPeerAsync(CUdeviceptr dst, void *dst_context, CUdeviceptr src, void *src_context, size_t bytes,
                           void *stream)
{
    if (stream != NULL) return CUDA_ERROR_INVALID_VALUE;
    if (!valid_context(dst_context) || !valid_context(src_context) || t_current != dst_context)
        return CUDA_ERROR_INVALID_CONTEXT;
    AFTER_QUEUED(((struct context *)dst_context)->device);
    CUresult r = check_range(dst, bytes, ((struct context *)dst_context)->device, "cuMemcpyPeerAsync");
    if (r == CUDA_SUCCESS) r = check_range(src, bytes, ((struct context *)src_context)->device, "cuMemcpyPeerAsync");
    if (r == CUDA_SUCCESS) memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, bytes);
    return r;
}

CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t count)
{
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    AFTER_QUEUED(t_current->device);
    CUresult r = check_range(dst, count, t_current->device, "cuMemsetD8");
    if (r == CUDA_SUCCESS) memset((void *)(uintptr_t)dst, value, count);
    return r;
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
    if (stream != NULL || extra != NULL || shared_bytes != 0) return CUDA_ERROR_INVALID_VALUE;
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
    AFTER_QUEUED(t_current->device);
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

/* ---- events ---- */

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

CUresult cuEventCreate(void **event, unsigned int flags)
{
    (void)flags;
    struct event *e = calloc(1, sizeof *e);
    if (!e) return CUDA_ERROR_OUT_OF_MEMORY;
    e->ms = -1;
    *event = e;
    return CUDA_SUCCESS;
}

CUresult cuEventRecord(void *event, void *stream)
{
    if (!event || stream) return CUDA_ERROR_INVALID_VALUE;
    if (!t_current) return CUDA_ERROR_INVALID_CONTEXT;
    AFTER_QUEUED(t_current->device);
    ((struct event *)event)->ms = now_ms();
    return CUDA_SUCCESS;
}

CUresult cuEventSynchronize(void *event) { return event ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE; }

CUresult cuEventElapsedTime(float *ms, void *start, void *end)
{
    struct event *a = start, *b = end;
    if (!a || !b) return CUDA_ERROR_INVALID_HANDLE;
    if (a->ms < 0 || b->ms < 0) return CUDA_ERROR_INVALID_HANDLE;
    *ms = (float)(b->ms - a->ms);
    return CUDA_SUCCESS;
}

CUresult cuEventDestroy_v2(void *event)
{
    free(event);
    return CUDA_SUCCESS;
}

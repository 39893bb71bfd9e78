#define _GNU_SOURCE
#include "cplatform.h"
#include <stdio.h>
#include <string.h>

void cplatform_line_buffer_stdout(void) { setvbuf(stdout, NULL, _IOLBF, 0); }

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned long long xgetbv0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

ccpu_features ccpu_read(void) {
    ccpu_features f;
    memset(&f, 0, sizeof f);
    unsigned int a, b, c, d, maxLeaf;
    if (!__get_cpuid(0, &maxLeaf, &b, &c, &d)) return f;
    f.vendorAMD = (b == 0x68747541); /* "Auth" of AuthenticAMD */
    __cpuid(1, a, b, c, d);
    f.sse42 = (c >> 20) & 1;
    f.fma = (c >> 12) & 1;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (osxsave) {
        unsigned long long xcr0 = xgetbv0();
        f.osYMM = (xcr0 & 0x6) == 0x6;
        f.osZMM = f.osYMM && (xcr0 & 0xE0) == 0xE0;
    }
    f.avx = avx && f.osYMM;
    f.fma = f.fma && f.osYMM;
    if (maxLeaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f.avx2 = ((b >> 5) & 1) && f.osYMM;
        f.avx512f = ((b >> 16) & 1) && f.osZMM;
        f.avx512dq = ((b >> 17) & 1) && f.osZMM;
        f.avx512bw = ((b >> 30) & 1) && f.osZMM;
        f.avx512vl = ((b >> 31) & 1) && f.osZMM;
        f.avx512vbmi = ((c >> 1) & 1) && f.osZMM;
        f.bmi2 = (b >> 8) & 1;
        f.amxBF16 = (d >> 22) & 1;
        f.amxTile = (d >> 24) & 1;
        unsigned int subleaves = a;
        if (subleaves >= 1) {
            __cpuid_count(7, 1, a, b, c, d);
            f.avx512bf16 = ((a >> 5) & 1) && f.osZMM;
        }
    }
    return f;
}
#else
ccpu_features ccpu_read(void) {
    ccpu_features f;
    memset(&f, 0, sizeof f);
    return f;
}
#endif

/* ---- Result regions (Linux) ---- */

#if defined(__linux__)
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int cplatform_region_create(size_t size, void **mapping) {
    int fd = memfd_create("shardtrain-results", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -1;
    if (ftruncate(fd, (off_t)size) != 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    *mapping = p;
    return fd;
}

void *cplatform_region_map(int pid, int fd, size_t size, const char **why) {
    char path[64], target[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", pid, fd);
    /* O_PATH first: the path may name anything (a device, a file on a hung network mount), and only a memfd is
     * opened for reading, through this process's own descriptor. */
    int handle = open(path, O_PATH | O_CLOEXEC);
    if (handle < 0) { *why = "cannot open it"; return NULL; }
    snprintf(path, sizeof path, "/proc/self/fd/%d", handle);
    ssize_t length = readlink(path, target, sizeof target - 1);
    if (length < 0 || (target[length] = 0, strncmp(target, "/memfd:", 7) != 0)) {
        close(handle);
        *why = "not a memfd";
        return NULL;
    }
    int mine = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    close(handle);
    if (mine < 0) { *why = "cannot open it"; return NULL; }
    struct stat st;
    void *p = NULL;
    int seals = fcntl(mine, F_GET_SEALS);
    if (fstat(mine, &st) != 0 || !S_ISREG(st.st_mode)) *why = "not a regular file";
    else if (st.st_uid != geteuid()) *why = "owned by another user";
    else if ((size_t)st.st_size != size) *why = "of the wrong size";
    else if (seals < 0 || !(seals & F_SEAL_SHRINK)) *why = "not a sealed memfd";
    else {
        p = mmap(NULL, size, PROT_READ, MAP_SHARED, mine, 0);
        if (p == MAP_FAILED) { p = NULL; *why = "cannot map it"; }
    }
    close(mine);
    return p;
}

void cplatform_region_unmap(void *mapping, size_t size) { munmap(mapping, size); }
#else
int cplatform_region_create(size_t size, void **mapping) { (void)size; (void)mapping; return -1; }
void *cplatform_region_map(int pid, int fd, size_t size, const char **why) {
    (void)pid; (void)fd; (void)size; *why = "not supported here"; return 0;
}
void cplatform_region_unmap(void *mapping, size_t size) { (void)mapping; (void)size; }
#endif

int ccpu_vector_level(void) {
#if defined(__x86_64__)
    ccpu_features f = ccpu_read();
    if (f.avx512f && f.avx512dq && f.avx512vl && f.avx512bw) return 2;
    if (f.avx2) return 1;
#endif
    return 0;
}

int ccpu_level_get(int *slot) {
    int current = __atomic_load_n(slot, __ATOMIC_RELAXED);
    if (current < 0) {
        current = ccpu_vector_level();
        __atomic_store_n(slot, current, __ATOMIC_RELAXED);
    }
    return current;
}

int ccpu_level_use(int *slot, int wanted) {
    if (wanted < 0 || wanted > ccpu_vector_level()) return 0;
    __atomic_store_n(slot, wanted, __ATOMIC_RELAXED);
    return 1;
}

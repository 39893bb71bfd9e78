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

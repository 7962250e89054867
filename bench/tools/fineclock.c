/* fineclock.so: LD_PRELOAD shim for sipp. sipp reads CLOCK_*_COARSE, whose
 * resolution is one kernel tick (4 ms at HZ=250), so every response time it
 * reports is a multiple of 4 ms. This shim serves the coarse clocks from the
 * fine ones, so that sipp's millisecond figures have 1 ms resolution. It
 * changes nothing else; bench/run.sh uses it for every sipp it starts (all
 * paths alike) when a C compiler is available (FINECLOCK=0 turns it off). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <time.h>

typedef int (*clock_fn)(clockid_t, struct timespec *);

int clock_gettime(clockid_t id, struct timespec *ts) {
    static clock_fn real;
    if (!real)
        real = (clock_fn)dlsym(RTLD_NEXT, "clock_gettime");
    if (id == CLOCK_MONOTONIC_COARSE)
        id = CLOCK_MONOTONIC;
    else if (id == CLOCK_REALTIME_COARSE)
        id = CLOCK_REALTIME;
    return real(id, ts);
}

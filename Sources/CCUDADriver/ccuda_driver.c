// Declarations of the driver API and NVRTC only (include/CCUDADriver.h): HPSCUDA resolves every entry point
// with dlsym at run time. The one helper here asks the dynamic linker where a library was loaded from.
#define _GNU_SOURCE
#include <dlfcn.h>
#include "CCUDADriver.h"

const char *hps_loaded_library_path(const void *symbol) {
    Dl_info info;
    if (symbol == NULL || dladdr(symbol, &info) == 0) return NULL;
    return info.dli_fname;
}

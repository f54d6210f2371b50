#ifndef HPS_CHIREDIS_SHIM_H
#define HPS_CHIREDIS_SHIM_H

// The hiredis blocking client, as installed by Debian's libhiredis-dev (0.14). Only HPSRedis's
// HiredisNative.swift calls into it.
#include <hiredis/hiredis.h>

#endif

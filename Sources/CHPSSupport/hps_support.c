// The helpers are header-only (static inline); this file gives the target a translation unit.
#include "hps_support.h"

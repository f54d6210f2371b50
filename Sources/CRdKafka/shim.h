#ifndef HPS_CRDKAFKA_SHIM_H
#define HPS_CRDKAFKA_SHIM_H

// The librdkafka C API and its mock cluster, as installed by Debian's librdkafka-dev (2.0). Only HPSKafka's
// files call into it.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#endif

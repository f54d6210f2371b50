/*
 * hps.h — the C API of the hierarchical parameter server (libhps.so).
 *
 * A server is built from an HPS JSON configuration (the same ps.json the TensorFlow plugin reads): it
 * creates the configured databases, loads every table and makes a lookup session per model and deployed
 * device. A session answers lookups of one model on one device through the whole hierarchy:
 *
 *   device cache (GPU or CPU) -> volatile database -> persistent database -> default value
 *
 * Threads: every function may be called from any thread. Many threads may look up through one session at
 * once. Handles are opaque; a handle that was destroyed (or never created) is rejected with
 * HPS_ERROR_INVALID_ARGUMENT, never dereferenced.
 *
 * Errors: every function that can fail returns 0 (HPS_OK) or one of the hps_status codes below and then
 * sets this thread's message, read with hps_last_error(). No function aborts the process; on error no
 * output is half-written as if it were an answer (a failed lookup leaves `out` unspecified and says so).
 *
 * Memory: HPS_MEMORY_HOST lookups take keys and write vectors in host memory and return when the vectors
 * are written. HPS_MEMORY_DEVICE lookups take keys and write vectors in the device memory of the session's
 * CUDA device; the work is enqueued on `cuda_stream` (a CUstream / cudaStream_t of that device's primary
 * context) and may still be running when the call returns: synchronize the stream before reading `out`.
 * With cuda_stream == NULL a device lookup runs on the session's own stream and is complete on return.
 * Device keys are deduplicated and queried on the GPU; only the keys the GPU cache misses cross to the host,
 * are fetched from the databases, and cross back once.
 *
 * Versioning: HPS_API_VERSION is 10000 * major + 100 * minor + patch of this header; hps_api_version()
 * returns the library's. A library answers every call of a header with the same major version.
 */
#ifndef HPS_H
#define HPS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HPS_API_VERSION_MAJOR 1
#define HPS_API_VERSION_MINOR 1
#define HPS_API_VERSION_PATCH 0
#define HPS_API_VERSION (HPS_API_VERSION_MAJOR * 10000 + HPS_API_VERSION_MINOR * 100 + HPS_API_VERSION_PATCH)

typedef struct hps_server hps_server;
typedef struct hps_session hps_session;

/* Where the keys and vectors of a lookup live. */
enum { HPS_MEMORY_HOST = 0, HPS_MEMORY_DEVICE = 1 };

/* Return codes. hps_last_error() names the model, table, argument or file concerned. */
typedef enum hps_status {
    HPS_OK = 0,
    HPS_ERROR_INVALID_ARGUMENT = 1, /* a NULL or dead handle, a NULL pointer, a negative count, bad memory kind */
    HPS_ERROR_CONFIG = 2,           /* the configuration file is unreadable or invalid (every problem listed) */
    HPS_ERROR_TABLE_FILES = 3,      /* a table directory named by the configuration is missing or malformed */
    HPS_ERROR_UNKNOWN_MODEL = 4,    /* no model of that name in the configuration */
    HPS_ERROR_UNKNOWN_TABLE = 5,    /* table index out of range for the model */
    HPS_ERROR_TOO_MANY_KEYS = 6,    /* count > max_batch_size x maxnum_catfeature_query_per_table_per_sample */
    HPS_ERROR_KEY_WIDTH = 7,        /* int64 keys with supportlonglong false, or int32 keys with it true */
    HPS_ERROR_NO_DEVICE = 8,        /* device not in deployed_device_list, or device memory with no CUDA device */
    HPS_ERROR_CUDA = 9,             /* a CUDA call failed (the message carries the driver's error) */
    HPS_ERROR_DATABASE = 10,        /* a database backend failed */
    HPS_ERROR_BUSY = 11,            /* hps_server_destroy with live sessions (the server is freed with the last one) */
    HPS_ERROR_KAFKA = 12,           /* a Kafka client failed or the brokers did not acknowledge every message */
    HPS_ERROR_INTERNAL = 99         /* anything else; the message says what */
} hps_status;

/* The library's version as "major.minor.patch" (static storage). */
const char *hps_version(void);
/* The library's HPS_API_VERSION. */
int hps_api_version(void);

/* The message of the last failed call on this thread ("" when none); valid until the thread's next failing
 * call. */
const char *hps_last_error(void);
/* A fixed description of a status code (static storage). */
const char *hps_status_string(int status);

/* Builds a server from the HPS JSON configuration at config_path: databases, tables, caches and a session
 * per model and deployed device. Loading can take long for large tables. On success *out holds the server. */
int hps_server_create(const char *config_path, hps_server **out);
/* Releases the server. With sessions still alive it returns HPS_ERROR_BUSY, and the server stays alive until
 * the last session is destroyed (those sessions keep working); the handle is released either way. */
int hps_server_destroy(hps_server *server);
/* Number of models, and the name of model `index` (owned by the server). */
int hps_model_count(const hps_server *server);
const char *hps_model_name(const hps_server *server, int index);

/* A session of `model` on `device` (an entry of the model's deployed_device_list). Sessions keep their server
 * alive. Destroying a session does not stop lookups another thread has in flight on it from completing. */
int hps_session_create(hps_server *server, const char *model, int device, hps_session **out);
void hps_session_destroy(hps_session *session);

/* Number of tables of the session's model, or -1 (with hps_last_error) for a bad handle. */
int hps_table_count(const hps_session *session);
/* Floats per vector of `table`, or -1 (with hps_last_error). */
int hps_table_dimension(const hps_session *session, int table);
/* Most keys one lookup of `table` takes (max_batch_size x maxnum_catfeature_query_per_table_per_sample),
 * or -1 (with hps_last_error). */
int64_t hps_table_max_keys(const hps_session *session, int table);
/* The table's name from the configuration (owned by the session), or NULL (with hps_last_error). */
const char *hps_table_name(const hps_session *session, int table);
/* 1 when the session's caches live on a CUDA device and device-memory lookups are served there, else 0;
 * -1 for a bad handle. Device-memory lookups also work on a CPU-cached session of a GPU machine (the keys are
 * copied to the host once). */
int hps_session_on_gpu(const hps_session *session);
/* Whether keys are int64 (1: supportlonglong true) or int32 (0). -1 for a bad handle. */
int hps_session_int64_keys(const hps_session *session);

/* Looks up `count` int64 keys of `table` and writes count x dim floats to `out` in input order (duplicates
 * allowed; keys found in no tier get the table's default value). `memory` is HPS_MEMORY_HOST or
 * HPS_MEMORY_DEVICE (then `keys` and `out` are device pointers of the session's device, and the work runs on
 * `cuda_stream`, or the session's own stream when NULL). count == 0 does nothing. */
int hps_lookup(hps_session *session, int table, const int64_t *keys, int64_t count, float *out, int memory, void *cuda_stream);
/* The same for int32 keys (models with supportlonglong false; the keys are read as uint32). */
int hps_lookup_i32(hps_session *session, int table, const int32_t *keys, int64_t count, float *out, int memory, void *cuda_stream);

/* Looks up the keys of several tables in one call: counts[j] keys of table tables[j] (j < num_tables), the
 * tables' keys one after another in `keys` (tables[0]'s first), and writes their vectors one table after
 * another to `out` (counts[j] x dim(tables[j]) floats each, in input order), as num_tables hps_lookup calls
 * would. With fuse_embedding_table, the tables of one fused group (same vector size and default value) are
 * answered in one pass through their shared cache and database table (host memory; device memory looks the
 * tables up one after another). A table may appear more than once. Each counts[j] is limited as in
 * hps_lookup (HPS_ERROR_TOO_MANY_KEYS). */
int hps_lookup_tables(hps_session *session, int num_tables, const int *tables, const int64_t *counts, const int64_t *keys, float *out,
                      int memory, void *cuda_stream);
/* The same for int32 keys (models with supportlonglong false; the keys are read as uint32). */
int hps_lookup_tables_i32(hps_session *session, int num_tables, const int *tables, const int64_t *counts, const int32_t *keys, float *out,
                          int memory, void *cuda_stream);

/* Counters of the server since it was built (all models): lookups, keys, distinct keys, cache hits and misses,
 * keys answered by the volatile and persistent databases and by the default value. Any pointer may be NULL. */
typedef struct hps_statistics {
    int64_t lookups, keys, unique_keys, cache_hits, cache_misses, volatile_hits, persistent_hits, defaults;
} hps_statistics;
int hps_server_statistics(const hps_server *server, hps_statistics *out);

/* Waits until the background inserts of every session (hit_rate_threshold below 1) are done. */
int hps_server_wait(hps_server *server);

/* Online updates (since 1.1). Publishes `count` rows of table `table` of model `model` to Kafka (`brokers`:
 * "host:port[,host:port...]") in HPS's update format (topic hps_et.<model>.<table>, keys grouped by HPS's
 * partition mixer into 8 groups, one Kafka partition per group), so serving processes with an update_source
 * take them into their databases and caches. `keys`: count int64 keys; `vectors`: count x dim floats,
 * row-major. Waits up to `timeout_ms` for the brokers to acknowledge every message; `delivered` (may be
 * NULL) receives the rows acknowledged, also on failure. HPS_ERROR_KAFKA when a message was refused or the
 * wait timed out; HPS_ERROR_INVALID_ARGUMENT for a bad name, pointer, count or dimension. */
int hps_publish(const char *brokers, const char *model, const char *table, const int64_t *keys, int64_t count,
                const float *vectors, int dim, int timeout_ms, int64_t *delivered);

#ifdef __cplusplus
}
#endif

#endif /* HPS_H */

/*
 * Looks keys up through the hierarchical parameter server's C API and prints one line per key.
 *
 *   cc -Iinclude examples/c/lookup.c -L<dir of libhps.so> -lhps -Wl,-rpath,<that dir> -o lookup
 *   ./lookup ps.json MODEL TABLE_INDEX KEY [KEY ...]
 *
 * Each line is "key: v0 v1 ..." with every float printed with 9 significant digits (%.9g), which parses back
 * to the identical float32. Exits 0 on success, else prints hps_last_error() and exits with the status code.
 */
#include <hps.h>
#include <stdio.h>
#include <stdlib.h>

static int fail(const char *what, int status) {
    fprintf(stderr, "%s failed (%d, %s): %s\n", what, status, hps_status_string(status), hps_last_error());
    return status;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s CONFIG MODEL TABLE KEY [KEY ...]\n", argv[0]);
        return 2;
    }
    printf("libhps %s (API %d)\n", hps_version(), hps_api_version());
    hps_server *server = NULL;
    int status = hps_server_create(argv[1], &server);
    if (status != HPS_OK) return fail("hps_server_create", status);

    hps_session *session = NULL;
    status = hps_session_create(server, argv[2], 0, &session);
    if (status != HPS_OK) {
        hps_server_destroy(server);
        return fail("hps_session_create", status);
    }
    int table = atoi(argv[3]);
    int dim = hps_table_dimension(session, table);
    if (dim < 0) {
        status = fail("hps_table_dimension", HPS_ERROR_UNKNOWN_TABLE);
    } else {
        int64_t count = argc - 4;
        float *out = malloc(sizeof(float) * (size_t)(count * dim));
        if (hps_session_int64_keys(session) == 1) {
            int64_t *keys = malloc(sizeof(int64_t) * (size_t)count);
            for (int64_t i = 0; i < count; i++) keys[i] = strtoll(argv[4 + i], NULL, 10);
            status = hps_lookup(session, table, keys, count, out, HPS_MEMORY_HOST, NULL);
            free(keys);
        } else {
            int32_t *keys = malloc(sizeof(int32_t) * (size_t)count);
            for (int64_t i = 0; i < count; i++) keys[i] = (int32_t)strtoll(argv[4 + i], NULL, 10);
            status = hps_lookup_i32(session, table, keys, count, out, HPS_MEMORY_HOST, NULL);
            free(keys);
        }
        if (status != HPS_OK) {
            fail("hps_lookup", status);
        } else {
            printf("table %s, dim %d\n", hps_table_name(session, table), dim);
            for (int64_t i = 0; i < count; i++) {
                printf("%s:", argv[4 + i]);
                for (int d = 0; d < dim; d++) printf(" %.9g", out[i * dim + d]);
                printf("\n");
            }
        }
        free(out);
    }
    hps_session_destroy(session);
    hps_server_destroy(server);
    return status;
}

#ifndef HPS_CROCKSDB_SHIM_H
#define HPS_CROCKSDB_SHIM_H

// The RocksDB C API, as installed by Debian's librocksdb-dev (7.8). Only HPSRocksDB's
// RocksDBNative.swift calls into it.
#include <rocksdb/c.h>

#endif

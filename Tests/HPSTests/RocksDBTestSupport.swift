import HPS
import HPSRocksDB

/// A RocksDB configuration for tests: few threads, a given batch size.
func rocksConfig(_ path: String, readOnly: Bool = false, maxBatchSize: Int = 65536) -> PersistentDatabaseConfig {
    var config = PersistentDatabaseConfig()
    config.type = .rocksDB
    config.path = path
    config.numThreads = 2
    config.readOnly = readOnly
    config.maxBatchSize = maxBatchSize
    return config
}

/// Opens a RocksDB database at `path` with a silent logger.
func openRocks(_ path: String, readOnly: Bool = false, maxBatchSize: Int = 65536) throws -> RocksDBDatabase {
    try RocksDBDatabase(config: rocksConfig(path, readOnly: readOnly, maxBatchSize: maxBatchSize), logger: .silent)
}

/// A shared volatile database (Redis) outlives the processes that fill it. A process that loads a table
/// completely records which files it loaded (``LoadedTableRecord``), how many rows it meant to write
/// (`initial_cache_rate`) and how many entries the table then held. The next process to start with the
/// same files does not write the table again — the rule the persistent database follows — as long as the
/// table still holds that many entries (a node that lost its data, or an eviction, makes it write again).
struct SharedVolatileRecord: Equatable {
    var loaded: LoadedTableRecord
    /// Rows the load wrote (`ceil(initial_cache_rate × rows)`).
    var rows: Int
    /// Entries the table held right after the load.
    var size: Int

    /// The stored form: `<size> <rows> <content>|<stamp>`.
    var text: String { "\(size) \(rows) \(loaded.text)" }

    init(loaded: LoadedTableRecord, rows: Int, size: Int) {
        self.loaded = loaded
        self.rows = rows
        self.size = size
    }

    init?(_ text: String) {
        let parts = text.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, let size = Int(parts[0]), let rows = Int(parts[1]), let loaded = LoadedTableRecord(String(parts[2])) else { return nil }
        self.init(loaded: loaded, rows: rows, size: size)
    }
}

extension TierChain {
    /// Whether `vdb` holds the table of `source` as a complete earlier load left it. Any failure to
    /// tell (a node down, no record) means no: the table is written.
    func sharedVolatileHolds(_ vdb: any Database, source: LoadSource, tag: String) -> Bool {
        guard let text = try? vdb.loadedFingerprint(table: tag), let stored = SharedVolatileRecord(text),
            stored.rows == volatileRowLimit(rows: source.rowCount),
            let size = try? vdb.size(table: tag), size == stored.size,
            let stamp = try? source.fileStamp()
        else { return false }
        if stored.loaded.stamp == stamp { return true }
        guard let content = try? source.fingerprint() else { return false }
        return stored.loaded.content == content
    }

    /// Records a complete load of the table of `source` into `vdb` (best effort: without a record the
    /// next start writes the table again).
    func recordSharedVolatileLoad(_ vdb: any Database, source: LoadSource, tag: String, contentFingerprint: String?) {
        do {
            let stamp = try source.fileStamp()
            let content = try contentFingerprint ?? source.fingerprint()
            let record = SharedVolatileRecord(
                loaded: LoadedTableRecord(content: content, stamp: stamp), rows: volatileRowLimit(rows: source.rowCount),
                size: try vdb.size(table: tag))
            try vdb.recordLoadedFingerprint(record.text, table: tag)
        } catch {
            logger.warning("Table \(tag): cannot record the load in \(vdb.name) (the next start writes the table again): \(error)")
        }
    }
}

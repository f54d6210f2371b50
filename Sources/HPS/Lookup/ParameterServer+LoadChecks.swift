extension ParameterServer {
    /// Rows of a table of `rows` rows that go into the volatile database at startup:
    /// `ceil(initial_cache_rate × rows)`.
    func volatileRowLimit(rows: Int) -> Int { tiers.volatileRowLimit(rows: rows) }

    /// Warns, naming the key file and one repeated key, when a database that took every row of the table
    /// (and had room for all of them) holds fewer rows than the file: the file repeats keys, and the later
    /// row of each repeated key is the one served. Reads the key file again only in that case.
    func warnAboutDuplicateKeys(_ source: LoadSource, tag: String, loadedInto targets: [any Database]) throws {
        let rows = source.rowCount
        for db in targets {
            if let vdb = volatileDatabase, db === vdb, volatileRowLimit(rows: rows) < rows { continue }
            guard db.capacity(table: tag) >= rows, let size = try? db.size(table: tag), size < rows else { continue }
            // Keys of different tables of a fused group never collide (they are tagged): look in each file.
            for (_, directory) in source.members {
                let scan = try directory.scanKeys(keyWidth: keyWidth)
                guard let first = scan.firstDuplicate else { continue }
                logger.warning(
                    "Table \(tag): \(directory.keyFile) holds \(scan.duplicateCount) duplicate key(s), e.g. key \(first.key) again at row \(first.row); "
                        + "the later row of each repeated key is served")
            }
            return
        }
    }
}

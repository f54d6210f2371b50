extension ParameterServerConfig {
    /// Reads the key file of every local table once and reports what only the keys show: with
    /// `supportlonglong: false`, a key outside `0 ... 2^32 - 1` is an issue naming the key file, the row
    /// and the key; a key file that repeats keys gets a warning naming the file and one repeated key.
    ///
    /// Streams each key file (see ``TableDirectory/scanKeys(keyWidth:maxKeysInMemory:)``). Tables whose
    /// directories do not open are skipped: ``load(path:checkFiles:)`` reports those.
    /// - Returns: the issues (JSON path of the table's `sparse_files` entry and the reason) and the warnings.
    public func checkTableKeys() -> (issues: [ConfigValidationError.Issue], warnings: [String]) {
        var issues: [ConfigValidationError.Issue] = []
        var warnings: [String] = []
        let width = KeyWidth(supportLongLong: supportLongLong)
        for (m, model) in models.enumerated() {
            for table in model.tables where !table.path.isEmpty && !table.path.contains("://") {
                let path = "models[\(m)].sparse_files[\(table.index)]"
                guard let directory = try? TableDirectory(path: table.path, dimension: table.dimension) else { continue }
                do {
                    let scan = try directory.scanKeys(keyWidth: width)
                    if let first = scan.firstDuplicate {
                        warnings.append(
                            "\(path): \(directory.keyFile) holds \(scan.duplicateCount) duplicate key(s), e.g. key \(first.key) again at row \(first.row); the later row of each repeated key is served")
                    }
                } catch let error as HPSError {
                    issues.append(.init(path: path, message: (error.subject.map { "\($0): " } ?? "") + error.message))
                } catch {
                    issues.append(.init(path: path, message: "\(error)"))
                }
            }
        }
        return (issues, warnings)
    }
}

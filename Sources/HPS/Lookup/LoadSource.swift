/// The table files that fill one database table: one table's directory, or the directories of every table
/// of a fused group (``TableFusion``), whose keys are tagged on the way in. Its ``fileStamp()`` and
/// ``fingerprint()`` make the ``LoadedTableRecord`` a database keeps of the table files it holds.
public struct LoadSource: Sendable {
    /// The database table filled: its tag and value size.
    public let table: TableConfig
    /// The tables read, in member order, with their directories.
    public let members: [(table: TableConfig, directory: TableDirectory)]
    /// The tagging of the members' keys, nil for a single table.
    public let keySpace: FusedKeySpace?

    /// The table files of `group`, whose members index `tables` (the model's tables).
    /// - Throws: ``HPSError`` from opening a member's ``TableDirectory`` (`.io`, `.invalidTable` naming the file).
    public init(group: TableFusion.Group, tables: [TableConfig]) throws {
        table = group.table
        members = try group.members.map { t in (tables[t], try TableDirectory(path: tables[t].path, dimension: tables[t].dimension)) }
        keySpace = group.keySpace
    }

    /// Rows of every member.
    public var rowCount: Int { members.reduce(0) { $0 + $1.directory.rowCount } }

    /// The members' file stamps (one table: its own ``TableDirectory/fileStamp()``).
    /// - Throws: what ``TableDirectory/fileStamp()`` throws for a member.
    public func fileStamp() throws -> String {
        guard keySpace != nil else { return try members[0].directory.fileStamp() }
        return try members.map { try $0.directory.fileStamp() }.joined(separator: ";")
    }

    /// The members' content fingerprints and the key tagging (one table: its own ``TableDirectory/fingerprint()``).
    /// - Throws: what ``TableDirectory/fingerprint()`` throws for a member.
    public func fingerprint() throws -> String {
        guard let keySpace else { return try members[0].directory.fingerprint() }
        let contents = try members.map { try $0.directory.fingerprint() }.joined(separator: ";")
        return "hpst-fused:\(keySpace.keyWidth == .int64 ? "i64" : "u32"):\(keySpace.keyBits):\(contents)"
    }

    /// Streams every member's rows (keys tagged) as ``TableDirectory/forEachChunk(maxRows:keyWidth:progress:_:)``
    /// does, with progress over all members.
    /// - Throws: as `forEachChunk`; ``HPSError`` `invalidTable` naming the table, its key file and the key when an
    ///   int64 key does not fit the fused key space.
    public func forEachChunk(
        maxRows: Int, keyWidth: KeyWidth, progress: ((Int, Int) -> Void)?,
        _ body: (UnsafeBufferPointer<Int64>, UnsafeBufferPointer<Float>) throws -> Void
    ) throws {
        guard let keySpace else {
            try members[0].directory.forEachChunk(maxRows: maxRows, keyWidth: keyWidth, progress: progress, body)
            return
        }
        let total = rowCount
        var done = 0
        let tagged = UnsafeMutableBufferPointer<Int64>.allocate(capacity: max(1, maxRows))
        defer { tagged.deallocate() }
        for (m, member) in members.enumerated() {
            try member.directory.forEachChunk(maxRows: maxRows, keyWidth: keyWidth, progress: { rows, _ in progress?(done + rows, total) }) { keys, vectors in
                try keySpace.tag(keys, member: m, table: member.table, file: member.directory.keyFile, into: tagged.baseAddress!)
                try body(UnsafeBufferPointer(start: tagged.baseAddress, count: keys.count), vectors)
            }
            done += member.directory.rowCount
        }
    }
}

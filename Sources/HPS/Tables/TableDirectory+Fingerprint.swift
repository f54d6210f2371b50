/// What a persistent database records about the table files it was loaded from: the content fingerprint
/// and the files' sizes and modification times.
///
/// A restart compares sizes and mtimes first, which costs two `stat` calls; only when they differ does it
/// hash the files, so a table that was copied or touched but not changed is still not reloaded.
public struct LoadedTableRecord: Sendable, Equatable {
    /// ``TableDirectory/fingerprint()`` of the files.
    public var content: String
    /// ``TableDirectory/fileStamp()`` of the files.
    public var stamp: String

    public init(content: String, stamp: String) {
        self.content = content
        self.stamp = stamp
    }

    /// Parses a stored record; nil for anything that is not one.
    public init?(_ text: String) {
        guard let bar = text.firstIndex(of: "|") else { return nil }
        content = String(text[..<bar])
        stamp = String(text[text.index(after: bar)...])
        guard content.hasPrefix("hpst"), !stamp.isEmpty else { return nil }
    }

    /// The stored form: `<content>|<stamp>`.
    public var text: String { "\(content)|\(stamp)" }
}

extension TableDirectory {
    /// Sizes and modification times (ns) of `key` and `emb_vector`: `<bytes>@<mtime>,<bytes>@<mtime>`.
    /// - Throws: ``HPSError`` `.invalidTable` naming the file when it disappeared; `.io` when its status cannot be
    ///   read.
    public func fileStamp() throws -> String {
        var parts: [String] = []
        for file in [keyFile, vectorFile] {
            guard let status = try FileSystem.status(file) else {
                throw HPSError(.invalidTable, subject: file, "file disappeared")
            }
            parts.append("\(status.size)@\(status.modified)")
        }
        return parts.joined(separator: ",")
    }

    /// A compact identity of the table's content, e.g. `hpst1-1000x16-9c1f0a2b3d4e5f60-0123456789abcdef`:
    /// format version, rows × dimension, and the XXH64 of the `key` and of the `emb_vector` bytes.
    ///
    /// Databases store it after loading a table so a later start can skip reloading unchanged files. It
    /// depends only on the bytes, not on modification times, so a copied or re-exported identical table is
    /// recognised as unchanged. Reads both files once, in 1 MiB pieces.
    /// - Throws: ``HPSError`` `.io` naming the file when it cannot be read, or `.invalidTable` when it has changed
    ///   size since the directory was opened.
    public func fingerprint() throws -> String {
        let keyHash = try Self.hash(file: try openChecked(keyFile, expectedSize: keyByteCount), size: keyByteCount)
        let vectorHash = try Self.hash(file: try openChecked(vectorFile, expectedSize: vectorByteCount), size: vectorByteCount)
        return "hpst1-\(rowCount)x\(dimension)-\(Self.hex(keyHash))-\(Self.hex(vectorHash))"
    }

    private static func hash(file: OpenFile, size: Int) throws -> UInt64 {
        let pieceSize = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(pieceSize, max(size, 1)), alignment: 16)
        defer { buffer.deallocate() }
        var hasher = XXHash64()
        var offset = 0
        while offset < size {
            let n = min(buffer.count, size - offset)
            let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
            try file.readExactly(into: piece, at: offset, expectedFileSize: size)
            hasher.update(UnsafeRawBufferPointer(piece))
            offset += n
        }
        return hasher.finalize()
    }

    private static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// One embedding table on disk, in HPS's format: a directory holding
///
/// - `key`: little-endian int64 keys, no header;
/// - `emb_vector`: little-endian float32 vectors, row-major, `rows × dimension`, in the order of `key`;
/// - optionally `meta` (and HugeCTR's `slot_id`), which are ignored.
///
/// A directory written by SOK's `sok.Saver.dump_to_file` is read unchanged: when it holds neither `key` nor
/// `emb_vector`, the one `<variable>_keys.file` / `<variable>_values.file` pair in it (for example
/// `EmbeddingVariable_keys.file` / `EmbeddingVariable_values.file`) takes their place. SOK writes the same
/// layout — raw int64 keys, raw float32 vectors `rows × dimension` in key order, no header — so only the
/// names differ.
///
/// Creating a `TableDirectory` checks the files' presence and sizes; reading happens later, in bounded
/// chunks (``forEachChunk(maxRows:keyWidth:progress:_:)``).
public struct TableDirectory: Sendable, Equatable {
    /// The name of the key file inside a table directory.
    public static let keyFileName = "key"
    /// The name of the vector file inside a table directory.
    public static let vectorFileName = "emb_vector"
    /// How the key file of a SOK dump (`sok.Saver.dump_to_file`) ends: `<variable>_keys.file`.
    public static let sokKeyFileSuffix = "_keys.file"
    /// How the vector file of a SOK dump ends: `<variable>_values.file`.
    public static let sokVectorFileSuffix = "_values.file"

    /// The directory.
    public let path: String
    /// Number of rows (keys).
    public let rowCount: Int
    /// Floats per vector.
    public let dimension: Int
    /// Size of the `key` file when the directory was opened.
    public let keyByteCount: Int
    /// Size of the `emb_vector` file when the directory was opened.
    public let vectorByteCount: Int

    /// `<path>/key`, or `<path>/<variable>_keys.file` for a SOK dump.
    public let keyFile: String
    /// `<path>/emb_vector`, or `<path>/<variable>_values.file` for a SOK dump.
    public let vectorFile: String
    /// Bytes of both files together.
    public var byteCount: Int { keyByteCount + vectorByteCount }

    /// Opens and checks a table directory.
    ///
    /// - Parameters:
    ///   - path: the table directory.
    ///   - dimension: the expected vector width; when given, `emb_vector` must hold exactly
    ///     `rows × dimension` floats. When nil the width is inferred from the file sizes.
    /// - Throws: ``HPSError`` with code `invalidTable` naming the directory or file that is missing, empty or
    ///   of the wrong size (with the size found and the size expected); `io` when a file cannot be examined.
    public init(path: String, dimension: Int? = nil) throws {
        if let dimension, dimension < 1 {
            throw HPSError(.invalidArgument, subject: path, "table dimension must be at least 1, got \(dimension)")
        }
        guard let status = try FileSystem.status(path) else {
            throw HPSError(.invalidTable, subject: path, "table directory does not exist")
        }
        guard status.kind == .directory else {
            throw HPSError(.invalidTable, subject: path, "is not a directory; a table is a directory holding `key` and `emb_vector`")
        }
        self.path = path
        let (keyFile, vectorFile) = try Self.tableFiles(in: path)
        self.keyFile = keyFile
        self.vectorFile = vectorFile
        let vectorName = FileSystem.baseName(of: vectorFile)
        let keyBytes = try Self.checkedFileSize(keyFile, what: "key file")
        let vectorBytes = try Self.checkedFileSize(vectorFile, what: "embedding vector file")

        guard keyBytes % 8 == 0 else {
            throw HPSError(
                .invalidTable, subject: keyFile,
                "key file is \(keyBytes) bytes, not a multiple of 8 (one little-endian int64 per key)")
        }
        let rows = keyBytes / 8
        let rowFloatBytes = rows.multipliedReportingOverflow(by: 4).partialValue
        if let dimension {
            let (expected, overflow) = rowFloatBytes.multipliedReportingOverflow(by: dimension)
            guard !overflow, vectorBytes == expected else {
                var message =
                    "\(vectorName) is \(vectorBytes) bytes, expected \(overflow ? "more than Int.max" : String(expected)) bytes "
                    + "(\(rows) rows × dimension \(dimension) × 4 bytes)"
                if vectorBytes % rowFloatBytes == 0 {
                    message += "; the file holds vectors of dimension \(vectorBytes / rowFloatBytes)"
                }
                throw HPSError(.invalidTable, subject: vectorFile, message)
            }
            self.dimension = dimension
        } else {
            guard vectorBytes % rowFloatBytes == 0 else {
                throw HPSError(
                    .invalidTable, subject: vectorFile,
                    "\(vectorName) is \(vectorBytes) bytes, not a multiple of \(rowFloatBytes) (\(rows) rows × 4 bytes), "
                        + "so it does not hold one float32 vector per key")
            }
            self.dimension = vectorBytes / rowFloatBytes
        }
        self.rowCount = rows
        self.keyByteCount = keyBytes
        self.vectorByteCount = vectorBytes
    }

    /// The key and vector files of the table in `path`: `key` and `emb_vector` when either is there (a missing
    /// one is then reported by the size checks), else the single SOK `<variable>_keys.file` /
    /// `<variable>_values.file` pair.
    ///
    /// - Throws: ``HPSError`` `invalidTable` when the directory holds several SOK dumps (which one is the table
    ///   would be a guess) or a SOK key file without its vector file; `io` when it cannot be listed.
    static func tableFiles(in path: String) throws -> (key: String, vector: String) {
        let hpsFiles = (FileSystem.join(path, keyFileName), FileSystem.join(path, vectorFileName))
        if try FileSystem.status(hpsFiles.0) != nil || FileSystem.status(hpsFiles.1) != nil { return hpsFiles }
        let names = try FileSystem.directoryEntries(path)
        let variables = names.filter { $0.hasSuffix(sokKeyFileSuffix) && $0.count > sokKeyFileSuffix.count }
            .map { String($0.dropLast(sokKeyFileSuffix.count)) }.sorted()
        guard let variable = variables.first else { return hpsFiles }
        guard variables.count == 1 else {
            throw HPSError(
                .invalidTable, subject: path,
                "holds \(variables.count) SOK dumps (" + variables.map { $0 + sokKeyFileSuffix }.joined(separator: ", ")
                    + "); a table directory holds one, so dump each embedding variable to its own directory")
        }
        let vectorName = variable + sokVectorFileSuffix
        guard names.contains(vectorName) else {
            throw HPSError(
                .invalidTable, subject: FileSystem.join(path, vectorName),
                "SOK vector file is missing (the directory holds \(variable + sokKeyFileSuffix))")
        }
        return (FileSystem.join(path, variable + sokKeyFileSuffix), FileSystem.join(path, vectorName))
    }

    /// Size of a required, non-empty, readable regular file.
    private static func checkedFileSize(_ file: String, what: String) throws -> Int {
        guard let status = try FileSystem.status(file) else {
            throw HPSError(.invalidTable, subject: file, "\(what) is missing")
        }
        guard status.kind == .regular else {
            throw HPSError(.invalidTable, subject: file, "\(what) is not a regular file")
        }
        guard status.size > 0 else {
            throw HPSError(.invalidTable, subject: file, "\(what) is empty")
        }
        guard FileSystem.isReadable(file) else {
            throw HPSError(.invalidTable, subject: file, "\(what) is not readable (check its permissions)")
        }
        return status.size
    }
}

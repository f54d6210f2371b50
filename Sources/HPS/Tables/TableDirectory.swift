/// One embedding table on disk, in HPS's format: a directory holding
///
/// - `key`: little-endian int64 keys, no header;
/// - `emb_vector`: little-endian float32 vectors, row-major, `rows × dimension`, in the order of `key`;
/// - optionally `meta` (and HugeCTR's `slot_id`), which are ignored.
///
/// Creating a `TableDirectory` checks the files' presence and sizes; reading happens later, in bounded
/// chunks (``forEachChunk(maxRows:keyWidth:progress:_:)``).
public struct TableDirectory: Sendable, Equatable {
    /// The name of the key file inside a table directory.
    public static let keyFileName = "key"
    /// The name of the vector file inside a table directory.
    public static let vectorFileName = "emb_vector"

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

    /// `<path>/key`.
    public var keyFile: String { POSIXFile.join(path, Self.keyFileName) }
    /// `<path>/emb_vector`.
    public var vectorFile: String { POSIXFile.join(path, Self.vectorFileName) }
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
        guard let status = try POSIXFile.status(path) else {
            throw HPSError(.invalidTable, subject: path, "table directory does not exist")
        }
        guard status.kind == .directory else {
            throw HPSError(.invalidTable, subject: path, "is not a directory; a table is a directory holding `key` and `emb_vector`")
        }
        self.path = path
        let keyFile = POSIXFile.join(path, Self.keyFileName)
        let vectorFile = POSIXFile.join(path, Self.vectorFileName)
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
                    "emb_vector is \(vectorBytes) bytes, expected \(overflow ? "more than Int.max" : String(expected)) bytes "
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
                    "emb_vector is \(vectorBytes) bytes, not a multiple of \(rowFloatBytes) (\(rows) rows × 4 bytes), "
                        + "so it does not hold one float32 vector per key")
            }
            self.dimension = vectorBytes / rowFloatBytes
        }
        self.rowCount = rows
        self.keyByteCount = keyBytes
        self.vectorByteCount = vectorBytes
    }

    /// Size of a required, non-empty, readable regular file.
    private static func checkedFileSize(_ file: String, what: String) throws -> Int {
        guard let status = try POSIXFile.status(file) else {
            throw HPSError(.invalidTable, subject: file, "\(what) is missing")
        }
        guard status.kind == .regular else {
            throw HPSError(.invalidTable, subject: file, "\(what) is not a regular file")
        }
        guard status.size > 0 else {
            throw HPSError(.invalidTable, subject: file, "\(what) is empty")
        }
        guard POSIXFile.isReadable(file) else {
            throw HPSError(.invalidTable, subject: file, "\(what) is not readable (check its permissions)")
        }
        return status.size
    }
}

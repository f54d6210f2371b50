/// Converts NumPy arrays into an HPS table directory.
public enum TableConverter {
    /// Writes the table directory `output` from a `[rows, dim]` float array and an optional `[rows]` integer
    /// key array, streaming `chunkRows` rows at a time so memory stays bounded whatever the table size.
    ///
    /// - Parameters:
    ///   - vectorsNPY: `.npy` of dtype `<f4` (or `<f8`, converted to float32) and shape `[rows, dim]`.
    ///   - keysNPY: `.npy` of dtype `<i8` (or `<i4`, `<u4`, `<u8`) and shape `[rows]` or `[rows, 1]`; when nil the
    ///     keys are `0..<rows`.
    ///   - output: the table directory to create; its `key` and `emb_vector` appear only when complete.
    ///   - chunkRows: rows per read/write step.
    ///   - progress: called after each chunk with rows written and the total.
    /// - Returns: the table's rows and dimension.
    /// - Throws: ``HPSError`` naming the file that has the wrong dtype or rank, rows that do not agree
    ///   between keys and vectors, or truncated data.
    @discardableResult
    public static func convert(
        vectorsNPY: String, keysNPY: String? = nil, output: String, chunkRows: Int = 65536,
        progress: ((_ rowsDone: Int, _ rowsTotal: Int) -> Void)? = nil
    ) throws -> (rows: Int, dimension: Int) {
        guard chunkRows >= 1 else {
            throw HPSError(.invalidArgument, subject: output, "chunk size must be at least 1 row, got \(chunkRows)")
        }
        let vectors = try NumpyArray(path: vectorsNPY)
        guard vectors.elementType.isFloatingPoint else {
            throw HPSError(
                .invalidTable, subject: vectorsNPY,
                "vectors have dtype \(vectors.elementType.rawValue); expected float32 ('<f4') of shape (rows, dim)")
        }
        guard vectors.rank == 2 else {
            throw HPSError(
                .invalidTable, subject: vectorsNPY,
                "vectors have shape \(vectors.shapeDescription) (rank \(vectors.rank)); expected rank 2: (rows, dim)")
        }
        let rows = vectors.shape[0]
        let dimension = vectors.shape[1]
        guard rows > 0, dimension > 0 else {
            throw HPSError(
                .invalidTable, subject: vectorsNPY,
                "vectors have shape \(vectors.shapeDescription); a table needs at least one row and one column")
        }

        var keys: NumpyArray?
        if let keysNPY {
            let array = try NumpyArray(path: keysNPY)
            guard !array.elementType.isFloatingPoint else {
                throw HPSError(
                    .invalidTable, subject: keysNPY,
                    "keys have dtype \(array.elementType.rawValue); expected int64 ('<i8') of shape (rows,)")
            }
            guard array.rank == 1 || (array.rank == 2 && array.shape[1] == 1) else {
                throw HPSError(
                    .invalidTable, subject: keysNPY,
                    "keys have shape \(array.shapeDescription) (rank \(array.rank)); expected rank 1: (rows,)")
            }
            guard array.shape[0] == rows else {
                throw HPSError(
                    .invalidTable, subject: keysNPY,
                    "keys have \(array.shape[0]) rows but the vectors in \(vectorsNPY) have \(rows)")
            }
            keys = array
        }

        let vectorFile = try OpenFile.openForReading(vectorsNPY)
        let keyFile = try keysNPY.map { try OpenFile.openForReading($0) }
        let chunk = min(chunkRows, rows)
        let keyBuffer = UnsafeMutableBufferPointer<Int64>.allocate(capacity: chunk)
        defer { keyBuffer.deallocate() }
        let vectorBuffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: chunk * dimension)
        defer { vectorBuffer.deallocate() }

        let sink = try TableFileSink(directory: output, dimension: dimension)
        var row = 0
        while row < rows {
            let n = min(chunk, rows - row)
            if let keys, let keyFile {
                try keys.read(elements: row..<(row + n), into: keyBuffer, file: keyFile)
            } else {
                for i in 0..<n { keyBuffer[i] = Int64(row + i) }
            }
            try vectors.read(elements: (row * dimension)..<((row + n) * dimension), into: vectorBuffer, file: vectorFile)
            try sink.append(
                keys: UnsafeBufferPointer(start: keyBuffer.baseAddress, count: n),
                vectors: UnsafeBufferPointer(start: vectorBuffer.baseAddress, count: n * dimension))
            row += n
            progress?(row, rows)
        }
        try sink.commit()
        return (rows, dimension)
    }
}

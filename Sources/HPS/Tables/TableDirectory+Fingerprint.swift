extension TableDirectory {
    /// A compact identity of the table's content, e.g. `hpst1-1000x16-9c1f0a2b3d4e5f60-0123456789abcdef`:
    /// format version, rows × dimension, and the XXH64 of the `key` and of the `emb_vector` bytes.
    ///
    /// Databases store it after loading a table so a later start can skip reloading unchanged files. It
    /// depends only on the bytes, not on modification times, so a copied or re-exported identical table is
    /// recognised as unchanged. Reads both files once, in 1 MiB pieces.
    public func fingerprint() throws -> String {
        let keyHash = try Self.hash(file: try openChecked(keyFile, expectedSize: keyByteCount), size: keyByteCount)
        let vectorHash = try Self.hash(file: try openChecked(vectorFile, expectedSize: vectorByteCount), size: vectorByteCount)
        return "hpst1-\(rowCount)x\(dimension)-\(Self.hex(keyHash))-\(Self.hex(vectorHash))"
    }

    private static func hash(file: POSIXFile, size: Int) throws -> UInt64 {
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

// libFuzzer target: the table-directory reader (`key` + `emb_vector`, what loading, `hps inspect` and
// `hps validate` read). Input: byte 0 picks the dimension given to the reader (0: inferred, else 1…8)
// and the key width (bit 7: uint32 keys); bytes 1–2 (little-endian) how many of the remaining bytes form
// the key file; the rest is the vector file.
import HPS

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTable(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard size >= 3, let data else { return 0 }
    let dimensionByte = Int(data[0] & 0x0F) % 9
    let keyWidth: KeyWidth = data[0] & 0x80 != 0 ? .uint32 : .int64
    let rest = size - 3
    let keyBytes = min(rest, Int(data[1]) | Int(data[2]) << 8)
    let dir = "\(fuzzScratch)/table"
    makeDirectory(dir)
    writeFile("\(dir)/key", UnsafeRawBufferPointer(start: data + 3, count: keyBytes))
    writeFile("\(dir)/emb_vector", UnsafeRawBufferPointer(start: data + 3 + keyBytes, count: rest - keyBytes))
    do {
        let table = try TableDirectory(path: dir, dimension: dimensionByte == 0 ? nil : dimensionByte)
        var rows = 0
        try table.forEachChunk(maxRows: 7, keyWidth: keyWidth) { keys, vectors in
            precondition(vectors.count == keys.count * table.dimension, "chunk shape")
            rows += keys.count
        }
        precondition(rows == table.rowCount, "rows read \(rows) != rowCount \(table.rowCount)")
        _ = try table.keyRange(keyWidth: keyWidth)
        // Room for 4 keys only: the duplicate count takes several passes.
        let small = try table.scanKeys(keyWidth: keyWidth, maxKeysInMemory: 4)
        let large = try table.scanKeys(keyWidth: keyWidth)
        precondition(small.duplicateCount == large.duplicateCount, "duplicate counts differ: \(small.duplicateCount) vs \(large.duplicateCount)")
        _ = try table.statistics(keyWidth: keyWidth)
        _ = try table.fingerprint()
    } catch {
        _ = "\(error)"
    }
    return 0
}

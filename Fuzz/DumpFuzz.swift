// libFuzzer target: the `.bin` dump reader (`hps load`, DatabaseDump.load). Input: the dump file's bytes;
// each input is loaded twice into an in-process hash map, once accepting the dump's value size and once
// expecting 16-byte values (dimension 4), as `hps load` does for a configured table.
import HPS
import HPSRocksDB

private let volatileConfig: VolatileDatabaseConfig = {
    var c = VolatileDatabaseConfig()
    c.numPartitions = 2
    return c
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDump(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let path = "\(fuzzScratch)/dump.bin"
    writeFile(path, UnsafeRawBufferPointer(start: data, count: size))
    for expected in [nil, 16] as [Int?] {
        let db = HashMapDatabase(config: volatileConfig, logger: .silent)
        do {
            let read = try DatabaseDump.load(into: db, table: "hps_et.fuzz.t0", from: path, valueSize: expected)
            let held = try db.size(table: "hps_et.fuzz.t0")
            precondition(held <= read, "the table holds \(held) entries after reading \(read) records")
        } catch {
            _ = "\(error)"
        }
    }
    return 0
}

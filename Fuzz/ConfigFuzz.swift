// libFuzzer target: the JSON config parser and validator (what `hps validate` and every start run).
// Input: a configuration file's bytes. Relative `sparse_files` resolve against a scratch directory that
// holds two small valid tables, `t0` (dimension 4) and `t1` (dimension 8), so seeds that name them also
// exercise the file checks and the key scan.
import HPS

private let base: String = {
    for (name, dim, rows) in [("t0", 4, 10), ("t1", 8, 6)] {
        let keys = (0..<rows).map { Int64($0) * 5 }
        let vectors = (0..<(rows * dim)).map { Float($0) / 7 }
        try! TableWriter.write(directory: "\(fuzzScratch)/\(name)", keys: keys, vectors: vectors, dimension: dim)
    }
    return fuzzScratch
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let text = String(decoding: bytes, as: UTF8.self)
    do {
        let config = try ParameterServerConfig.parse(json: text, file: "fuzz.json", baseDirectory: base, checkFiles: true)
        _ = config.limitIssues()
        _ = config.checkTableKeys()
        for model in config.models {
            for t in 0..<model.tableCount { _ = model.maxQueryLength(table: t) }
        }
    } catch {
        _ = "\(error)"  // every error must also describe itself without trapping
    }
    return 0
}

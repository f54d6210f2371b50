import ArgumentParser
import Foundation
import HPS
import HPSRuntime

struct LookupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lookup",
        abstract: "Look keys up through the whole hierarchy (cache, databases, default value).",
        discussion: """
            Prints one line per key: the vector's floats separated by single spaces, written so that they \
            parse back to the identical float32: the shortest decimal that rounds back to it, inf, -inf, \
            nan for the quiet NaN 0x7fc00000, and nan:0x<8 hex digits> (the bit pattern) for every other \
            NaN. With --output, writes raw little-endian float32 \
            (keys × dim) instead. --keys-file holds raw little-endian int64 keys (int32 when the config \
            has supportlonglong: false).
            """
    )

    @OptionGroup var target: TableTarget

    @Option(help: "Comma-separated keys, e.g. 1,2,3 (write --keys=-1,2 when the first key is negative).")
    var keys: String?

    @Option(help: "A file of raw little-endian int64 keys (int32 with supportlonglong: false).")
    var keysFile: String?

    @Option(help: "Write raw little-endian float32 vectors to this file instead of printing them.")
    var output: String?

    @Option(help: "The device whose lookup session answers (default: the model's first deployed device).")
    var device: Int?

    func validate() throws {
        if (keys == nil) == (keysFile == nil) { throw ValidationError("give exactly one of --keys or --keys-file") }
    }

    func run() throws {
        let server = try HPSRuntime.makeParameterServer(configFile: target.config)
        let modelConfig = try server.model(named: target.model)
        let tableIndex = try target.resolve(in: modelConfig)
        let tableConfig = modelConfig.tables[tableIndex]
        let keyList = try readKeys(longLong: server.config.supportLongLong)
        let session = try server.session(model: target.model, device: device ?? modelConfig.deployedDevices.first ?? 0)
        let vectors = try session.lookup(table: tableIndex, keys: keyList)
        if let output {
            let data = vectors.withUnsafeBytes { Data($0) }
            do { try data.write(to: URL(fileURLWithPath: output)) } catch {
                throw HPSError(.io, subject: output, "cannot write the output file", cause: error)
            }
            printError("wrote \(keyList.count) × \(tableConfig.dimension) float32 to \(output)")
        } else {
            var text = ""
            let dim = tableConfig.dimension
            for i in 0..<keyList.count {
                text += vectors[(i * dim)..<((i + 1) * dim)].map(formatFloat).joined(separator: " ")
                text += "\n"
                if text.utf8.count > 1 << 16 { print(text, terminator: ""); text = "" }
            }
            print(text, terminator: "")
        }
    }

    private func readKeys(longLong: Bool) throws -> [Int64] {
        if let keys {
            return try keys.split(separator: ",", omittingEmptySubsequences: false).map { part in
                let text = part.trimmingCharacters(in: .whitespaces)
                guard let key = Int64(text) else {
                    throw HPSError(.invalidArgument, subject: "--keys", "'\(text)' is not an integer key")
                }
                guard longLong || (key >= 0 && key <= Int64(UInt32.max)) else {
                    throw HPSError(.invalidArgument, subject: "--keys", "key \(key) does not fit the config's 32-bit keys (supportlonglong: false)")
                }
                return key
            }
        }
        let path = keysFile ?? ""
        let data: [UInt8]
        do { data = try LocalFile.read(path) } catch let error as HPSError {
            throw HPSError(.io, subject: "--keys-file \(path)", "cannot read the keys file: \(error.message)", underlying: error.underlying)
        }
        let width = longLong ? 8 : 4
        guard data.count % width == 0 else {
            throw HPSError(.invalidArgument, subject: "--keys-file \(path)", "size \(data.count) bytes is not a multiple of \(width) (\(longLong ? "int64" : "int32") keys)")
        }
        return data.withUnsafeBytes { raw in
            (0..<(data.count / width)).map { i in
                longLong
                    ? Int64(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
                    : Int64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
            }
        }
    }
}

/// `value` as text that parses back to the identical float32: Swift's shortest round-trip decimal for
/// numbers and infinities, `nan` for the canonical quiet NaN (0x7fc00000, what `float("nan")` gives), and
/// `nan:0x` + the 8 hex digits of the bit pattern for every other NaN (sign, signalling bit, payload).
func formatFloat(_ value: Float) -> String {
    guard value.isNaN else { return value.description }
    let bits = value.bitPattern
    if bits == Float.nan.bitPattern { return "nan" }
    let hex = String(bits, radix: 16)
    return "nan:0x" + String(repeating: "0", count: 8 - hex.count) + hex
}

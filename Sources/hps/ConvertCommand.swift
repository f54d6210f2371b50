import ArgumentParser
import HPS

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert NumPy arrays into a table directory.",
        discussion: "VECTORS.npy holds float32 [rows, dim]; KEYS.npy, when given, holds int64 [rows] (default keys: 0 ..< rows)."
    )

    @Option(name: .customLong("npy"), help: "The vectors: a float32 .npy of shape [rows, dim].")
    var vectors: String

    @Option(help: "The keys: an int64 .npy of shape [rows].")
    var keys: String?

    @Option(help: "The table directory to write (created; its key and emb_vector files are replaced).")
    var output: String

    func run() throws {
        let result = try TableConverter.convert(vectorsNPY: vectors, keysNPY: keys, output: output, progress: nil)
        print("wrote \(output): \(result.rows) rows × dim \(result.dimension)")
    }
}

func printError(_ line: String) {
    HPSLogger.standardError(line)
}

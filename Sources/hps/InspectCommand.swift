import ArgumentParser
import HPS

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Describe a table directory: rows, dimension, key range, bytes.",
        discussion: "Exits 1 with a message naming the file when the table is broken (missing, truncated or misaligned files)."
    )

    @Argument(help: "A table directory holding `key` and `emb_vector`.")
    var table: String

    @Option(help: "The expected vector width; checked against the file sizes. Inferred when omitted.")
    var dim: Int?

    func validate() throws {
        if let dim, dim < 1 { throw ValidationError("--dim must be at least 1, got \(dim)") }
    }

    func run() throws {
        let directory = try TableDirectory(path: table, dimension: dim)
        let stats = try directory.statistics()
        print("table:      \(directory.path)")
        print("rows:       \(stats.rowCount)")
        print("dimension:  \(stats.dimension)\(dim == nil ? " (inferred)" : "")")
        print("key range:  \(stats.minKey) ... \(stats.maxKey)")
        print("duplicates: \(stats.duplicateKeyCount)")
        print("bytes:      \(stats.byteCount) (key \(directory.keyByteCount), emb_vector \(directory.vectorByteCount))")
    }
}

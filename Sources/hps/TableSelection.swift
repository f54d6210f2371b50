import ArgumentParser
import HPS

/// `--config`, `--model` and `--table`: the table a command works on.
struct TableTarget: ParsableArguments {
    @Option(help: "The HPS JSON config file.")
    var config: String

    @Option(help: "The model name.")
    var model: String

    @Option(help: "The table: its index (table_id) or its name from embedding_table_names.")
    var table: String
}

/// Resolves a `--table` argument: a table index (`table_id`) or a name from `embedding_table_names`.
/// - Throws: ``HPSError`` `.unknownTable` naming the argument and listing what the model has.
func resolveTable(_ table: String, in model: ModelConfig) throws -> Int {
    if let index = Int(table) {
        guard index >= 0 && index < model.tableCount else {
            throw HPSError(.unknownTable, subject: "--table \(table)", "model \(model.name) has \(model.tableCount) table(s) (0..<\(model.tableCount))")
        }
        return index
    }
    guard let index = model.tables.firstIndex(where: { $0.name == table }) else {
        throw HPSError(.unknownTable, subject: "--table \(table)", "model \(model.name) has no table of that name; it has: \(model.tables.map(\.name).joined(separator: ", "))")
    }
    return index
}

import ArgumentParser
import HPS

/// `--config`, `--model` and `--table` (or `--table-name`): the table a command works on.
struct TableTarget: ParsableArguments {
    @Option(help: "The HPS JSON config file.")
    var config: String

    @Option(help: "The model name.")
    var model: String

    @Option(help: ArgumentHelp(
        "The table: its index (table_id) when it is an integer, otherwise its name from embedding_table_names.",
        discussion: "An integer always means the index, even when a table is named like an integer; use --table-name for such a table."))
    var table: String?

    @Option(help: "The table by its name from embedding_table_names, even when the name is an integer.")
    var tableName: String?

    func validate() throws {
        if (table == nil) == (tableName == nil) { throw ValidationError("give exactly one of --table or --table-name") }
    }

    /// The selected table's index in `model`.
    func resolve(in model: ModelConfig) throws -> Int {
        if let tableName { return try resolveTableName(tableName, in: model, option: "--table-name") }
        return try resolveTable(table ?? "", in: model)
    }
}

/// Resolves a `--table` argument: a table index (`table_id`) when it is an integer, otherwise a name from
/// `embedding_table_names`. An integer that is also the name of another table selects the index and
/// warns, pointing at `--table-name`.
/// - Throws: ``HPSError`` `.unknownTable` naming the argument and listing what the model has.
func resolveTable(_ table: String, in model: ModelConfig) throws -> Int {
    if let index = Int(table) {
        guard index >= 0 && index < model.tableCount else {
            throw HPSError(.unknownTable, subject: "--table \(table)", "model \(model.name) has \(model.tableCount) table(s) (0..<\(model.tableCount)); use --table-name for a table named \"\(table)\"")
        }
        if let named = model.tables.firstIndex(where: { $0.name == table }), named != index {
            printError("warning: --table \(table) selects table_id \(index) (named \"\(model.tables[index].name)\"); the table named \"\(table)\" is table_id \(named): use --table-name \(table) for it")
        }
        return index
    }
    return try resolveTableName(table, in: model, option: "--table")
}

/// The index of the table named `name` in `model`.
func resolveTableName(_ name: String, in model: ModelConfig, option: String) throws -> Int {
    guard let index = model.tables.firstIndex(where: { $0.name == name }) else {
        throw HPSError(.unknownTable, subject: "\(option) \(name)", "model \(model.name) has no table of that name; it has: \(model.tables.map(\.name).joined(separator: ", "))")
    }
    return index
}

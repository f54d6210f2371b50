import ArgumentParser
import HPS

struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check an HPS JSON config and the table files it names.",
        discussion: "Exits 0 when the config is valid; otherwise prints every problem found, with its JSON path, and exits 1."
    )

    @Argument(help: "The HPS JSON config file.")
    var config: String

    @Flag(name: .long, help: "Check only the JSON, not the table directories.")
    var skipFiles = false

    func run() throws {
        let parsed = try ParameterServerConfig.load(path: config, checkFiles: !skipFiles)
        for warning in parsed.warnings { printError("warning: \(warning)") }
        var tables = 0
        for model in parsed.models { tables += model.tableCount }
        print("\(config): valid (\(parsed.models.count) model(s), \(tables) table(s), volatile_db \(parsed.volatileDatabase.type.rawValue), persistent_db \(parsed.persistentDatabase.type.rawValue))")
    }
}

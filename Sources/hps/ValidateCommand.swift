import ArgumentParser
import HPS

struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check an HPS JSON config and the table files it names.",
        discussion: """
            Exits 0 when the config is valid; otherwise prints every problem found, with its JSON path, and exits 1. \
            Unless --skip-files is given, every table's key file is read once: with supportlonglong: false a key \
            outside 0 ... 4294967295 is an error naming the file, row and key, and repeated keys are a warning.
            """
    )

    @Argument(help: "The HPS JSON config file.")
    var config: String

    @Flag(name: .long, help: "Check only the JSON, not the table directories and their keys.")
    var skipFiles = false

    func run() throws {
        let parsed = try ParameterServerConfig.load(path: config, checkFiles: !skipFiles)
        for warning in parsed.warnings { printError("warning: \(warning)") }
        if !skipFiles {
            let keys = parsed.checkTableKeys()
            for warning in keys.warnings { printError("warning: \(warning)") }
            guard keys.issues.isEmpty else { throw ConfigValidationError(file: config, issues: keys.issues) }
        }
        var tables = 0
        for model in parsed.models { tables += model.tableCount }
        print("\(config): valid (\(parsed.models.count) model(s), \(tables) table(s), volatile_db \(parsed.volatileDatabase.type.rawValue), persistent_db \(parsed.persistentDatabase.type.rawValue))")
    }
}

import ArgumentParser
import HPS

@main
struct HPSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hps",
        abstract: "Hierarchical Parameter Server: serve embedding tables larger than device memory.",
        discussion: """
            Embedding lookups flow through a device cache, a volatile database (hash map), a persistent \
            database and finally a default value. Tables are directories holding `key` (int64) and \
            `emb_vector` (float32) files, described by an HPS JSON config.

            Set HPS_LOG_LEVEL (error, warning, info, debug, trace, or silence) to change logging.
            """,
        version: HPSVersion.string,
        subcommands: [
            DemoCommand.self, ValidateCommand.self, InspectCommand.self, ConvertCommand.self, LookupCommand.self,
            DumpCommand.self, LoadDumpCommand.self, PlanCommand.self, BenchCommand.self, GPUCheckCommand.self,
            PublishCommand.self, KafkaMockCommand.self,
        ] + serveCommands
    )

    /// `serve`, unless the package was built with HPS_WITHOUT_SERVER=1 (Package.swift).
    #if canImport(HPSServer)
    static let serveCommands: [any ParsableCommand.Type] = [ServeCommand.self]
    #else
    static let serveCommands: [any ParsableCommand.Type] = []
    #endif
}

enum HPSVersion {
    static let string = "0.1.0"
}

import Foundation
import HPS
import HPSRuntime

/// One parameter server built from one reading of the config, with the session that answers each model.
/// A request keeps the generation it started on alive until it is answered, so a swap never pulls tables
/// from under a lookup.
final class ServingGeneration: Sendable {
    let server: ParameterServer
    let sessions: [String: LookupSession]

    init(config: ParameterServerConfig, persistentDatabase: (any Database)?) throws {
        server = try HPSRuntime.makeParameterServer(config: config, persistentDatabase: persistentDatabase)
        var sessions: [String: LookupSession] = [:]
        for model in config.models {
            sessions[model.name] = try server.session(model: model.name, device: model.deployedDevices.first ?? 0)
        }
        self.sessions = sessions
    }
}

/// A loaded model as a request sees it: its config and the session of the generation that serves it.
struct ServedModel: Sendable {
    let config: ModelConfig
    let session: LookupSession
    let generation: ServingGeneration
}

/// The models of the config file and which of them are loaded. Loads and unloads run one at a time on a
/// thread of their own; a load reads the config file again, builds a new parameter server for every model
/// that is to be loaded beside the one serving now, and swaps it in under the lock.
final class ModelRepository: @unchecked Sendable {
    // @unchecked Sendable: `lock` guards `known`, `loaded` and `generation`; `configFile` and `mode` are immutable;
    // loads and unloads run one at a time on `control`.
    let configFile: String
    let mode: ServeOptions.ModelControlMode
    private let lock = NSLock()
    private var known: ParameterServerConfig
    private var loaded: Set<String> = []
    private var generation: ServingGeneration?
    private let control = LookupThreadPool(threads: 1, name: "hps-serve-control")
    /// The persistent database the generations share, opened by the first one that needs it and kept open
    /// until shutdown (RocksDB lets one opener hold its folder, and the next generation is built while the
    /// serving one still holds it). Only the control thread touches it.
    private var persistent: (config: PersistentDatabaseConfig, database: any Database)?

    /// Reads and validates the config; in `none` mode builds every model now (a config that fails stops the
    /// start), in `explicit` mode builds nothing until a load.
    init(configFile: String, mode: ServeOptions.ModelControlMode) throws {
        self.configFile = configFile
        self.mode = mode
        let config = try ParameterServerConfig.load(path: configFile)
        known = config
        if mode == .none {
            generation = try ServingGeneration(config: config, persistentDatabase: try sharedPersistentDatabase(config))
            loaded = Set(config.models.map(\.name))
        }
    }

    /// The model `name` when it is loaded; 404 naming the problem otherwise.
    func model(_ name: String) throws(ServeError) -> ServedModel {
        lock.lock()
        defer { lock.unlock() }
        if loaded.contains(name), let generation, let session = generation.sessions[name] {
            return ServedModel(config: session.model, session: session, generation: generation)
        }
        if known.model(named: name) != nil {
            throw .notFound("model '\(name)' is not loaded (POST /v2/repository/models/\(name)/load loads it)")
        }
        throw .notFound("unknown model '\(name)'; the config has: \(known.models.map(\.name).joined(separator: ", "))")
    }

    /// Whether `name` is a model of the config (loaded or not), and whether it is loaded.
    func state(_ name: String) -> (known: Bool, ready: Bool) {
        lock.lock()
        defer { lock.unlock() }
        return (known.model(named: name) != nil, loaded.contains(name))
    }

    /// Every model of the config with its state, for the repository index.
    func index() -> [(name: String, ready: Bool)] {
        lock.lock()
        defer { lock.unlock() }
        return known.models.map { ($0.name, loaded.contains($0.name)) }
    }

    /// Loads (or reloads) `name`: re-reads the config file, builds the loaded models plus `name` beside the
    /// serving generation and swaps. A failure leaves the serving generation as it was.
    func load(_ name: String) async throws {
        guard mode == .explicit else {
            throw ServeError.badRequest("load is not allowed with --model-control-mode none (start with --model-control-mode explicit)")
        }
        try await control.run { [self] in
            let config: ParameterServerConfig
            do { config = try ParameterServerConfig.load(path: configFile) } catch {
                throw ServeError.badRequest("cannot read \(configFile): \(error)")
            }
            guard config.model(named: name) != nil else {
                lock.lock()
                known = config
                lock.unlock()
                throw ServeError.notFound("unknown model '\(name)'; \(configFile) has: \(config.models.map(\.name).joined(separator: ", "))")
            }
            lock.lock()
            var wanted = loaded
            lock.unlock()
            wanted.insert(name)
            var selected = config
            selected.models = config.models.filter { wanted.contains($0.name) }
            let next: ServingGeneration
            do { next = try ServingGeneration(config: selected, persistentDatabase: try sharedPersistentDatabase(selected)) } catch {
                throw ServeError.badRequest("failed to load '\(name)': \(error)")
            }
            lock.lock()
            generation = next
            loaded = Set(selected.models.map(\.name))
            known = config
            lock.unlock()
        }
    }

    /// Unloads `name`: later requests get 404, requests in flight finish on the generation they hold. The
    /// tables are freed when no model of the generation is loaded any more, or at the next load.
    func unload(_ name: String) async throws {
        guard mode == .explicit else {
            throw ServeError.badRequest("unload is not allowed with --model-control-mode none (start with --model-control-mode explicit)")
        }
        try await control.run { [self] in
            lock.lock()
            defer { lock.unlock() }
            guard known.model(named: name) != nil else {
                throw ServeError.notFound("unknown model '\(name)'; the config has: \(known.models.map(\.name).joined(separator: ", "))")
            }
            loaded.remove(name)
            if loaded.isEmpty { generation = nil }
        }
    }

    func shutdown() { control.shutdown() }

    /// The open persistent database for `config`'s `persistent_db`: the one the generations share when its
    /// settings are unchanged, a new one when there is none yet; nil when it is disabled.
    /// - Throws: ``ServeError`` 400 when the settings of an open database changed (a restart applies them),
    ///   or what opening it throws.
    private func sharedPersistentDatabase(_ config: ParameterServerConfig) throws -> (any Database)? {
        let wanted = config.persistentDatabase
        guard wanted.type != .disabled else { return nil }
        if let persistent {
            guard persistent.config == wanted else {
                throw ServeError.badRequest(
                    "persistent_db changed in \(configFile) (open: \(persistent.config.type.rawValue) at \(persistent.config.path)); the server shares the open database between generations, restart it to change persistent_db")
            }
            return persistent.database
        }
        guard let database = try HPSRuntime.makePersistentDatabase(wanted) else { return nil }
        persistent = (wanted, database)
        return database
    }
}

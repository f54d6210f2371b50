import HPS
import HPSRuntime

// The server half of include/hps.h: version, errors, servers and their statistics.

/// The library's version (semantic; the header's HPS_API_VERSION encodes the same numbers).
let libraryVersion = (major: 1, minor: 1, patch: 0)
private let versionString = CString("\(libraryVersion.major).\(libraryVersion.minor).\(libraryVersion.patch)")
private let statusStrings: [Int32: CString] = {
    let all: [CAPIError.Status] = [.ok, .invalidArgument, .config, .tableFiles, .unknownModel, .unknownTable, .tooManyKeys, .keyWidth, .noDevice, .cuda, .database, .busy, .kafka, .internal]
    return Dictionary(uniqueKeysWithValues: all.map { ($0.rawValue, CString("\($0.text)")) })
}()
private let unknownStatus = CString("unknown status")

@_cdecl("hps_version")
public func hps_version() -> UnsafePointer<CChar> { UnsafePointer(versionString.pointer) }

@_cdecl("hps_api_version")
public func hps_api_version() -> Int32 { Int32(libraryVersion.major * 10000 + libraryVersion.minor * 100 + libraryVersion.patch) }

@_cdecl("hps_last_error")
public func hps_last_error() -> UnsafePointer<CChar> { LastError.current }

@_cdecl("hps_status_string")
public func hps_status_string(_ status: Int32) -> UnsafePointer<CChar> { UnsafePointer((statusStrings[status] ?? unknownStatus).pointer) }

@_cdecl("hps_server_create")
public func hps_server_create(_ configPath: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded("hps_server_create") {
        guard let out else { throw CAPIError(.invalidArgument, "hps_server_create: out is NULL") }
        out.pointee = nil
        guard let configPath else { throw CAPIError(.invalidArgument, "hps_server_create: config_path is NULL") }
        let path = String(cString: configPath)
        guard !path.isEmpty else { throw CAPIError(.invalidArgument, "hps_server_create: config_path is empty") }
        let config: ParameterServerConfig
        do {
            config = try ParameterServerConfig.load(path: path)
        } catch let error as HPSError where error.code == .invalidTable {
            throw CAPIError(.tableFiles, "reading the configuration \(path): \(error)")
        } catch {
            throw CAPIError(.config, "reading the configuration \(path): \(error)")
        }
        let logger = HPSLogger.standard
        for warning in config.warnings { logger.warning("\(path): \(warning)") }
        let server: ParameterServer
        do {
            server = try HPSRuntime.makeParameterServer(config: config, logger: logger)
        } catch {
            throw CAPIError(wrapping: error, context: "building the parameter server from \(path)")
        }
        out.pointee = Handles.register(ServerHandle(server: server, configPath: path))
    }
}

@_cdecl("hps_server_destroy")
public func hps_server_destroy(_ server: OpaquePointer?) -> Int32 {
    guarded("hps_server_destroy") {
        let handle = try Handles.removeServer(server)
        let live = handle.liveSessions.load(ordering: .acquiring)
        if live > 0 {
            throw CAPIError(
                .busy,
                "hps_server_destroy: the server of \(handle.configPath) still has \(live) live session(s); the handle is released and the server is freed when its last session is destroyed")
        }
    }
}

@_cdecl("hps_model_count")
public func hps_model_count(_ server: OpaquePointer?) -> Int32 {
    do {
        return Int32(try Handles.server(server).modelNames.count)
    } catch {
        return failed(error, context: "hps_model_count", -1)
    }
}

@_cdecl("hps_model_name")
public func hps_model_name(_ server: OpaquePointer?, _ index: Int32) -> UnsafePointer<CChar>? {
    do {
        let names = try Handles.server(server).modelNames
        guard index >= 0 && Int(index) < names.count else {
            throw CAPIError(.invalidArgument, "hps_model_name: model index \(index) out of range (\(names.count) model(s))")
        }
        return UnsafePointer(names[Int(index)].pointer)
    } catch {
        return failed(error, context: "hps_model_name", nil)
    }
}

/// Mirrors `hps_statistics` of include/hps.h (eight int64 counters in this order).
@_cdecl("hps_server_statistics")
public func hps_server_statistics(_ server: OpaquePointer?, _ out: UnsafeMutablePointer<Int64>?) -> Int32 {
    guarded("hps_server_statistics") {
        let handle = try Handles.server(server)
        guard let out else { throw CAPIError(.invalidArgument, "hps_server_statistics: out is NULL") }
        let s = handle.server.statistics.snapshot
        let values = [s.lookups, s.keys, s.uniqueKeys, s.cacheHits, s.cacheMisses, s.volatileHits, s.persistentHits, s.defaults]
        for (i, v) in values.enumerated() { out[i] = Int64(v) }
    }
}

@_cdecl("hps_server_wait")
public func hps_server_wait(_ server: OpaquePointer?) -> Int32 {
    guarded("hps_server_wait") { try Handles.server(server).server.waitForBackgroundWork() }
}

import HPS
import Synchronization

/// What an `hps_server *` points at: the parameter server and the C strings handed out for it.
final class ServerHandle: Sendable {
    let server: ParameterServer
    let configPath: String
    /// Model names as C strings, owned here for `hps_model_name`.
    let modelNames: [CString]
    /// Sessions made from this server and not yet destroyed.
    let liveSessions = Atomic<Int>(0)

    init(server: ParameterServer, configPath: String) {
        self.server = server
        self.configPath = configPath
        modelNames = server.config.models.map { CString($0.name) }
    }
}

/// What an `hps_session *` points at. Holds its server, so a session keeps working after `hps_server_destroy`.
final class SessionHandle: Sendable {
    let owner: ServerHandle
    let session: LookupSession
    let tableNames: [CString]

    init(owner: ServerHandle, session: LookupSession) {
        self.owner = owner
        self.session = session
        tableNames = session.model.tables.map { CString($0.name) }
    }
}

/// A NUL-terminated copy of a string that lives as long as its owner.
final class CString: @unchecked Sendable {
    // @unchecked Sendable: the bytes are written once in init and only read afterwards.
    let pointer: UnsafeMutablePointer<CChar>

    init(_ string: String) {
        let bytes = Array(string.utf8CString)
        pointer = .allocate(capacity: bytes.count)
        pointer.initialize(from: bytes, count: bytes.count)
    }

    deinit { pointer.deallocate() }
}

/// The live handles. A C caller may pass any pointer: only addresses registered here are ever turned back
/// into objects, so a destroyed, foreign or NULL handle is an error, not a crash. Lookups take a strong
/// reference under the lock, so a handle destroyed by another thread mid-call stays valid until the call ends.
enum Handles {
    private static let servers = Mutex<[UInt: ServerHandle]>([:])
    private static let sessions = Mutex<[UInt: SessionHandle]>([:])

    static func register(_ handle: ServerHandle) -> OpaquePointer {
        let address = UInt(bitPattern: Unmanaged.passUnretained(handle).toOpaque())
        servers.withLock { $0[address] = handle }
        return OpaquePointer(bitPattern: address)!
    }

    static func register(_ handle: SessionHandle) -> OpaquePointer {
        let address = UInt(bitPattern: Unmanaged.passUnretained(handle).toOpaque())
        sessions.withLock { $0[address] = handle }
        return OpaquePointer(bitPattern: address)!
    }

    static func server(_ pointer: OpaquePointer?) throws(CAPIError) -> ServerHandle {
        guard let pointer else { throw CAPIError(.invalidArgument, "server handle is NULL") }
        guard let handle = servers.withLock({ $0[UInt(bitPattern: pointer)] }) else {
            throw CAPIError(.invalidArgument, "\(pointer) is not a live hps_server (destroyed, or not made by hps_server_create)")
        }
        return handle
    }

    static func session(_ pointer: OpaquePointer?) throws(CAPIError) -> SessionHandle {
        guard let pointer else { throw CAPIError(.invalidArgument, "session handle is NULL") }
        guard let handle = sessions.withLock({ $0[UInt(bitPattern: pointer)] }) else {
            throw CAPIError(.invalidArgument, "\(pointer) is not a live hps_session (destroyed, or not made by hps_session_create)")
        }
        return handle
    }

    static func removeServer(_ pointer: OpaquePointer?) throws(CAPIError) -> ServerHandle {
        let handle = try server(pointer)
        servers.withLock { _ = $0.removeValue(forKey: UInt(bitPattern: pointer)) }
        return handle
    }

    static func removeSession(_ pointer: OpaquePointer?) throws(CAPIError) -> SessionHandle {
        let handle = try session(pointer)
        sessions.withLock { _ = $0.removeValue(forKey: UInt(bitPattern: pointer)) }
        return handle
    }
}

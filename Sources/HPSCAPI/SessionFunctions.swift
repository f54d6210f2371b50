import HPS

// Sessions of include/hps.h: made from a server for one model on one device.

@_cdecl("hps_session_create")
public func hps_session_create(
    _ server: OpaquePointer?, _ model: UnsafePointer<CChar>?, _ device: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    guarded("hps_session_create") {
        guard let out else { throw CAPIError(.invalidArgument, "hps_session_create: out is NULL") }
        out.pointee = nil
        let owner = try Handles.server(server)
        guard let model else { throw CAPIError(.invalidArgument, "hps_session_create: model is NULL") }
        let name = String(cString: model)
        guard let config = owner.server.config.models.first(where: { $0.name == name }) else {
            let known = owner.server.config.models.map(\.name)
            throw CAPIError(.unknownModel, "hps_session_create: no model named '\(name)' in \(owner.configPath) (models: \(known.joined(separator: ", ")))")
        }
        guard config.deployedDevices.contains(Int(device)) else {
            throw CAPIError(
                .noDevice, "hps_session_create: model \(name) is not deployed on device \(device); its deployed_device_list is \(config.deployedDevices)")
        }
        let session: LookupSession
        do {
            session = try owner.server.session(model: name, device: Int(device))
        } catch {
            throw CAPIError(wrapping: error, context: "hps_session_create(\(name), device \(device))")
        }
        owner.liveSessions.add(1, ordering: .releasing)
        out.pointee = Handles.register(SessionHandle(owner: owner, session: session))
    }
}

@_cdecl("hps_session_destroy")
public func hps_session_destroy(_ session: OpaquePointer?) {
    _ = guarded("hps_session_destroy") {
        let handle = try Handles.removeSession(session)
        handle.owner.liveSessions.subtract(1, ordering: .releasing)
    }
}

/// The session of `pointer` and its table `table`, or a CAPIError naming what is wrong.
func sessionTable(_ pointer: OpaquePointer?, _ table: Int32, _ function: String) throws(CAPIError) -> (SessionHandle, TableConfig) {
    let handle = try Handles.session(pointer)
    let tables = handle.session.model.tables
    guard table >= 0 && Int(table) < tables.count else {
        throw CAPIError(
            .unknownTable, "\(function): table \(table) out of range: model \(handle.session.model.name) has \(tables.count) table(s) (0..<\(tables.count))")
    }
    return (handle, tables[Int(table)])
}

@_cdecl("hps_table_count")
public func hps_table_count(_ session: OpaquePointer?) -> Int32 {
    do {
        return Int32(try Handles.session(session).session.model.tables.count)
    } catch {
        return failed(error, context: "hps_table_count", -1)
    }
}

@_cdecl("hps_table_dimension")
public func hps_table_dimension(_ session: OpaquePointer?, _ table: Int32) -> Int32 {
    do {
        return Int32(try sessionTable(session, table, "hps_table_dimension").1.dimension)
    } catch {
        return failed(error, context: "hps_table_dimension", -1)
    }
}

@_cdecl("hps_table_max_keys")
public func hps_table_max_keys(_ session: OpaquePointer?, _ table: Int32) -> Int64 {
    do {
        let (handle, _) = try sessionTable(session, table, "hps_table_max_keys")
        return Int64(handle.session.model.maxQueryLength(table: Int(table)))
    } catch {
        return failed(error, context: "hps_table_max_keys", -1)
    }
}

@_cdecl("hps_table_name")
public func hps_table_name(_ session: OpaquePointer?, _ table: Int32) -> UnsafePointer<CChar>? {
    do {
        let (handle, _) = try sessionTable(session, table, "hps_table_name")
        return UnsafePointer(handle.tableNames[Int(table)].pointer)
    } catch {
        return failed(error, context: "hps_table_name", nil)
    }
}

@_cdecl("hps_session_on_gpu")
public func hps_session_on_gpu(_ session: OpaquePointer?) -> Int32 {
    do {
        let s = try Handles.session(session).session
        return s.caches.contains { ($0?.location ?? "CPU") != "CPU" } ? 1 : 0
    } catch {
        return failed(error, context: "hps_session_on_gpu", -1)
    }
}

@_cdecl("hps_session_int64_keys")
public func hps_session_int64_keys(_ session: OpaquePointer?) -> Int32 {
    do {
        return try Handles.session(session).owner.server.config.supportLongLong ? 1 : 0
    } catch {
        return failed(error, context: "hps_session_int64_keys", -1)
    }
}

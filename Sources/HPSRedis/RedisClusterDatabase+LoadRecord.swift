import Dispatch
import HPS

/// The load record of a table in Redis: which table files a process loaded completely into the cluster,
/// so that the next process to start (or this one, restarted) does not write the whole table again.
///
/// It is a plain string key in the slot of the table's partition 0 (`hps_et{<tag>/p0}f`), outside the
/// value and metadata hashes: SCAN patterns and ``RedisKeyLayout/parse(_:)`` never take it for a table.
/// Evicting the table does not remove it; the parameter server stores the table's size beside the
/// fingerprint and trusts the record only while the size still matches.
extension RedisClusterDatabase {
    static func loadRecordKey(_ tag: String) -> String { RedisKeyLayout.hashKey(tag: tag, partition: 0, suffix: "f") }

    /// - Throws: ``HPSError`` `.database` naming the table when the `GET` fails or gets an unexpected reply.
    public func loadedFingerprint(table tag: String) throws -> String? {
        let key = Self.loadRecordKey(tag)
        let reply = try recordCommand(key, ["GET", key])
        switch reply {
        case .null: return nil
        case .string: return reply.text
        default: throw HPSError(.database, subject: tag, "unexpected reply to GET \(key)", underlying: reply.description)
        }
    }

    /// - Throws: ``HPSError`` `.database` naming the table when the `SET`/`DEL` fails or gets an error reply.
    public func recordLoadedFingerprint(_ fingerprint: String?, table tag: String) throws {
        let key = Self.loadRecordKey(tag)
        let reply = try recordCommand(key, fingerprint.map { ["SET", key, $0] } ?? ["DEL", key])
        if case .error(let message) = reply {
            throw HPSError(.database, subject: tag, "cannot write the load record \(key)", underlying: message)
        }
    }

    /// Sends one command for `key` to the node that owns its slot, following one MOVED redirection (an ASK
    /// during a slot migration comes back as an error reply: the caller treats the record as absent).
    private func recordCommand(_ key: String, _ args: [String]) throws -> RedisValue {
        let slot = RedisClusterSlot.slot(key)
        do {
            if client.owner(ofSlot: slot) == nil { try client.refreshSlots(since: DispatchTime.now().uptimeNanoseconds) }
            guard var node = client.owner(ofSlot: slot) else {
                throw HPSError(.database, subject: key, "no Redis node serves slot \(slot)")
            }
            var reply = try client.command(on: node, args)
            if case .error(let message) = reply,
                let redirect = RedisClusterClient.parseRedirect(message, defaultHost: node.endpoint.host), redirect.moved
            {
                try? client.refreshSlots(since: DispatchTime.now().uptimeNanoseconds)
                node = client.node(redirect.endpoint)
                reply = try client.command(on: node, args)
            }
            return reply
        } catch let failure as RedisFailure {
            throw HPSError(.database, subject: key, "Redis command \(args[0]) failed", underlying: failure.description)
        }
    }
}

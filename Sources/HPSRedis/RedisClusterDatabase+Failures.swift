// Failure reporting of `RedisClusterDatabase`: node failures turned into counted, rate-limited misses, the
// messages naming failed nodes, and the per-partition results that turn into one error per call.
import HPS

extension RedisClusterDatabase {
    func reportLookupFailure(_ failure: RedisFailure, keys: Int, operation: String, tag: String) {
        failedLookupKeys.add(keys, ordering: .relaxed)
        failureLog.warning(key: "\(operation) \(failure.address)", "redis_cluster: \(operation) \(tag): \(keys) keys on \(failure.address) reported as misses: \(failure.message)")
    }

    func unexpected(_ reply: RedisReplyView, _ command: String, _ hash: HashKey) -> RedisFailure {
        RedisFailure(kind: .protocolError, address: hash.text, message: "unexpected reply to \(command): \(reply.value)")
    }

    func describe(_ failures: [RedisFailure]) -> String {
        var byNode: [String: String] = [:]
        for failure in failures where byNode[failure.address] == nil { byNode[failure.address] = failure.message }
        return "failed: " + byNode.keys.sorted().map { "\($0) (\(byNode[$0]!))" }.joined(separator: "; ")
    }

    /// Per-partition results of a call that does not group keys.
    final class PartitionResults: @unchecked Sendable {
        // @unchecked Sendable: made per call; while the call's workers run, each writes only `counts[p]` and
        // `failures[p]` of its own partitions, and the caller reads them after `pool.run` returns.
        let counts: UnsafeMutablePointer<Int>
        let failures: UnsafeMutablePointer<RedisFailure?>
        let n: Int
        init(_ n: Int) {
            self.n = n
            counts = .allocate(capacity: n)
            counts.initialize(repeating: 0, count: n)
            failures = .allocate(capacity: n)
            failures.initialize(repeating: nil, count: n)
        }
        func release() {
            counts.deallocate()
            failures.deinitialize(count: n)
            failures.deallocate()
        }
        var sum: Int { (0..<n).reduce(0) { $0 + counts[$1] } }
        func throwIfFailed(operation: String, tag: String, keys: Int?) throws {
            var byNode: [String: String] = [:]
            var partitions = 0
            for p in 0..<n {
                if let failure = failures[p] {
                    partitions += 1
                    if byNode[failure.address] == nil { byNode[failure.address] = failure.message }
                }
            }
            guard partitions > 0 else { return }
            let nodes = byNode.keys.sorted().map { "\($0) (\(byNode[$0]!))" }.joined(separator: "; ")
            throw HPSError(.database, subject: tag, "\(operation) failed for \(partitions) of \(n) partitions; failed: \(nodes)", underlying: byNode.values.first)
        }
    }
}

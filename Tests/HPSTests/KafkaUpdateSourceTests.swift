import Foundation
import HPS
import HPSKafka
import HPSRuntime
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The update source in process, against librdkafka's mock cluster: rows posted by KafkaPublisher reach the
/// databases and, in place, the cached keys; the static cache's rows are overwritten; a stopped source leaves
/// the group.
@Suite(.serialized) struct KafkaUpdateSourceTests {
    /// Waits up to `seconds` for `condition`.
    func eventually(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if try condition() { return true }
            usleep(50_000)
        }
        return try condition()
    }

    func publish(_ brokers: String, table: String, keys: [Int64], rows: [Float], dim: Int) throws -> KafkaPublisher.Report {
        let publisher = try KafkaPublisher(brokers: brokers, sendBufferSize: 4096)
        try keys.withUnsafeBufferPointer { k in
            try rows.withUnsafeBytes { try publisher.post(model: "demo", table: table, keys: k, values: $0, valueSize: dim * 4) }
        }
        return try publisher.flush(timeoutMs: 20_000)
    }

    @Test func updatesReachTheHashMapAndCachedKeysInPlace() throws {
        let cluster = try KafkaMockCluster()
        defer { withExtendedLifetime(cluster) {} }
        var fixture = try Fixture(rows: [2000, 500])
        fixture.config.updateSource.type = .kafkaMessageQueue
        fixture.config.updateSource.brokers = cluster.bootstrapServers
        fixture.config.updateSource.pollTimeoutMs = 50
        fixture.config.updateSource.metadataRefreshIntervalMs = 100
        fixture.config.updateSource.nodeName = "swift-test"
        let server = try fixture.server()
        let session = try server.session(model: "demo", device: 0)
        let cachedKeys = (0..<200).map { Int64($0) * 3 }
        #expect(try session.lookup(table: 0, keys: cachedKeys) == fixture.expected(table: 0, keys: cachedKeys))
        let cache = try #require(session.caches[0])
        let before = cache.count

        // New values for every third cached key and for 50 keys no table had; reference: a dictionary.
        let updated = cachedKeys.enumerated().filter { $0.offset % 3 == 0 }.map(\.element) + (0..<50).map { 1_000_000 + Int64($0) }
        let rows = updated.flatMap { k in (0..<8).map { Float(k) * 0.5 + Float($0) } }
        let report = try publish(cluster.bootstrapServers, table: "t0", keys: updated, rows: rows, dim: 8)
        #expect(report.deliveredRows == updated.count && report.failedMessages == 0)
        var reference: [Int64: [Float]] = fixture.tables[0]
        for (i, k) in updated.enumerated() { reference[k] = Array(rows[(i * 8)..<((i + 1) * 8)]) }
        let probe = cachedKeys + (0..<50).map { 1_000_000 + Int64($0) }
        let want = probe.flatMap { reference[$0]! }
        #expect(try eventually(20) { try session.lookup(table: 0, keys: probe) == want })
        // The cached keys were overwritten in place, not evicted and fetched again.
        let inCache = try cache.keys(inUnits: 0..<cache.unitCount)
        #expect(Set(cachedKeys).isSubset(of: Set(inCache)))
        #expect(cache.count >= before)
        // The volatile database holds the new rows too.
        #expect(try server.lookup(model: "demo", table: 0, keys: updated) == updated.flatMap { reference[$0]! })
        let source = try #require(server.updateSource as? KafkaUpdateSource)
        #expect(source.statistics.appliedKeys >= updated.count)
        #expect(source.statistics.latencyQuantile(0.99) != nil)
        source.stop()
    }

    @Test func staticCacheRowsAreOverwritten() throws {
        let cluster = try KafkaMockCluster()
        defer { withExtendedLifetime(cluster) {} }
        var fixture = try Fixture(rows: [300, 100])
        fixture.model.useStaticTable = true
        fixture.config.updateSource.type = .kafkaMessageQueue
        fixture.config.updateSource.brokers = cluster.bootstrapServers
        fixture.config.updateSource.pollTimeoutMs = 50
        fixture.config.updateSource.metadataRefreshIntervalMs = 100
        fixture.config.updateSource.nodeName = "swift-static"
        let server = try fixture.server()
        let session = try server.session(model: "demo", device: 0)
        let keys: [Int64] = [1, 4, 7, 10]  // table 1: keys ≡ 1 (mod 3)
        let rows: [Float] = (0..<12).map { Float($0) + 100 }
        _ = try publish(cluster.bootstrapServers, table: "t1", keys: keys, rows: rows, dim: 3)
        #expect(try eventually(20) { try session.lookup(table: 1, keys: keys) == rows })
        #expect(try session.lookup(table: 1, keys: [13]) == fixture.expected(table: 1, keys: [13]))
        (server.updateSource as? KafkaUpdateSource)?.stop()
    }
}

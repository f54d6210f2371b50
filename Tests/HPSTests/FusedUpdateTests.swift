import HPS
import HPSRuntime
import Testing

/// Online updates of tables that `fuse_embedding_table` put into one group: each row reaches its own
/// table (keys tagged, as lookups read them), through the databases and the shared cache, and leaves the
/// other tables of the group — which hold the same keys — unchanged.
@Suite struct FusedUpdateTests {
    func bits(_ a: [Float]) -> [UInt32] { a.map(\.bitPattern) }

    @Test(arguments: [true, false])
    func updatesOfAFusedTableReachOnlyThatTable(cpuCache: Bool) throws {
        var fixture = try FusionFixture()
        fixture.model.cpuCache = cpuCache  // true: a CPU cache in front of the hash map; false: the hash map directly
        let server = try fixture.server(fused: true)
        let session = try server.session(model: "fused", device: 0)
        let keys: [Int64] = [0, 5, 10, 4_000_000]  // cached (looked up first), cached, new to table 2, new
        // Warm the shared cache with every table's rows of these keys.
        for t in 0..<fixture.rows.count { _ = try session.lookup(table: t, keys: keys) }

        let table = try server.table(model: "fused", index: 2)  // dim 8, fused with tables 0 and 3
        let rows = keys.indices.flatMap { i in (0..<8).map { Float(1000 * (i + 1) + $0) } }
        try keys.withUnsafeBufferPointer { k in
            try rows.withUnsafeBytes { v in
                try server.applyUpdate(table: table, keys: k, values: v, targets: UpdateTargets(volatileDatabase: true, persistentDatabase: true, deviceCaches: true))
            }
        }
        #expect(bits(try session.lookup(table: 2, keys: keys)) == bits(rows))
        #expect(bits(try server.lookup(model: "fused", table: 2, keys: keys)) == bits(rows))
        for t in [0, 1, 3, 4] {
            #expect(bits(try session.lookup(table: t, keys: keys)) == bits(fixture.expected(table: t, keys: keys)), "table \(t)")
        }
    }
}

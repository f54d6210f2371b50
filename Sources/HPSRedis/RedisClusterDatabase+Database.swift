// The `Database` conformance of `RedisClusterDatabase`: size, contains, insert, fetch, evict, table discovery
// and chunked iteration, each fanned out per partition over the worker pool; and the per-table state the
// calls share (hash keys and slots, the learnt value size).
import HPS

extension RedisClusterDatabase {
    public func capacity(table: String) -> Int { config.tableCapacity }

    /// - Throws: ``HPSError`` `.database` naming the table and the failed nodes when any partition's `HLEN` fails.
    public func size(table tag: String) throws -> Int {
        let t = tableKeys(tag)
        let results = PartitionResults(partitionCount)
        defer { results.release() }
        pool.run(count: partitionCount) { p in
            client.pipeline(slot: t.slots[p], count: 1, build: { _, c in
                c.append(argc: 2) { argv, lengths in
                    set(argv, lengths, 0, Verb.hlen)
                    set(argv, lengths, 1, t.values[p])
                }
            }, handle: { _, outcome in
                switch outcome {
                case .reply(let reply) where reply.isInteger: results.counts[p] = reply.integer
                case .reply(let reply): results.failures[p] = unexpected(reply, "HLEN", t.values[p])
                case .failure(let failure): results.failures[p] = failure
                }
            })
        }
        try results.throwIfFailed(operation: "size", tag: tag, keys: nil)
        return results.sum
    }

    /// - Throws: never for node failures: keys on a failed node count as absent (and are counted in ``statistics``).
    public func contains(table tag: String, keys: UnsafeBufferPointer<Int64>) throws -> Int {
        if keys.isEmpty { return 0 }
        let t = tableKeys(tag)
        let keyBase = UnsafeRawPointer(keys.baseAddress!)
        return scratch.with(capacity: keys.count) { s in
            s.group(keys)
            pool.run(count: partitionCount) { p in
                let range = s.range(p)
                guard !range.isEmpty else { return }
                client.pipeline(slot: t.slots[p], count: range.count, build: { j, c in
                    c.append(argc: 3) { argv, lengths in
                        set(argv, lengths, 0, Verb.hexists)
                        set(argv, lengths, 1, t.values[p])
                        argv[2] = (keyBase + Int(s.order[range.lowerBound + j]) * 8).assumingMemoryBound(to: CChar.self)
                        lengths[2] = 8
                    }
                }, handle: { _, outcome in
                    switch outcome {
                    case .reply(let reply) where reply.isInteger: s.counts[p] += reply.integer == 1 ? 1 : 0
                    case .reply(let reply):
                        s.failed[p] += 1
                        s.failures[p] = unexpected(reply, "HEXISTS", t.values[p])
                    case .failure(let failure):
                        s.failed[p] += 1
                        s.failures[p] = failure
                    }
                })
            }
            var found = 0
            for p in 0..<partitionCount {
                found += s.counts[p]
                if let failure = s.failures[p] { reportLookupFailure(failure, keys: s.failed[p], operation: "contains", tag: tag) }
            }
            return found
        }
    }

    /// - Throws: ``HPSError`` `.invalidArgument` when `values` holds fewer than `keys.count × valueSize` bytes;
    ///   `.database` when `valueSize` differs from the table's, or naming the failed nodes after every partition was
    ///   tried (the keys of the partitions that answered are stored).
    @discardableResult
    public func insert(table tag: String, keys: UnsafeBufferPointer<Int64>, values: UnsafeRawBufferPointer, valueSize: Int) throws -> Int {
        guard valueSize > 0 else {
            throw HPSError(.invalidArgument, subject: tag, "value size must be at least 1 byte, not \(valueSize)")
        }
        guard values.count >= keys.count * valueSize else {
            throw HPSError(.invalidArgument, subject: tag, "values hold \(values.count) bytes, \(keys.count) keys × \(valueSize) bytes needed")
        }
        if keys.isEmpty { return 0 }
        let t = tableKeys(tag)
        try checkValueSize(t, valueSize)
        let keyBase = UnsafeRawPointer(keys.baseAddress!)
        let valueBase = values.baseAddress!
        let policy = config.overflowPolicy
        let margin = config.overflowMargin
        let stamps = policy == .evictOldest
        let stampText = Array(String(nextStamp()).utf8)
        let maxBatch = self.maxBatch
        return try scratch.with(capacity: keys.count) { s in
            s.group(keys)
            stampText.withUnsafeBufferPointer { stamp in
                let stampArg = HashKey(UnsafeRawPointer(stamp.baseAddress!).assumingMemoryBound(to: CChar.self), stamp.count)
                pool.run(count: partitionCount) { p in
                    let range = s.range(p)
                    guard !range.isEmpty else { return }
                    let chunks = (range.count + maxBatch - 1) / maxBatch
                    let perChunk = stamps ? 2 : 1
                    let commands = chunks * perChunk + (margin == .max ? 0 : 1)
                    var length = -1
                    client.pipeline(slot: t.slots[p], count: commands, build: { command, c in
                        if command == chunks * perChunk {
                            c.append(argc: 2) { argv, lengths in
                                set(argv, lengths, 0, Verb.hlen)
                                set(argv, lengths, 1, t.values[p])
                            }
                            return
                        }
                        let chunk = command / perChunk
                        let lo = range.lowerBound + chunk * maxBatch
                        let hi = min(range.upperBound, lo + maxBatch)
                        let meta = command % perChunk == 1
                        c.append(argc: 2 + 2 * (hi - lo)) { argv, lengths in
                            set(argv, lengths, 0, Verb.hset)
                            set(argv, lengths, 1, meta ? t.meta[p] : t.values[p])
                            var a = 2
                            for j in lo..<hi {
                                let i = Int(s.order[j])
                                argv[a] = (keyBase + i * 8).assumingMemoryBound(to: CChar.self)
                                lengths[a] = 8
                                if meta {
                                    set(argv, lengths, a + 1, stampArg)
                                } else {
                                    argv[a + 1] = (valueBase + i * valueSize).assumingMemoryBound(to: CChar.self)
                                    lengths[a + 1] = valueSize
                                }
                                a += 2
                            }
                        }
                    }, handle: { command, outcome in
                        if command == chunks * perChunk {
                            if case .reply(let reply) = outcome, reply.isInteger { length = reply.integer }
                            return
                        }
                        guard command % perChunk == 0 else { return }  // LRU stamps: best effort
                        let lo = range.lowerBound + (command / perChunk) * maxBatch
                        let hi = min(range.upperBound, lo + maxBatch)
                        switch outcome {
                        case .reply(let reply) where reply.isInteger:
                            s.counts[p] += reply.integer
                        case .reply(let reply):
                            s.failed[p] += hi - lo
                            s.failures[p] = unexpected(reply, "HSET", t.values[p])
                        case .failure(let failure):
                            s.failed[p] += hi - lo
                            s.failures[p] = failure
                        }
                    })
                    if margin != .max && length > margin {
                        let (evicted, failure) = resolveOverflow(t, partition: p, length: length)
                        s.extra[p] = evicted
                        if let failure {
                            failureLog.warning(key: "overflow \(failure.address)", "redis_cluster: table \(tag) partition \(p): overflow resolution on \(failure.address) failed: \(failure.message)")
                        }
                    }
                }
            }
            var inserted = 0
            var failed = 0
            var evicted = 0
            var byNode: [String: (keys: Int, message: String)] = [:]
            for p in 0..<partitionCount {
                inserted += s.counts[p]
                failed += s.failed[p]
                evicted += s.extra[p]
                if let failure = s.failures[p] {
                    let previous = byNode[failure.address]
                    byNode[failure.address] = ((previous?.keys ?? 0) + s.failed[p], previous?.message ?? failure.message)
                }
            }
            if evicted > 0 {
                overflowEvictions.add(evicted, ordering: .relaxed)
                logger.debug("redis_cluster: table \(tag): evicted \(evicted) entries (\(policy.rawValue)) to stay within overflow_margin \(margin)")
            }
            if failed > 0 {
                failedInsertKeys.add(failed, ordering: .relaxed)
                let nodes = byNode.keys.sorted().map { "\($0) (\(byNode[$0]!.keys) keys: \(byNode[$0]!.message))" }
                let summary = "stored \(keys.count - failed) of \(keys.count) keys; \(failed) keys were not stored because \(byNode.count == 1 ? "a node" : "\(byNode.count) nodes") failed: \(nodes.joined(separator: "; "))"
                logger.error("redis_cluster: insert into \(tag): \(summary)")
                throw HPSError(
                    .database, subject: tag, "insert into Redis Cluster incomplete: \(summary)", underlying: byNode.values.first?.message,
                    unwrittenKeysByNode: byNode.mapValues(\.keys))
            }
            return inserted
        }
    }

    /// - Throws: ``HPSError`` `.invalidArgument` when `values` is too small; `.database` when `valueSize` differs
    ///   from the table's. Keys on a failed node become misses, not errors.
    @discardableResult
    public func fetch(
        table tag: String, keys: UnsafeBufferPointer<Int64>, values: UnsafeMutableRawBufferPointer, valueSize: Int,
        onMiss: (Int) -> Void
    ) throws -> Int {
        guard values.count >= keys.count * valueSize else {
            throw HPSError(.invalidArgument, subject: tag, "values hold \(values.count) bytes, \(keys.count) keys × \(valueSize) bytes needed")
        }
        if keys.isEmpty { return 0 }
        let t = tableKeys(tag)
        let keyBase = UnsafeRawPointer(keys.baseAddress!)
        let out = values.baseAddress!
        let maxBatch = self.maxBatch
        let touch = config.overflowPolicy != .evictRandom
        return try scratch.with(capacity: keys.count) { s in
            s.group(keys)
            pool.run(count: partitionCount) { p in
                let range = s.range(p)
                guard !range.isEmpty else { return }
                let chunks = (range.count + maxBatch - 1) / maxBatch
                var missCount = 0
                client.pipeline(slot: t.slots[p], count: chunks, build: { chunk, c in
                    let lo = range.lowerBound + chunk * maxBatch
                    let hi = min(range.upperBound, lo + maxBatch)
                    c.append(argc: 2 + hi - lo) { argv, lengths in
                        set(argv, lengths, 0, Verb.hmget)
                        set(argv, lengths, 1, t.values[p])
                        var a = 2
                        for j in lo..<hi {
                            argv[a] = (keyBase + Int(s.order[j]) * 8).assumingMemoryBound(to: CChar.self)
                            lengths[a] = 8
                            a += 1
                        }
                    }
                }, handle: { chunk, outcome in
                    let lo = range.lowerBound + chunk * maxBatch
                    let hi = min(range.upperBound, lo + maxBatch)
                    if case .reply(let reply) = outcome, reply.isArray, reply.count == hi - lo {
                        for j in lo..<hi {
                            let i = Int(s.order[j])
                            let element = reply[j - lo]
                            if element.isString {
                                let bytes = element.bytes
                                if bytes.count == valueSize {
                                    (out + i * valueSize).copyMemory(from: bytes.baseAddress!, byteCount: valueSize)
                                    continue
                                }
                                s.extra[p] = bytes.count
                            }
                            s.misses[range.lowerBound + missCount] = Int32(truncatingIfNeeded: i)
                            missCount += 1
                        }
                        return
                    }
                    switch outcome {
                    case .reply(let reply): s.failures[p] = unexpected(reply, "HMGET", t.values[p])
                    case .failure(let failure): s.failures[p] = failure
                    }
                    s.failed[p] += hi - lo
                    for j in lo..<hi {
                        s.misses[range.lowerBound + missCount] = s.order[j]
                        missCount += 1
                    }
                })
                s.counts[p] = missCount
            }
            var misses = 0
            for p in 0..<partitionCount where s.extra[p] != 0 {
                let stored = s.extra[p]
                valueSizes.withLock { $0[tag] = stored }
                throw HPSError(.database, subject: tag, "fetch with value size \(valueSize) bytes, but the table holds \(stored)-byte values")
            }
            for p in 0..<partitionCount {
                let start = s.starts[p]
                for j in start..<(start + s.counts[p]) { onMiss(Int(s.misses[j])) }
                misses += s.counts[p]
                if let failure = s.failures[p] { reportLookupFailure(failure, keys: s.failed[p], operation: "fetch", tag: tag) }
            }
            if touch && misses < keys.count { queueMetadataUpdate(t, keys: keys, scratch: s) }
            return keys.count - misses
        }
    }

    /// - Throws: ``HPSError`` `.database` naming the failed nodes after every partition was tried.
    @discardableResult
    public func evict(table tag: String) throws -> Int {
        let t = tableKeys(tag)
        // LRU/LFU updates queued by earlier fetches must not recreate the metadata hash afterwards.
        if config.overflowPolicy != .evictRandom { waitForMetadataUpdates() }
        let results = PartitionResults(partitionCount)
        defer { results.release() }
        pool.run(count: partitionCount) { p in
            client.pipeline(slot: t.slots[p], count: 2, build: { command, c in
                if command == 0 {
                    c.append(argc: 2) { argv, lengths in
                        set(argv, lengths, 0, Verb.hlen)
                        set(argv, lengths, 1, t.values[p])
                    }
                } else {
                    c.append(argc: 3) { argv, lengths in
                        set(argv, lengths, 0, Verb.del)
                        set(argv, lengths, 1, t.values[p])
                        set(argv, lengths, 2, t.meta[p])
                    }
                }
            }, handle: { command, outcome in
                switch outcome {
                case .reply(let reply) where reply.isInteger: if command == 0 { results.counts[p] = reply.integer }
                case .reply(let reply): results.failures[p] = unexpected(reply, command == 0 ? "HLEN" : "DEL", t.values[p])
                case .failure(let failure): results.failures[p] = failure
                }
            })
        }
        valueSizes.withLock { _ = $0.removeValue(forKey: tag) }
        try results.throwIfFailed(operation: "evict", tag: tag, keys: nil)
        return results.sum
    }

    /// - Throws: ``HPSError`` `.database` naming the failed nodes after every partition was tried.
    @discardableResult
    public func evict(table tag: String, keys: UnsafeBufferPointer<Int64>) throws -> Int {
        if keys.isEmpty { return 0 }
        let t = tableKeys(tag)
        if config.overflowPolicy != .evictRandom { waitForMetadataUpdates() }
        let keyBase = UnsafeRawPointer(keys.baseAddress!)
        let maxBatch = self.maxBatch
        return try scratch.with(capacity: keys.count) { s in
            s.group(keys)
            pool.run(count: partitionCount) { p in
                let range = s.range(p)
                guard !range.isEmpty else { return }
                let chunks = (range.count + maxBatch - 1) / maxBatch
                client.pipeline(slot: t.slots[p], count: chunks * 2, build: { command, c in
                    let lo = range.lowerBound + (command / 2) * maxBatch
                    let hi = min(range.upperBound, lo + maxBatch)
                    appendKeyCommand(c, Verb.hdel, command % 2 == 0 ? t.values[p] : t.meta[p], count: hi - lo) { j in
                        keyBase + Int(s.order[lo + j]) * 8
                    }
                }, handle: { command, outcome in
                    let lo = range.lowerBound + (command / 2) * maxBatch
                    let hi = min(range.upperBound, lo + maxBatch)
                    switch outcome {
                    case .reply(let reply) where reply.isInteger: if command % 2 == 0 { s.counts[p] += reply.integer }
                    case .reply(let reply):
                        s.failed[p] += hi - lo
                        s.failures[p] = unexpected(reply, "HDEL", t.values[p])
                    case .failure(let failure):
                        if command % 2 == 0 { s.failed[p] += hi - lo }
                        s.failures[p] = failure
                    }
                })
            }
            var removed = 0
            var failures: [RedisFailure] = []
            var failed = 0
            for p in 0..<partitionCount {
                removed += s.counts[p]
                failed += s.failed[p]
                if let failure = s.failures[p] { failures.append(failure) }
            }
            if !failures.isEmpty {
                throw HPSError(.database, subject: tag, "evicting \(keys.count) keys from Redis Cluster incomplete: \(failed) keys not removed; \(describe(failures))", underlying: failures[0].message)
            }
            return removed
        }
    }

    /// - Throws: ``HPSError`` `.database` naming the node when a `SCAN` fails.
    public func findTables(model: String) throws -> [String] {
        let pattern = RedisKeyLayout.valueHashPattern(model: model)
        let prefix = TableTag.modelPrefix(model)
        var tags = Set<String>()
        for node in client.masters {
            var cursor = "0"
            repeat {
                let reply: RedisValue
                do {
                    reply = try client.command(on: node, ["SCAN", cursor, "MATCH", pattern, "COUNT", "1000"])
                } catch {
                    throw HPSError(.database, subject: node.address, "cannot list the tables of model \(model)", cause: error)
                }
                guard case .array(let parts) = reply, parts.count == 2, let next = parts[0].text, case .array(let names) = parts[1] else {
                    throw HPSError(.database, subject: node.address, "unexpected SCAN reply while listing model \(model)", underlying: reply.description)
                }
                for name in names {
                    if let key = name.text, let parsed = RedisKeyLayout.parse(key), parsed.tag.hasPrefix(prefix) { tags.insert(parsed.tag) }
                }
                cursor = next
            } while cursor != "0"
        }
        return tags.sorted()
    }

    /// - Throws: ``HPSError`` `.database` naming the node when an `HSCAN` fails; whatever `body` throws.
    public func forEachChunk(
        table tag: String, maxChunk: Int,
        _ body: (UnsafeBufferPointer<Int64>, UnsafeRawBufferPointer, Int) throws -> Void
    ) throws {
        let t = tableKeys(tag)
        let chunk = max(1, maxChunk)
        let count = Array(String(chunk).utf8)
        var valueSize = valueSizes.withLock { $0[tag] } ?? 0
        var keys: [Int64] = []
        var values: [UInt8] = []
        func flush(upTo limit: Int) throws {
            while keys.count >= limit && !keys.isEmpty {
                let n = min(chunk, keys.count)
                try keys.withUnsafeBufferPointer { k in
                    try values.withUnsafeBytes { v in
                        try body(UnsafeBufferPointer(rebasing: k[0..<n]), UnsafeRawBufferPointer(rebasing: v[0..<(n * valueSize)]), valueSize)
                    }
                }
                keys.removeFirst(n)
                values.removeFirst(n * valueSize)
            }
        }
        for p in 0..<partitionCount {
            var cursor: [UInt8] = Array("0".utf8)
            var seen = Set<Int64>()
            repeat {
                var failure: RedisFailure? = nil
                var next: [UInt8]? = nil
                client.pipeline(slot: t.slots[p], count: 1, build: { _, c in
                    cursor.withUnsafeBytes { cur in
                        count.withUnsafeBytes { cnt in
                            c.append(argc: 5) { argv, lengths in
                                set(argv, lengths, 0, Verb.hscan)
                                set(argv, lengths, 1, t.values[p])
                                argv[2] = cur.baseAddress!.assumingMemoryBound(to: CChar.self)
                                lengths[2] = cur.count
                                set(argv, lengths, 3, Verb.count)
                                argv[4] = cnt.baseAddress!.assumingMemoryBound(to: CChar.self)
                                lengths[4] = cnt.count
                            }
                        }
                    }
                }, handle: { _, outcome in
                    switch outcome {
                    case .reply(let reply) where reply.isArray && reply.count == 2 && reply[1].isArray:
                        next = Array(reply[0].bytes)
                        let items = reply[1]
                        var e = 0
                        while e + 1 < items.count {
                            let field = items[e].bytes
                            let value = items[e + 1].bytes
                            e += 2
                            guard field.count == 8 else { continue }
                            if valueSize == 0 { valueSize = value.count }
                            guard value.count == valueSize else {
                                failure = RedisFailure(kind: .protocolError, address: t.tag, message: "a value of \(value.count) bytes in a table of \(valueSize)-byte values")
                                return
                            }
                            let key = field.loadUnaligned(as: Int64.self)
                            guard seen.insert(key).inserted else { continue }
                            keys.append(key)
                            values.append(contentsOf: value)
                        }
                    case .reply(let reply): failure = unexpected(reply, "HSCAN", t.values[p])
                    case .failure(let f): failure = f
                    }
                })
                if let failure {
                    throw HPSError(.database, subject: tag, "cannot read partition \(p) of the table", underlying: failure.description)
                }
                try flush(upTo: chunk)
                cursor = next ?? Array("0".utf8)
            } while cursor != Array("0".utf8)
        }
        try flush(upTo: 1)
    }

    // MARK: Tables

    /// The hash keys and slots of every partition of `tag`, computed once per tag.
    func tableKeys(_ tag: String) -> TableKeys {
        if let t = tables.withLock({ $0[tag] }) { return t }
        let t = TableKeys(tag: tag, partitions: partitionCount)
        return tables.withLock { map in
            if let existing = map[tag] { return existing }
            map[tag] = t
            return t
        }
    }

    /// Checks `valueSize` against the table's, which is learned from the cluster (one value of any
    /// partition) the first time this process writes the table.
    func checkValueSize(_ t: TableKeys, _ valueSize: Int) throws {
        if let known = valueSizes.withLock({ $0[t.tag] }) {
            guard known == valueSize else {
                throw HPSError(.database, subject: t.tag, "value size \(valueSize) bytes does not match the table's \(known) bytes")
            }
            return
        }
        let results = PartitionResults(partitionCount)
        defer { results.release() }
        pool.run(count: partitionCount) { p in
            client.pipeline(slot: t.slots[p], count: 1, build: { _, c in
                c.append(argc: 4) { argv, lengths in
                    set(argv, lengths, 0, Verb.hrandfield)
                    set(argv, lengths, 1, t.values[p])
                    set(argv, lengths, 2, Verb.one)
                    set(argv, lengths, 3, Verb.withValues)
                }
            }, handle: { _, outcome in
                if case .reply(let reply) = outcome, reply.isArray, reply.count == 2, reply[1].isString {
                    results.counts[p] = reply[1].bytes.count
                }
            })
        }
        let stored = (0..<partitionCount).map { results.counts[$0] }.first { $0 != 0 }
        if let stored, stored != valueSize {
            valueSizes.withLock { $0[t.tag] = stored }
            throw HPSError(.database, subject: t.tag, "value size \(valueSize) bytes does not match the table's \(stored) bytes")
        }
        valueSizes.withLock { $0[t.tag] = valueSize }
    }
}

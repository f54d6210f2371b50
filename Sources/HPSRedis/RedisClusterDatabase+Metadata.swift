// Overflow resolution and LRU/LFU metadata of `RedisClusterDatabase`: eviction down to the resolution target
// (random, oldest stamps or smallest counters), the background queue that stamps fetched keys, and the
// strictly increasing stamp clock.
import HPS

extension RedisClusterDatabase {
    /// Evicts entries of partition `p` down to `round(overflow_margin × overflow_resolution_target)`.
    func resolveOverflow(_ t: TableKeys, partition p: Int, length: Int) -> (evicted: Int, failure: RedisFailure?) {
        let margin = config.overflowMargin
        let target = max(0, min(margin, Int((Double(margin) * config.overflowResolutionTarget).rounded())))
        var excess = length - target
        var evicted = 0
        if config.overflowPolicy == .evictRandom {
            var rounds = 0
            while excess > 0 && rounds < 1000 {
                rounds += 1
                let n = min(excess, maxBatch)
                let countText = Array(String(n).utf8)
                var fields: [Int64] = []
                var failure: RedisFailure? = nil
                countText.withUnsafeBufferPointer { cnt in
                    let countArg = HashKey(UnsafeRawPointer(cnt.baseAddress!).assumingMemoryBound(to: CChar.self), cnt.count)
                    client.pipeline(slot: t.slots[p], count: 1, build: { _, c in
                        c.append(argc: 3) { argv, lengths in
                            set(argv, lengths, 0, Verb.hrandfield)
                            set(argv, lengths, 1, t.values[p])
                            set(argv, lengths, 2, countArg)
                        }
                    }, handle: { _, outcome in
                        switch outcome {
                        case .reply(let reply) where reply.isArray:
                            fields.reserveCapacity(reply.count)
                            for e in 0..<reply.count where reply[e].bytes.count == 8 { fields.append(reply[e].bytes.loadUnaligned(as: Int64.self)) }
                        case .reply(let reply): failure = unexpected(reply, "HRANDFIELD", t.values[p])
                        case .failure(let f): failure = f
                        }
                    })
                }
                if let failure { return (evicted, failure) }
                if fields.isEmpty { break }
                let (removed, deleteFailure) = deleteFields(t, partition: p, fields, fromMeta: false)
                evicted += removed
                if let deleteFailure { return (evicted, deleteFailure) }
                if removed == 0 { break }
                excess -= removed
            }
            return (evicted, nil)
        }
        // LRU / LFU: order every key by its stamp or counter (absent: 0) and drop the lowest.
        var keys: [Int64] = []
        var scores: [Int64: Int64] = [:]
        var failure: RedisFailure? = nil
        client.pipeline(slot: t.slots[p], count: 2, build: { command, c in
            c.append(argc: 2) { argv, lengths in
                set(argv, lengths, 0, command == 0 ? Verb.hkeys : Verb.hgetall)
                set(argv, lengths, 1, command == 0 ? t.values[p] : t.meta[p])
            }
        }, handle: { command, outcome in
            switch outcome {
            case .reply(let reply) where reply.isArray:
                if command == 0 {
                    keys.reserveCapacity(reply.count)
                    for e in 0..<reply.count where reply[e].bytes.count == 8 { keys.append(reply[e].bytes.loadUnaligned(as: Int64.self)) }
                } else {
                    var e = 0
                    while e + 1 < reply.count {
                        if reply[e].bytes.count == 8 {
                            scores[reply[e].bytes.loadUnaligned(as: Int64.self)] = Self.score(reply[e + 1].bytes)
                        }
                        e += 2
                    }
                }
            case .reply(let reply): failure = unexpected(reply, command == 0 ? "HKEYS" : "HGETALL", t.values[p])
            case .failure(let f): failure = f
            }
        })
        if let failure { return (0, failure) }
        excess = min(excess, keys.count)
        guard excess > 0 else { return (0, nil) }
        let ranked = keys.map { (key: $0, score: scores[$0] ?? 0) }.sorted { $0.score < $1.score }
        let victims = ranked.prefix(excess).map(\.key)
        let (removed, deleteFailure) = deleteFields(t, partition: p, victims, fromMeta: true)
        if deleteFailure == nil && scores.count > keys.count - removed {
            // Metadata of keys that are gone (evicted elsewhere, touched after eviction).
            let present = Set(keys)
            let stale = scores.keys.filter { !present.contains($0) }
            if !stale.isEmpty { _ = deleteFields(t, partition: p, stale, fromMeta: true, fromValues: false) }
        }
        return (removed, deleteFailure)
    }

    /// A metadata value as a number: ours are decimal (LFU counters from HINCRBY, LRU stamps in µs);
    /// HPS writes LRU stamps as 8 raw bytes of `time_t` (seconds), read here as µs so both order alike.
    static func score(_ bytes: UnsafeRawBufferPointer) -> Int64 {
        if !bytes.isEmpty, bytes.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }),
            let value = Int64(String(decoding: bytes, as: UTF8.self))
        {
            return value
        }
        if bytes.count == 8 { return bytes.loadUnaligned(as: Int64.self).multipliedReportingOverflow(by: 1_000_000).partialValue }
        return 0
    }

    /// HDEL `fields` from the value hash (and the metadata hash) of partition `p`.
    /// - Returns: how many left the value hash, and the failure if any.
    func deleteFields(
        _ t: TableKeys, partition p: Int, _ fields: [Int64], fromMeta: Bool, fromValues: Bool = true
    ) -> (removed: Int, failure: RedisFailure?) {
        let chunks = (fields.count + maxBatch - 1) / maxBatch
        let hashes = (fromValues ? [t.values[p]] : []) + (fromMeta ? [t.meta[p]] : [])
        var removed = 0
        var failure: RedisFailure? = nil
        fields.withUnsafeBufferPointer { f in
            let base = UnsafeRawPointer(f.baseAddress!)
            client.pipeline(slot: t.slots[p], count: chunks * hashes.count, build: { command, c in
                let lo = (command / hashes.count) * maxBatch
                let hi = min(fields.count, lo + maxBatch)
                appendKeyCommand(c, Verb.hdel, hashes[command % hashes.count], count: hi - lo) { j in base + (lo + j) * 8 }
            }, handle: { command, outcome in
                switch outcome {
                case .reply(let reply) where reply.isInteger: if fromValues && command % hashes.count == 0 { removed += reply.integer }
                case .reply(let reply): failure = unexpected(reply, "HDEL", t.values[p])
                case .failure(let f): failure = f
                }
            })
        }
        return (removed, failure)
    }

    /// Queues LRU stamps / LFU increments for the keys a fetch found (those not in the misses).
    func queueMetadataUpdate(_ t: TableKeys, keys: UnsafeBufferPointer<Int64>, scratch s: RedisBatchScratch) {
        var hits = 0
        var perPartition: [(partition: Int, keys: [Int64])] = []
        for p in 0..<partitionCount {
            let range = s.range(p)
            let missCount = s.counts[p]
            guard range.count > missCount else { continue }
            var found: [Int64] = []
            found.reserveCapacity(range.count - missCount)
            var m = range.lowerBound
            for j in range {
                let i = s.order[j]
                if m < range.lowerBound + missCount && s.misses[m] == i {
                    m += 1
                } else {
                    found.append(keys[Int(i)])
                }
            }
            hits += found.count
            perPartition.append((p, found))
        }
        if pendingMetadataKeys.add(hits, ordering: .relaxed).newValue > options.maxPendingMetadataKeys {
            pendingMetadataKeys.subtract(hits, ordering: .relaxed)
            metadataDropped.add(hits, ordering: .relaxed)
            return
        }
        let work = UnsafeTransfer(perPartition)
        let queued = hits
        metadataQueue.async { [self] in
            touch(t, work.value)
            pendingMetadataKeys.subtract(queued, ordering: .relaxed)
        }
    }

    /// Sends LRU stamps (`HSET t key stamp …`) or LFU increments (`HINCRBY t key 1`).
    func touch(_ t: TableKeys, _ perPartition: [(partition: Int, keys: [Int64])]) {
        let lfu = config.overflowPolicy == .evictLeastUsed
        let stampText = Array(String(nextStamp()).utf8)
        let maxBatch = self.maxBatch
        stampText.withUnsafeBufferPointer { stamp in
            let stampArg = HashKey(UnsafeRawPointer(stamp.baseAddress!).assumingMemoryBound(to: CChar.self), stamp.count)
            for (p, keys) in perPartition {
                keys.withUnsafeBufferPointer { k in
                    let base = UnsafeRawPointer(k.baseAddress!)
                    let commands = lfu ? keys.count : (keys.count + maxBatch - 1) / maxBatch
                    var dropped = 0
                    var failure: RedisFailure? = nil
                    client.pipeline(slot: t.slots[p], count: commands, build: { command, c in
                        if lfu {
                            c.append(argc: 4) { argv, lengths in
                                set(argv, lengths, 0, Verb.hincrby)
                                set(argv, lengths, 1, t.meta[p])
                                argv[2] = (base + command * 8).assumingMemoryBound(to: CChar.self)
                                lengths[2] = 8
                                set(argv, lengths, 3, Verb.one)
                            }
                            return
                        }
                        let lo = command * maxBatch
                        let hi = min(keys.count, lo + maxBatch)
                        c.append(argc: 2 + 2 * (hi - lo)) { argv, lengths in
                            set(argv, lengths, 0, Verb.hset)
                            set(argv, lengths, 1, t.meta[p])
                            var a = 2
                            for j in lo..<hi {
                                argv[a] = (base + j * 8).assumingMemoryBound(to: CChar.self)
                                lengths[a] = 8
                                set(argv, lengths, a + 1, stampArg)
                                a += 2
                            }
                        }
                    }, handle: { command, outcome in
                        if case .failure(let f) = outcome {
                            dropped += lfu ? 1 : min(keys.count, (command + 1) * maxBatch) - command * maxBatch
                            failure = f
                        }
                    })
                    if let failure {
                        metadataDropped.add(dropped, ordering: .relaxed)
                        failureLog.warning(key: "metadata \(failure.address)", "redis_cluster: \(t.tag): \(dropped) LRU/LFU updates not stored on \(failure.address): \(failure.message)")
                    }
                }
            }
        }
    }

    /// A strictly increasing LRU stamp: microseconds since the epoch, at least one more than the last.
    func nextStamp() -> Int64 {
        let now = WallClock.microseconds()
        var last = lastStamp.load(ordering: .relaxed)
        while true {
            let next = max(now, last + 1)
            let (exchanged, original) = lastStamp.compareExchange(expected: last, desired: next, ordering: .relaxed)
            if exchanged { return next }
            last = original
        }
    }
}

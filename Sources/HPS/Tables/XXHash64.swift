/// Streaming XXH64 (the public xxHash algorithm, 64-bit variant): a fast non-cryptographic hash used to
/// fingerprint table files. Feed bytes in any split with ``update(_:)``; ``finalize()`` gives the same value
/// as hashing all bytes at once.
struct XXHash64 {
    private static let p1: UInt64 = 0x9E37_79B1_85EB_CA87
    private static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    private static let p3: UInt64 = 0x1656_67B1_9E37_79F9
    private static let p4: UInt64 = 0x85EB_CA77_C2B2_AE63
    private static let p5: UInt64 = 0x27D4_EB2F_1656_67C5

    private let seed: UInt64
    private var v1, v2, v3, v4: UInt64
    private var totalLength = 0
    /// Bytes of an incomplete 32-byte stripe.
    private var pending: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    private var pendingCount = 0

    init(seed: UInt64 = 0) {
        self.seed = seed
        v1 = seed &+ Self.p1 &+ Self.p2
        v2 = seed &+ Self.p2
        v3 = seed
        v4 = seed &- Self.p1
    }

    @inline(__always)
    private static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }

    @inline(__always)
    private static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }

    @inline(__always)
    private static func merge(_ acc: UInt64, _ value: UInt64) -> UInt64 {
        (acc ^ round(0, value)) &* p1 &+ p4
    }

    @inline(__always)
    private static func load64(_ p: UnsafeRawPointer) -> UInt64 { UInt64(littleEndian: p.loadUnaligned(as: UInt64.self)) }

    @inline(__always)
    private mutating func consumeStripe(_ p: UnsafeRawPointer) {
        v1 = Self.round(v1, Self.load64(p))
        v2 = Self.round(v2, Self.load64(p + 8))
        v3 = Self.round(v3, Self.load64(p + 16))
        v4 = Self.round(v4, Self.load64(p + 24))
    }

    /// Adds `bytes` to the hash.
    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard var p = bytes.baseAddress, bytes.count > 0 else { return }
        var remaining = bytes.count
        totalLength += remaining
        if pendingCount > 0 {
            let take = min(32 - pendingCount, remaining)
            let offset = pendingCount
            let source = p
            withUnsafeMutableBytes(of: &pending) { $0.baseAddress!.advanced(by: offset).copyMemory(from: source, byteCount: take) }
            pendingCount += take
            p += take
            remaining -= take
            guard pendingCount == 32 else { return }
            var stripe = pending
            withUnsafeBytes(of: &stripe) { consumeStripe($0.baseAddress!) }
            pendingCount = 0
        }
        while remaining >= 32 {
            consumeStripe(p)
            p += 32
            remaining -= 32
        }
        if remaining > 0 {
            let source = p
            let count = remaining
            withUnsafeMutableBytes(of: &pending) { $0.baseAddress!.copyMemory(from: source, byteCount: count) }
            pendingCount = remaining
        }
    }

    /// The hash of every byte added so far.
    func finalize() -> UInt64 {
        var h: UInt64
        if totalLength >= 32 {
            h = Self.rotl(v1, 1) &+ Self.rotl(v2, 7) &+ Self.rotl(v3, 12) &+ Self.rotl(v4, 18)
            h = Self.merge(h, v1)
            h = Self.merge(h, v2)
            h = Self.merge(h, v3)
            h = Self.merge(h, v4)
        } else {
            h = seed &+ Self.p5
        }
        h &+= UInt64(totalLength)
        var tail = pending
        withUnsafeBytes(of: &tail) { raw in
            var p = raw.baseAddress!
            var remaining = pendingCount
            while remaining >= 8 {
                h ^= Self.round(0, Self.load64(p))
                h = Self.rotl(h, 27) &* Self.p1 &+ Self.p4
                p += 8
                remaining -= 8
            }
            if remaining >= 4 {
                h ^= UInt64(UInt32(littleEndian: p.loadUnaligned(as: UInt32.self))) &* Self.p1
                h = Self.rotl(h, 23) &* Self.p2 &+ Self.p3
                p += 4
                remaining -= 4
            }
            while remaining > 0 {
                h ^= UInt64(p.load(as: UInt8.self)) &* Self.p5
                h = Self.rotl(h, 11) &* Self.p1
                p += 1
                remaining -= 1
            }
        }
        h ^= h >> 33
        h &*= Self.p2
        h ^= h >> 29
        h &*= Self.p3
        h ^= h >> 32
        return h
    }
}

import Foundation
import HPS

/// Zipf-distributed row indices over `0 ..< rows` (rank 0 most frequent), sampled by inverting a
/// precomputed cumulative distribution.
struct ZipfSampler {
    private let cdf: [Double]
    private var rng: SplitMix64

    init(rows: Int, alpha: Double, seed: UInt64) {
        var cdf = [Double](repeating: 0, count: rows)
        var sum = 0.0
        for i in 0..<rows {
            sum += 1.0 / pow(Double(i + 1), alpha)
            cdf[i] = sum
        }
        for i in 0..<rows { cdf[i] /= sum }
        self.cdf = cdf
        rng = SplitMix64(seed: seed)
    }

    mutating func next() -> Int {
        let u = Double(rng.next() >> 11) / Double(1 << 53)
        var lo = 0
        var hi = cdf.count - 1
        while lo < hi {
            let mid = (lo + hi) / 2
            if cdf[mid] < u { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// A batch of row indices.
    mutating func batch(_ n: Int) -> [Int] { (0..<n).map { _ in next() } }
}

/// Synthetic tables: key of row `i` is `keyOf(i)` (scattered so hot keys are not adjacent in memory
/// order of the hash map), vector elements are a deterministic function of the row.
enum SyntheticTable {
    static func key(row: Int) -> Int64 { Int64(row) &* 2_654_435_761 &+ 17 }

    /// Writes a table directory of `rows` × `dim` and returns its path.
    static func write(to path: String, rows: Int, dim: Int, seed: UInt64) throws {
        let chunk = 65536
        var keys: [Int64] = []
        var vectors: [Float] = []
        // Stream through the writer by building the files in chunks.
        let keyPath = path + "/key"
        let vectorPath = path + "/emb_vector"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: keyPath, contents: nil)
        FileManager.default.createFile(atPath: vectorPath, contents: nil)
        let keyHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: keyPath))
        let vectorHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: vectorPath))
        defer {
            try? keyHandle.close()
            try? vectorHandle.close()
        }
        var rng = SplitMix64(seed: seed)
        var start = 0
        while start < rows {
            let n = min(chunk, rows - start)
            keys = (start..<(start + n)).map { key(row: $0) }
            vectors = (0..<(n * dim)).map { _ in Float(Int32(truncatingIfNeeded: rng.next() >> 40)) / Float(1 << 23) }
            try keyHandle.write(contentsOf: keys.withUnsafeBytes { Data($0) })
            try vectorHandle.write(contentsOf: vectors.withUnsafeBytes { Data($0) })
            start += n
        }
    }
}

/// Wall-clock timing and percentiles.
struct Stopwatch {
    private let start = ContinuousClock.now
    var seconds: Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}

extension Array where Element == Double {
    /// The `p`-th percentile (0...100) of the values (nearest rank).
    func percentile(_ p: Double) -> Double {
        guard !isEmpty else { return 0 }
        let sorted = self.sorted()
        let rank = Swift.min(sorted.count - 1, Swift.max(0, Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1))
        return sorted[rank]
    }
}

func formatRate(_ perSecond: Double) -> String {
    if perSecond >= 1e9 { return String(format: "%.2f G", perSecond / 1e9) }
    if perSecond >= 1e6 { return String(format: "%.2f M", perSecond / 1e6) }
    if perSecond >= 1e3 { return String(format: "%.1f K", perSecond / 1e3) }
    return String(format: "%.0f", perSecond)
}

func formatMicros(_ seconds: Double) -> String { String(format: "%.0f µs", seconds * 1e6) }

/// Host twins of the workload generators in Kernels/bench.cu: the same Zipf keys and the same vectors, bit
/// for bit, so CPU runs and checks reproduce what the GPU generated.
public enum CUDAWorkload {
    @inline(__always)
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The cumulative distribution of Zipf(`alpha`) over ranks `0 ..< rows` (rank 0 most frequent); the last
    /// entry is exactly 1.
    public static func zipfCDF(rows: Int, alpha: Double) -> [Double] {
        var cdf = [Double](repeating: 0, count: rows)
        var sum = 0.0
        for i in 0..<rows {
            sum += 1.0 / pow(Double(i + 1), alpha)
            cdf[i] = sum
        }
        for i in 0..<rows { cdf[i] /= sum }
        cdf[rows - 1] = 1
        return cdf
    }

    /// Draw `index` of stream `seed`: a Zipf rank (as the kernel `bench_zipf_keys` computes it).
    @inline(__always)
    public static func zipfKey(cdf: UnsafeBufferPointer<Double>, seed: UInt64, index: UInt64) -> Int64 {
        let h = mix(seed &+ (index &+ 1) &* 0x9E37_79B9_7F4A_7C15)
        let u = Double(h >> 11) * (1.0 / 9007199254740992.0)
        var lo = 0
        var hi = cdf.count - 1
        while lo < hi {
            let mid = (lo + hi) >> 1
            if cdf[mid] < u { lo = mid + 1 } else { hi = mid }
        }
        return Int64(lo)
    }

    /// Element `element` of the benchmark vector of `key` (as `bench_fill_values` / `bench_key_values`): a
    /// float with 24 random bits in (−1, 1).
    @inline(__always)
    public static func value(key: Int64, element: Int, dimension: Int, seed: UInt64) -> Float {
        let index = UInt64(bitPattern: key) &* UInt64(dimension) &+ UInt64(element)
        let h = mix(seed ^ (index &* 0x9E37_79B9_7F4A_7C15))
        return Float(Int32(truncatingIfNeeded: h >> 40) - 8_388_608) * (1.0 / 8_388_608.0)
    }

    /// The benchmark vector of `key`.
    public static func vector(key: Int64, dimension: Int, seed: UInt64, into output: UnsafeMutablePointer<Float>) {
        for e in 0..<dimension { output[e] = value(key: key, element: e, dimension: dimension, seed: seed) }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

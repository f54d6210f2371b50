import CHPSSupport
import Dispatch
import HPS

/// The baseline of the lookup benchmarks: a gather from a plain in-memory array of rows, with no hashing,
/// no tiers and no deduplication — the speed any embedding lookup is measured against.
public enum ArrayGather {
    /// `output[i] = table[rows[i]]` for rows of `dimension` floats, split over `threads` threads.
    /// - Parameters:
    ///   - table: rows × `dimension` floats, row-major.
    ///   - rows: the row index of each output vector; every index must be a row of `table`.
    ///   - output: `rows.count × dimension` floats.
    public static func gather(_ table: UnsafePointer<Float>, rows: [Int], dim dimension: Int, into output: UnsafeMutablePointer<Float>, threads: Int) {
        rows.withUnsafeBufferPointer { r in
            if threads <= 1 {
                for i in 0..<r.count { hps_copy(output + i * dimension, table + r[i] * dimension, dimension * 4) }
                return
            }
            let job = UnsafeTransfer((table, r, output))
            DispatchQueue.concurrentPerform(iterations: threads) { t in
                let (table, r, output) = job.value
                let lo = r.count * t / threads
                let hi = r.count * (t + 1) / threads
                for i in lo..<hi { hps_copy(output + i * dimension, table + r[i] * dimension, dimension * 4) }
            }
        }
    }
}

// The entry limit a volatile database derives from its config, shared by every volatile backend.

extension VolatileDatabaseConfig {
    /// The most entries one table may hold: `overflow_margin` per partition over `max(1, num_partitions)`
    /// partitions (at least one partition's margin), `Int.max` when the margin is unlimited or the product
    /// overflows.
    package var tableCapacity: Int {
        let margin = overflowMargin
        if margin == .max { return .max }
        let (product, overflow) = margin.multipliedReportingOverflow(by: max(1, numPartitions))
        return overflow ? .max : max(product, margin)
    }
}

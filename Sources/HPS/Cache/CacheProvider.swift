/// What a lookup session asks for when it makes the cache of one table on one device.
public struct CacheRequest: Sendable {
    public var model: ModelConfig
    public var table: TableConfig
    /// The device id from `deployed_device_list`.
    public var device: Int
    /// The effective cache type (`use_static_table` applied).
    public var type: EmbeddingCacheType
    /// Rows of the table files.
    public var tableRows: Int

    public init(model: ModelConfig, table: TableConfig, device: Int, type: EmbeddingCacheType, tableRows: Int) {
        self.model = model
        self.table = table
        self.device = device
        self.type = type
        self.tableRows = tableRows
    }

    /// Slots of a dynamic cache: `max(gpucacheper × rows, 64)`.
    public var dynamicCapacity: Int {
        max(Int((model.deviceCachePercentage * Double(tableRows)).rounded(.down)), DynamicCache.slotsPerSet)
    }

    /// Whether the cache must hold the whole table (static, uvm).
    public var holdsWholeTable: Bool { type == .static || type == .uvm }
}

/// Makes device caches. The runtime installs a provider for accelerators (e.g. CUDA) when one is usable;
/// without one, or when it declines, sessions use the CPU caches.
public protocol CacheProvider: Sendable {
    /// A cache for `request`, or nil to let the CPU cache serve it (the provider logs why).
    /// - Throws: the provider's error when it should make the cache but cannot (e.g. ``HPSError`` `.device`); the
    ///   session then fails to build. Declining (returning nil) is not an error.
    func makeCache(_ request: CacheRequest, logger: HPSLogger) throws -> (any EmbeddingCache)?

    /// The device-resident lookup of `request`'s table over `cache` (the session's cache of that table, nil
    /// when `gpucache` is false), or nil when this provider serves no device memory for it.
    /// - Throws: when the provider should serve it but cannot (the session then fails to build).
    func makeDeviceLookup(_ request: CacheRequest, cache: (any EmbeddingCache)?, logger: HPSLogger) throws -> (any DeviceTableLookup)?
}

extension CacheProvider {
    /// - Throws: never: this default serves no device memory and returns nil.
    public func makeDeviceLookup(_ request: CacheRequest, cache: (any EmbeddingCache)?, logger: HPSLogger) throws -> (any DeviceTableLookup)? { nil }
}

/// The CPU caches: ``DynamicCache`` for dynamic (and stochastic), ``StaticCache`` for static and uvm.
public struct CPUCacheProvider: CacheProvider {
    public init() {}

    public func makeCache(_ request: CacheRequest, logger: HPSLogger) -> (any EmbeddingCache)? { cache(for: request) }

    /// The CPU cache for `request`.
    public func cache(for request: CacheRequest) -> any EmbeddingCache {
        request.holdsWholeTable
            ? StaticCache(capacity: max(1, request.tableRows), dimension: request.table.dimension)
            : DynamicCache(capacity: request.dynamicCapacity, dimension: request.table.dimension, admission: request.model.cacheAdmission)
    }
}

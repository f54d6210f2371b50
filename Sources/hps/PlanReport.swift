import HPS

/// What `hps plan` reports (printed as tables, or encoded as JSON with `--json`). Bytes are exact byte counts.
struct MemoryPlanReport: Encodable {
    struct GPU: Encodable {
        var device: Int
        var name: String
        var bytes: Int
    }

    /// One device's share of a table.
    struct DeviceBytes: Encodable {
        var device: Int
        /// Whether the cache is on a CUDA device here (else it is a CPU cache in host memory).
        var onGPU: Bool
        var cacheBytes = 0
        /// The uvm table's host part (pinned).
        var pinnedHostBytes = 0
        /// Device bytes of each device-memory lookup in flight (made on first use; up to
        /// max(2, num_of_worker_buffer_in_pool) of them).
        var deviceLookupBytesPerWorker = 0
    }

    struct Table: Encodable {
        var model: String
        var table: String
        var tag: String
        var rows: Int
        var dimension: Int
        var rawBytes = 0
        var cache = ""
        var devices: [DeviceBytes] = []
        var volatileDatabase = ""
        var volatileBytes = 0
        var persistentDatabase = ""
        var persistentBytes = 0
    }

    struct Session: Encodable {
        var model: String
        var devices: [Int]
        var bytesPerDevice: Int
    }

    struct Total: Encodable {
        var device: Int
        var bytes: Int
        var capacity: Int?
        var fits: Bool?
    }

    struct Prediction: Encodable {
        struct Size: Encodable {
            var fraction: Double
            var slots: Int
            var configured: Bool
            var hitRatePerKey: Double
            var hitRatePerDistinctKey: Double
        }

        var model: String
        var table: String
        var source: String
        var batch: Int
        var target: Double
        var sizes: [Size]
        /// The smallest fraction whose hit rate per key reaches the target (nil: none does).
        var suggestedFraction: Double?
    }

    var config: String
    var gpus: [GPU]
    var hostMemory: Int
    var tables: [Table] = []
    var sessions: [Session] = []
    /// Device memory per CUDA device (caches only; device-memory lookups add their workers on first use).
    var deviceTotals: [Total] = []
    /// Host memory: volatile DB, CPU caches, uvm host parts, session buffers.
    var hostBytes = 0
    var hostFits = true
    var diskBytes = 0
    var prediction: Prediction?

    init(config: String, gpus: [GPU], hostMemory: Int) {
        self.config = config
        self.gpus = gpus
        self.hostMemory = hostMemory
    }

    /// Sums the tables into per-device and host totals and checks them against this machine.
    mutating func finish() {
        var perDevice: [Int: Int] = [:]
        hostBytes = 0
        diskBytes = 0
        for t in tables {
            hostBytes += t.volatileBytes
            diskBytes += t.persistentBytes
            for d in t.devices {
                if d.onGPU { perDevice[d.device, default: 0] += d.cacheBytes } else { hostBytes += d.cacheBytes }
                hostBytes += d.pinnedHostBytes
            }
        }
        for s in sessions { hostBytes += s.bytesPerDevice * s.devices.count }
        deviceTotals = perDevice.keys.sorted().map { d in
            let capacity = gpus.first { $0.device == d }?.bytes
            return Total(device: d, bytes: perDevice[d] ?? 0, capacity: capacity, fits: capacity.map { (perDevice[d] ?? 0) <= $0 })
        }
        hostFits = hostMemory == 0 || hostBytes <= hostMemory
    }

    func printText() {
        print("plan for \(config)")
        print(gpus.isEmpty ? "GPUs: none usable here (device caches would run on the CPU, in host memory)" : "GPUs: " + gpus.map { "\($0.device) \($0.name) \(bytes($0.bytes))" }.joined(separator: ", "))
        print("")
        print(pad(["model", "table", "rows", "dim", "raw", "device cache", "per device", "volatile DB", "persistent DB"]))
        for t in tables {
            let perDevice = t.devices.map { "\($0.onGPU ? "gpu" : "cpu")\($0.device) \(bytes($0.cacheBytes))\($0.pinnedHostBytes > 0 ? " + \(bytes($0.pinnedHostBytes)) pinned" : "")" }.joined(separator: ", ")
            print(pad([t.model, t.table, "\(t.rows)", "\(t.dimension)", bytes(t.rawBytes), t.cache, perDevice.isEmpty ? "-" : perDevice,
                       t.volatileBytes > 0 ? "\(bytes(t.volatileBytes)) \(t.volatileDatabase)" : t.volatileDatabase,
                       t.persistentBytes > 0 ? "\(bytes(t.persistentBytes)) rocks_db" : t.persistentDatabase]))
        }
        print("")
        for s in sessions { print("lookup buffers of \(s.model): \(bytes(s.bytesPerDevice)) per deployed device (\(s.devices.count))") }
        for d in deviceTotals {
            let fit = d.fits.map { $0 ? "fits" : "DOES NOT FIT" } ?? ""
            print("GPU \(d.device): \(bytes(d.bytes)) of caches\(d.capacity.map { " of \(bytes($0)) — \(fit)" } ?? "")")
        }
        if let worker = tables.flatMap(\.devices).map(\.deviceLookupBytesPerWorker).max(), worker > 0 {
            print("device-memory lookups add up to \(bytes(worker)) per call in flight per table (on first use)")
        }
        print("host: \(bytes(hostBytes))\(hostMemory > 0 ? " of \(bytes(hostMemory)) — \(hostFits ? "fits" : "DOES NOT FIT")" : "")")
        if diskBytes > 0 { print("disk (RocksDB, estimated): \(bytes(diskBytes))") }
        if let p = prediction {
            print("")
            print("hit rate of \(p.model)/\(p.table) on \(p.source), batches of \(p.batch) keys (the dynamic cache replayed):")
            let widths = [13, 12, 18, 18, 12]
            print(pad(["gpucacheper", "slots", "hit rate per key", "per distinct key", ""], widths: widths))
            for s in p.sizes {
                print(pad([String(format2: s.fraction), "\(s.slots)", String(format4: s.hitRatePerKey), String(format4: s.hitRatePerDistinctKey), s.configured ? "(configured)" : ""], widths: widths))
            }
            if let f = p.suggestedFraction {
                print("smallest size reaching \(p.target) per key: gpucacheper \(String(format2: f))")
            } else {
                print("no size tried reaches \(p.target) per key")
            }
        }
    }

    private func pad(_ columns: [String], widths: [Int] = [8, 14, 11, 5, 10, 26, 34, 28, 16]) -> String {
        return zip(columns, widths + Array(repeating: 10, count: max(0, columns.count - widths.count)))
            .map { $0.count >= $1 ? $0 + " " : $0 + String(repeating: " ", count: $1 - $0.count) }.joined().trimmingTrailingSpaces()
    }

    private func bytes(_ n: Int) -> String {
        let b = Double(n)
        if b >= Double(1 << 30) { return String(format2: b / Double(1 << 30)) + " GiB" }
        if b >= Double(1 << 20) { return String(format2: b / Double(1 << 20)) + " MiB" }
        if b >= Double(1 << 10) { return String(format2: b / Double(1 << 10)) + " KiB" }
        return "\(n) B"
    }
}

extension String {
    init(format2 value: Double) { self = "\((value * 100).rounded() / 100)" }
    init(format4 value: Double) { self = "\((value * 10000).rounded() / 10000)" }

    func trimmingTrailingSpaces() -> String {
        var s = self
        while s.hasSuffix(" ") { s.removeLast() }
        return s
    }
}

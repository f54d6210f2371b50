/// The progress line of a table load, with rows done, rows/s, MB/s of table files and the time left at the
/// rate so far: every 10% of a table of a million rows or more, and every few seconds of a load that takes
/// longer than a few seconds.
struct LoadProgress {
    let tag: String
    let total: Int
    let bytesPerRow: Int
    let start: ContinuousClock.Instant
    /// Seconds before the first line, and between lines.
    var quiet: Double = 3
    var every: Double = 5
    private var next: Double
    private var nextRows: Int
    /// Tables of at least this many rows get a line every 10%.
    static let largeTable = 1_000_000

    init(tag: String, total: Int, bytesPerRow: Int, start: ContinuousClock.Instant, quiet: Double = 3, every: Double = 5) {
        self.tag = tag
        self.total = total
        self.bytesPerRow = bytesPerRow
        self.start = start
        self.quiet = quiet
        self.every = every
        next = quiet
        nextRows = total >= Self.largeTable ? total / 10 : .max
    }

    /// The line to log after `done` rows at `now`, or nil when it is not time for one.
    mutating func line(done: Int, now: ContinuousClock.Instant) -> String? {
        let elapsed = Self.seconds(now - start)
        guard done < total, elapsed > 0, elapsed >= next || done >= nextRows else { return nil }
        next = elapsed + every
        while done >= nextRows { nextRows += total / 10 }
        return Self.format(tag: tag, done: done, total: total, bytesPerRow: bytesPerRow, elapsed: elapsed)
    }

    static func format(tag: String, done: Int, total: Int, bytesPerRow: Int, elapsed: Double) -> String {
        let rate = Double(done) / elapsed
        let left = rate > 0 ? Double(total - done) / rate : .infinity
        let percent = total > 0 ? 100 * Double(done) / Double(total) : 100
        return "Table \(tag): loaded \(done) / \(total) rows (\(fixed(percent, 1))%), \(fixed(rate / 1e6, 2)) M rows/s, "
            + "\(fixed(rate * Double(bytesPerRow) / 1e6, 0)) MB/s, ETA \(left.isFinite ? fixed(left, 0) + " s" : "unknown")"
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    private static func fixed(_ value: Double, _ digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let rounded = (value * scale).rounded() / scale
        if digits == 0 { return String(Int(rounded)) }
        let whole = Int(rounded)
        var frac = String(Int(((abs(rounded) - Double(abs(whole))) * scale).rounded()))
        while frac.count < digits { frac = "0" + frac }
        return (rounded < 0 && whole == 0 ? "-" : "") + "\(whole).\(frac)"
    }
}

import Foundation

/// A fixed set of threads for blocking work (lookups that may wait on a database, model builds). Async
/// callers suspend on a continuation while a pool thread runs the work, so neither NIO's event loops nor
/// Swift's cooperative pool ever block on a lookup.
final class LookupThreadPool: @unchecked Sendable {
    // @unchecked Sendable: `condition` guards `queue`, `head` and `stopping`; `threads` is written only in init,
    // before any thread can see the pool.
    private let condition = NSCondition()
    private var queue: [@Sendable () -> Void] = []
    private var head = 0
    private var stopping = false
    private var threads: [Thread] = []

    init(threads count: Int, name: String) {
        for i in 0..<max(1, count) {
            let thread = Thread { [unowned self] in self.loop() }
            thread.name = "\(name)-\(i)"
            thread.stackSize = 4 << 20
            threads.append(thread)
            thread.start()
        }
    }

    private func loop() {
        while true {
            condition.lock()
            while head == queue.count && !stopping { condition.wait() }
            if head == queue.count {  // stopping and drained
                condition.unlock()
                return
            }
            let work = queue[head]
            head += 1
            if head == queue.count {
                queue.removeAll(keepingCapacity: true)
                head = 0
            }
            condition.unlock()
            work()
        }
    }

    /// Runs `body` on a pool thread and returns its result to the awaiting task.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            submit { continuation.resume(with: Result { try body() }) }
        }
    }

    private func submit(_ work: @escaping @Sendable () -> Void) {
        condition.lock()
        queue.append(work)
        condition.signal()
        condition.unlock()
    }

    /// Lets the threads finish the queued work and exit.
    func shutdown() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }
}

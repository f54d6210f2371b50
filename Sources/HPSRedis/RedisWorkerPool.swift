import HPS

/// A small pool of dedicated threads that runs the partitions of one bulk call in parallel.
///
/// Partition tasks spend their time waiting for a node's reply, so they must not run on Swift's
/// cooperative pool (nor on a pool sized to the cores, like `concurrentPerform`): these threads block in
/// `recv` while the nodes work. The calling thread takes part too, so a call makes progress even when
/// every worker is busy with other calls.
final class RedisWorkerPool: @unchecked Sendable {
    // @unchecked Sendable: `condition` guards `queue`, `stopping` and each job's `next`/`finished`; `threads` is
    // written in init (before the pool is shared) and by `shutdown` (called once, from deinit of the owner);
    // `workerCount` is immutable.
    /// One `run` call: `count` tasks, handed out in order.
    private final class Job {
        let count: Int
        let body: (Int) -> Void
        var next = 0
        var finished = 0
        init(count: Int, body: @escaping (Int) -> Void) {
            self.count = count
            self.body = body
        }
    }

    private let condition = Condition()
    private var queue: [Job] = []
    private var stopping = false
    private var threads: [JoinableThread] = []
    /// Worker threads (besides callers).
    let workerCount: Int

    init(workers: Int) {
        workerCount = max(0, workers)
        for _ in 0..<workerCount {
            if let thread = JoinableThread.start({ [self] in workerLoop() }) { threads.append(thread) }
        }
    }

    /// Stops and joins the workers (after the jobs they hold are done).
    func shutdown() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
        for thread in threads { thread.join() }
        threads = []
    }

    /// Runs `body(0) … body(count - 1)`, spread over the workers and the calling thread, and returns when
    /// all have finished.
    func run(count: Int, _ body: (Int) -> Void) {
        if count <= 0 { return }
        if count == 1 || workerCount == 0 {
            for i in 0..<count { body(i) }
            return
        }
        withoutActuallyEscaping(body) { body in
            let job = Job(count: count, body: body)
            condition.lock()
            queue.append(job)
            condition.broadcast()
            // Take part until no task is left to start, then wait for the ones workers hold.
            while job.next < job.count {
                let i = job.next
                job.next += 1
                if job.next == job.count { remove(job) }
                condition.unlock()
                body(i)
                condition.lock()
                job.finished += 1
            }
            while job.finished < job.count { condition.wait() }
            condition.unlock()
        }
    }

    private func remove(_ job: Job) {
        if let index = queue.firstIndex(where: { $0 === job }) { queue.remove(at: index) }
    }

    private func workerLoop() {
        condition.lock()
        while true {
            if let job = queue.first {
                let i = job.next
                job.next += 1
                if job.next == job.count { queue.removeFirst() }
                condition.unlock()
                job.body(i)
                condition.lock()
                job.finished += 1
                if job.finished == job.count { condition.broadcast() }
                continue
            }
            if stopping { break }
            condition.wait()
        }
        condition.unlock()
    }
}

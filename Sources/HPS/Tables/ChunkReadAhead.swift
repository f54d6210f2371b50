import Dispatch

/// Reads chunks of a stream one chunk ahead of their use: a background thread fills one of two buffer
/// slots while the calling thread works on the other, so reading the next chunk overlaps processing the
/// current one (a table load otherwise waits for each `pread` with every other core idle).
///
/// Chunks are read and used strictly in order; a read that fails stops reading, and its error is thrown to
/// the caller when that chunk's turn comes, after every earlier chunk was used, as a read in line would.
enum ChunkReadAhead {
    /// Calls `read(chunk, slot)` on a background thread and `use(chunk, slot)` on the calling thread for
    /// each chunk in `0 ..< chunks`, slot being `chunk % 2`: chunk `c + 1` is read while chunk `c` is used,
    /// and a slot is read again only after its previous chunk was used. Returns once the background thread
    /// has stopped, so the slots may be freed afterwards.
    /// - Throws: the first error of `read` (at its chunk's turn) or of `use`; reading stops at either.
    static func run(
        chunks: Int, read: (_ chunk: Int, _ slot: Int) throws -> Void, use: (_ chunk: Int, _ slot: Int) throws -> Void
    ) throws {
        guard chunks > 1 else {
            if chunks == 1 {
                try read(0, 0)
                try use(0, 0)
            }
            return
        }
        let state = State()
        state.free.signal()
        state.free.signal()
        try withoutActuallyEscaping(read) { read in
            // The reader reaches `read` only through `state`, whose reference is dropped once the reader has
            // stopped: `withoutActuallyEscaping` checks that nothing holds the closure when it returns.
            state.read = read
            let shared = UnsafeTransfer(state)
            DispatchQueue(label: "hps.table-read-ahead").async {
                let state = shared.value
                defer { state.finished.signal() }
                for chunk in 0..<chunks {
                    state.free.wait()
                    if state.isStopped { return }
                    do {
                        try state.read?(chunk, chunk % 2)
                    } catch {
                        state.slots[chunk % 2].error = error
                        state.ready.signal()
                        return
                    }
                    state.ready.signal()
                }
            }
            // Whatever ends the loop below, stop the reader and wait for it before the closures go away.
            defer {
                state.stop()
                state.free.signal()
                state.finished.wait()
                state.read = nil
            }
            for chunk in 0..<chunks {
                state.ready.wait()
                if let error = state.slots[chunk % 2].error { throw error }
                try use(chunk, chunk % 2)
                state.free.signal()
            }
        }
    }

    /// What the two threads share. `slots[slot].error` is written by the reader before it signals `ready` for that
    /// slot's chunk and read by the caller after the matching wait; the reader writes the slot again only
    /// after the caller signalled `free` for it: the semaphores order those accesses; `read` is set before the
    /// reader starts and cleared after `finished` was signalled. `stopped` is guarded by
    /// `lock` (the caller may set it while the reader is reading).
    private final class State: @unchecked Sendable {
        /// Slots the reader may fill (two at first, signalled by `run`: a semaphore must not be freed below
        /// its initial value, and the reader may take both slots' permits without returning them).
        let free = DispatchSemaphore(value: 0)
        /// Chunks read and not yet used.
        let ready = DispatchSemaphore(value: 0)
        /// Signalled once when the reader returns.
        let finished = DispatchSemaphore(value: 0)
        /// The caller's `read`: set before the reader starts, cleared after it stopped.
        var read: ((_ chunk: Int, _ slot: Int) throws -> Void)?
        /// Per slot, the read error of its chunk (the reader stops at its first).
        let slots = [Slot(), Slot()]
        private let lock = Lock()
        private var stopped = false
        /// Whether the caller stopped taking chunks.
        var isStopped: Bool { lock.withLock { stopped } }
        func stop() { lock.withLock { stopped = true } }
    }

    /// One slot's read error: a class of its own, so the two threads never access the same property.
    private final class Slot: @unchecked Sendable {
        var error: (any Error)?
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A mutual-exclusion lock over `pthread_mutex_t`, for state that lives in unsafe buffers (where
/// `Synchronization.Mutex` cannot hold it).
package final class Lock: @unchecked Sendable {
    // @unchecked Sendable: the pthread mutex is thread-safe by design; the pointer to it is set in init and never
    // changes.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    package init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always) package func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) package func unlock() { pthread_mutex_unlock(mutex) }

    @inline(__always)
    package func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// A readers-writer lock over `pthread_rwlock_t`: many readers or one writer.
package final class ReadWriteLock: @unchecked Sendable {
    // @unchecked Sendable: the pthread rwlock is thread-safe by design; the pointer to it is set in init and never
    // changes.
    private let rwlock: UnsafeMutablePointer<pthread_rwlock_t>

    package init() {
        rwlock = .allocate(capacity: 1)
        rwlock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(rwlock, nil)
    }

    deinit {
        pthread_rwlock_destroy(rwlock)
        rwlock.deallocate()
    }

    @inline(__always) package func lockShared() { pthread_rwlock_rdlock(rwlock) }
    @inline(__always) package func lockExclusive() { pthread_rwlock_wrlock(rwlock) }
    @inline(__always) package func unlock() { pthread_rwlock_unlock(rwlock) }

    @inline(__always)
    package func withReadLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_rdlock(rwlock)
        defer { pthread_rwlock_unlock(rwlock) }
        return try body()
    }

    @inline(__always)
    package func withWriteLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_wrlock(rwlock)
        defer { pthread_rwlock_unlock(rwlock) }
        return try body()
    }
}

/// A condition variable paired with its own mutex.
package final class Condition: @unchecked Sendable {
    // @unchecked Sendable: the pthread mutex and condition variable are thread-safe by design; the pointers are set
    // in init and never change.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>

    package init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        cond = .allocate(capacity: 1)
        cond.initialize(to: pthread_cond_t())
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    package func lock() { pthread_mutex_lock(mutex) }
    package func unlock() { pthread_mutex_unlock(mutex) }
    /// Waits for a signal; the mutex must be held.
    package func wait() { pthread_cond_wait(cond, mutex) }
    package func signal() { pthread_cond_signal(cond) }
    package func broadcast() { pthread_cond_broadcast(cond) }
}

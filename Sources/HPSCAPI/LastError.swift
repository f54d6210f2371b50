#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The message of each thread's last failed call (`hps_last_error`), kept in a pthread key whose
/// destructor frees it when the thread exits.
enum LastError {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        _ = pthread_key_create(&key) { free($0) }
        return key
    }()

    private static let empty = CString("")

    static func set(_ message: String) {
        let copy = strdup(message)
        let old = pthread_getspecific(key)
        _ = pthread_setspecific(key, copy)
        free(old)
    }

    static var current: UnsafePointer<CChar> {
        guard let raw = pthread_getspecific(key) else { return UnsafePointer(empty.pointer) }
        return UnsafePointer(raw.assumingMemoryBound(to: CChar.self))
    }
}

/// Runs `body`; on error records its message for `hps_last_error` and returns its status.
@inline(__always)
func guarded(_ context: @autoclosure () -> String, _ body: () throws -> Void) -> Int32 {
    do {
        try body()
        return CAPIError.Status.ok.rawValue
    } catch {
        let failure = CAPIError(wrapping: error, context: context())
        LastError.set(failure.message)
        return failure.status.rawValue
    }
}

/// Records `error` for `hps_last_error`; returns `fallback` (for functions that answer a value, not a status).
func failed<T>(_ error: any Error, context: String, _ fallback: T) -> T {
    LastError.set(CAPIError(wrapping: error, context: context).message)
    return fallback
}

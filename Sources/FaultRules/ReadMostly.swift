import Glibc

/// A value read by many threads at once and rarely replaced, behind a
/// reader-writer lock: readers do not queue behind each other, as they do
/// behind a mutex (which, with a dozen writeback requests in flight, turned
/// into futex sleeps on every request).
public final class ReadMostly<Value>: @unchecked Sendable {
    private var lock = pthread_rwlock_t()
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        pthread_rwlock_init(&lock, nil)
    }

    deinit { pthread_rwlock_destroy(&lock) }

    public func read<T>(_ body: (Value) throws -> T) rethrows -> T {
        pthread_rwlock_rdlock(&lock)
        defer { pthread_rwlock_unlock(&lock) }
        return try body(value)
    }

    public func write<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        pthread_rwlock_wrlock(&lock)
        defer { pthread_rwlock_unlock(&lock) }
        return try body(&value)
    }
}

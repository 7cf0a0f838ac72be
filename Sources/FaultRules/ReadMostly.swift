import System

/// A value read by many threads at once and rarely replaced, behind a
/// reader-writer lock: readers do not queue behind each other, as they do
/// behind a mutex (which, with a dozen writeback requests in flight, turned
/// into futex sleeps on every request).
public final class ReadMostly<Value>: @unchecked Sendable {
    private let lock = ReadWriteLock()
    private var value: Value

    public init(_ value: Value) { self.value = value }

    public func read<T>(_ body: (Value) throws -> T) rethrows -> T {
        try lock.withReadLock { try body(value) }
    }

    public func write<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        try lock.withWriteLock { try body(&value) }
    }
}

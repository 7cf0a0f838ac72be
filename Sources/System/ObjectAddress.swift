// A class instance passed through C (a userdata pointer) or the kernel (a
// node id, a file handle) as its address: the one place the Unmanaged round
// trip is written.

public enum ObjectAddress {
    /// `object`'s address, which now owns one reference: give it back with
    /// `take` or `release`, exactly once.
    @inlinable public static func retain<Object: AnyObject>(_ object: Object) -> UnsafeMutableRawPointer {
        Unmanaged.passRetained(object).toOpaque()
    }

    /// `object`'s address, owning nothing: valid while someone else keeps it alive.
    @inlinable public static func of<Object: AnyObject>(_ object: Object) -> UnsafeMutableRawPointer {
        Unmanaged.passUnretained(object).toOpaque()
    }

    /// The object at `address`, borrowed: the reference count does not change.
    @inlinable public static func object<Object: AnyObject>(at address: UnsafeRawPointer, as type: Object.Type = Object.self) -> Object {
        Unmanaged<Object>.fromOpaque(address).takeUnretainedValue()
    }

    /// The object at an address from `retain`, taking its reference back.
    @inlinable public static func take<Object: AnyObject>(_ address: UnsafeRawPointer, as type: Object.Type = Object.self) -> Object {
        Unmanaged<Object>.fromOpaque(address).takeRetainedValue()
    }

    /// Drops the reference an address from `retain` owns.
    @inlinable public static func release<Object: AnyObject>(_ address: UnsafeRawPointer, as type: Object.Type) {
        Unmanaged<Object>.fromOpaque(address).release()
    }

    /// An address as the integer the kernel carries (node id, file handle), and back.
    @inlinable public static func integer(_ address: UnsafeRawPointer) -> UInt64 { UInt64(UInt(bitPattern: address)) }
    @inlinable public static func address(_ integer: UInt64) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: UInt(integer))!
    }
}

// The rule language names errnos (`fail write ENOSPC`); the table itself is
// System's `Errno`. These names are kept for the grammar, the event codec
// and their tests.
import System

/// The primary symbolic name of `n` (`28` → `"ENOSPC"`), or nil if Linux defines none.
public func errnoName(_ n: Int32) -> String? { Errno(n).name }

/// The value of an errno name, aliases included; case-insensitive (`"enospc"` → 28).
public func errnoValue(_ name: String) -> Int32? { Errno(named: name)?.rawValue }

/// Errnos a FUSE reply may carry: the kernel rejects replies outside (-512, 0).
public let validErrnoRange: ClosedRange<Int32> = Errno.replyRange

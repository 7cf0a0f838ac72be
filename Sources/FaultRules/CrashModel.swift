// Power loss: what a simulated crash is asked to do and what it did.
// (The durability model and the undo journal join this file; see
// docs/kernel-behaviour.md, "Power loss".)

/// When a name operation (create, unlink, rename, ...) becomes durable.
public enum NameDurability: String, Sendable, Equatable, CaseIterable {
    /// Once the directory it changed was fsync'd afterwards (what POSIX promises).
    case posix
    /// Like ext4's ordered journal: with any later fsync on the mount, or
    /// after the commit interval.
    case journal
}

/// One `crash` command: `crash [torn] [seed=N] [sector=512|4096]`.
public struct CrashRequest: Sendable, Equatable {
    /// Of the writes not yet durable, a seeded subset of sectors survives.
    public var torn = false
    public var seed: UInt64 = 0
    public var sectorSize = 4096
    public init(torn: Bool = false, seed: UInt64 = 0, sectorSize: Int = 4096) {
        self.torn = torn
        self.seed = seed
        self.sectorSize = sectorSize
    }
}

/// What a crash undid in the backing tree.
public struct CrashReport: Sendable, Equatable {
    public var request = CrashRequest()
    /// Files whose bytes were put back to their durable contents.
    public var filesReverted = 0
    public var bytesReverted: Int64 = 0
    /// Files whose size went back to the durable size.
    public var filesTruncated = 0
    /// Name operations undone (creates removed, unlinks and renames reverted, ...).
    public var namesUndone = 0
    /// With `torn`: sectors not yet durable that were kept.
    public var tornSectorsKept = 0
    /// Undo steps that failed (logged one by one; the crash went on).
    public var undoErrors = 0
    public init() {}
}

// Pure parsing of `-o` options: no I/O, no libfuse, so it can be unit tested.
import Passthrough
import FaultRules

/// Everything a mount was asked for, after `-o` and the flags are parsed.
struct MountConfiguration: Equatable, Sendable {
    // Passthrough (see `passthroughOptions` in Serve.swift).
    var writebackCache = true
    var directIO = false
    var aggressiveCaching = true
    var splice = true
    var fdCacheCapacity = 512
    var posixACLs = true
    var accessTimes = PassthroughOptions.AccessTimeUpdates.relatime
    /// `-o readahead=SIZE|auto`: the mount's read_ahead_kb (see `Readahead`).
    var readahead = Readahead.auto

    // Worker threads of the libfuse loop.
    var maxIdleThreads = 8
    var maxThreads = 64

    // For the fault layer (parsed and kept; not used yet).
    var controlName: String?
    var rulesFile: String?
    var eventsFile: String?
    /// `-o crashsim[=posix|journal]`: power-loss simulation and its name model.
    var crashSimulation: NameDurability?
    /// `-o crashsim_spill=DIR`: where the crash layer's spill file lives.
    var crashSpillDirectory: String?

    /// Options handed to libfuse as one `-o` list, still comma-escaped.
    var fuseOptions: [String] = []
    /// What the parser dropped or overrode, to be logged.
    var notes: [String] = []

    /// The argument vector for `fuse_session_new` (after argv[0]).
    var fuseArguments: [String] { fuseOptions.isEmpty ? [] : ["-o", fuseOptions.joined(separator: ",")] }
}

/// How far the kernel reads ahead of a sequential reader on the mount. A
/// FUSE mount starts at the kernel's default for any bdi, 128 KiB, and the
/// INIT reply can only lower it; the backing disk often has more (8 MiB on
/// a virtio disk). `auto` follows the disk holding the backing directory, up
/// to 1 MiB, the largest READ one request carries (256 pages): cold
/// sequential reads went from about 0.9 to 1.5 GiB/s here. No disk (tmpfs,
/// btrfs, overlayfs): the kernel's default stays.
enum Readahead: Equatable, Sendable, CustomStringConvertible {
    case auto
    case kib(Int)

    static let largestReadKiB = 1024

    init?(_ text: String) {
        if text == "auto" { self = .auto; return }
        guard let bytes = parseSize(text), bytes >= 0, bytes % 1024 == 0, bytes <= 1 << 30 else { return nil }
        self = .kib(Int(bytes / 1024))
    }

    /// The read_ahead_kb to set, given the backing disk's; nil: leave the kernel's.
    func kib(backingDiskKiB: Int?) -> Int? {
        switch self {
        case .kib(let n): return n
        case .auto: return backingDiskKiB.map { min($0, Self.largestReadKiB) }
        }
    }

    var description: String {
        switch self {
        case .auto: return "auto"
        case .kib(let n): return "\(n)K"
        }
    }
}

struct MountOptionError: Error, CustomStringConvertible {
    let description: String
}

enum MountOptionParser {
    /// mount(8) and fstab options that mean nothing to libfuse, which would
    /// refuse the whole mount over them ("fuse: unknown option(s)").
    static let dropped: Set<String> = [
        "auto", "noauto", "user", "nouser", "users", "owner", "group", "_netdev", "nofail", "defaults",
        // atime variants libfuse 3.14 does not know (relatime, strictatime
        // and noatime are parsed: the passthrough updates atimes).
        "norelatime", "nostrictatime",
        "diratime", "nodiratime", "lazytime", "nolazytime",
    ]

    /// - Parameters:
    ///   - groups: the values of each `-o` (each a comma-separated list).
    ///   - threads: `--threads N`, which wins over `threads=N`.
    ///   - source: the absolute path of SOURCE, the default `fsname`.
    static func parse(_ groups: [String], threads: Int? = nil, source: String) throws(MountOptionError) -> MountConfiguration {
        var config = MountConfiguration()
        var passed: [String] = []
        var fsname: String?
        var writeback: Bool? // as asked; nil: follows caching

        for token in groups.flatMap(splitOptions) where !token.isEmpty {
            let (key, value) = keyValue(token)
            switch key {
            case "writeback": try noValue(key, value); writeback = true
            case "nowriteback": try noValue(key, value); writeback = false
            case "direct_io": try noValue(key, value); config.directIO = true
            case "nocache": try noValue(key, value); config.aggressiveCaching = false
            case "nosplice": try noValue(key, value); config.splice = false
            case "acl": try noValue(key, value); config.posixACLs = true
            case "noacl": try noValue(key, value); config.posixACLs = false
            case "relatime", "strictatime":
                try noValue(key, value)
                config.accessTimes = key == "relatime" ? .relatime : .strictatime
            case "noatime":
                try noValue(key, value)
                config.accessTimes = .noatime
                passed.append(token)  // libfuse knows it: the mount flag shows in the mount table
            case "threads": config.maxThreads = try number(key, value, minimum: 1)
            case "fdcache": config.fdCacheCapacity = try number(key, value, minimum: 0)
            case "readahead":
                guard let value, let setting = Readahead(value) else {
                    throw MountOptionError(description: "option readahead= needs auto or a size like 128K or 1M (0: none), got \(token)")
                }
                config.readahead = setting
            case "control": config.controlName = try string(key, value)
            case "rules": config.rulesFile = try string(key, value)
            case "events": config.eventsFile = try string(key, value)
            case "crashsim":
                guard let model = value.map(unescape) else { config.crashSimulation = .posix; break }
                guard let names = NameDurability(rawValue: model) else {
                    throw MountOptionError(description: "option crashsim=\(model): expected crashsim (names as POSIX promises), crashsim=posix or crashsim=journal")
                }
                config.crashSimulation = names
            case "crashsim_spill": config.crashSpillDirectory = try string(key, value)
            case "fsname": fsname = value ?? ""  // kept escaped: it goes back to libfuse
            case "subtype":
                // The fstype must stay fuse.faultfs: `umount` and the
                // double-mount check find our mounts by it.
                config.notes.append("ignored \(token): the subtype is always faultfs")
            case "default_permissions":
                break // always added below
            case _ where dropped.contains(key) || key.hasPrefix("x-") || key == "comment":
                config.notes.append("ignored \(token): not a FUSE option")
            default:
                passed.append(token)
            }
        }
        // With a writeback cache the kernel trusts its own file sizes and
        // times over ours, so `nocache` (others change the backing files) and
        // `direct_io` (no page cache to write back; the kernel would keep a
        // stale mtime) turn it off unless `writeback` is asked for as well.
        config.writebackCache = writeback ?? (config.aggressiveCaching && !config.directIO)
        if let threads {
            guard threads >= 1 else { throw MountOptionError(description: "--threads must be at least 1") }
            config.maxThreads = threads
        }
        config.maxIdleThreads = min(config.maxIdleThreads, config.maxThreads)
        if config.crashSpillDirectory != nil && config.crashSimulation == nil {
            throw MountOptionError(description: "option crashsim_spill=DIR needs crashsim (or crashsim=journal) as well")
        }

        // The kernel checks permissions against our attributes, as on a real
        // file system; the passthrough then acts with the caller's identity.
        config.fuseOptions = ["default_permissions",
                              "fsname=" + (fsname ?? escape(source)),
                              "subtype=faultfs"] + passed
        return config
    }

    /// Splits "a,b\,c" into ["a", "b\,c"]: libfuse's own syntax, where a
    /// backslash escapes the next character. Escapes are kept, so a token
    /// can be handed back to libfuse as it came.
    static func splitOptions(_ list: String) -> [String] {
        var tokens: [String] = []
        var current = ""
        var escaped = false
        for character in list {
            if escaped {
                current.append(character)
                escaped = false
            } else if character == "\\" {
                current.append(character)
                escaped = true
            } else if character == "," {
                tokens.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        tokens.append(current)
        return tokens
    }

    /// Escapes commas and backslashes for a libfuse option value.
    static func escape(_ value: String) -> String {
        var out = ""
        for character in value {
            if character == "," || character == "\\" { out.append("\\") }
            out.append(character)
        }
        return out
    }

    /// Removes libfuse escapes: "a\,b" -> "a,b".
    static func unescape(_ value: String) -> String {
        var out = ""
        var escaped = false
        for character in value {
            if !escaped && character == "\\" { escaped = true; continue }
            out.append(character)
            escaped = false
        }
        return out
    }

    private static func keyValue(_ token: String) -> (String, String?) {
        guard let equals = token.firstIndex(of: "=") else { return (token, nil) }
        return (String(token[..<equals]), String(token[token.index(after: equals)...]))
    }

    private static func noValue(_ key: String, _ value: String?) throws(MountOptionError) {
        if value != nil { throw MountOptionError(description: "option \(key) takes no value") }
    }

    private static func number(_ key: String, _ value: String?, minimum: Int) throws(MountOptionError) -> Int {
        guard let value, let n = Int(value), n >= minimum else {
            throw MountOptionError(description: "option \(key)=N needs an integer N >= \(minimum), got \(key)=\(value ?? "")")
        }
        return n
    }

    private static func string(_ key: String, _ value: String?) throws(MountOptionError) -> String {
        guard let value, !value.isEmpty else { throw MountOptionError(description: "option \(key)= needs a value") }
        return unescape(value)
    }
}

// MARK: remount

/// `-o remount,...`: the kernel lets a mounted FUSE file system change its
/// mount flags (ro/rw, nosuid, nodev, noexec, sync, atime), not its FUSE
/// options. mount(8) hands the helper the flags in force plus the change;
/// a direct `faultfs mount -o remount,ro` gives only the change, so the
/// flags start from those of the mount as it is.
enum RemountFlags {
    static let readOnly: UInt = 1, noSUID: UInt = 2, noDev: UInt = 4, noExec: UInt = 8, synchronous: UInt = 16
    static let remount: UInt = 32, dirSync: UInt = 128, noATime: UInt = 1 << 10, noDirATime: UInt = 1 << 11
    static let relATime: UInt = 1 << 21, strictATime: UInt = 1 << 24, lazyTime: UInt = 1 << 25
    static let atimeFlags: UInt = noATime | relATime | strictATime

    /// What mount(8) copies from the mount table into a remount request:
    /// the mount's own FUSE options, unchanged by a remount.
    static let fuseOptionsInMountTable: Set<String> = [
        "user_id", "group_id", "default_permissions", "allow_other", "max_read", "blksize", "fsname", "subtype",
    ]

    /// Whether the option lists ask for a remount.
    static func isRemount(_ groups: [String]) -> Bool {
        groups.flatMap(MountOptionParser.splitOptions).contains("remount")
    }

    /// The flags for mount(2): `current` (MS_* of the mount now) changed by
    /// the options; options a remount cannot change are returned as ignored.
    static func parse(_ groups: [String], current: UInt) -> (flags: UInt, ignored: [String]) {
        var flags = current & ~remount
        var ignored: [String] = []
        let toggles: [String: (set: Bool, flag: UInt)] = [
            "ro": (true, readOnly), "rw": (false, readOnly),
            "nosuid": (true, noSUID), "suid": (false, noSUID),
            "nodev": (true, noDev), "dev": (false, noDev),
            "noexec": (true, noExec), "exec": (false, noExec),
            "sync": (true, synchronous), "async": (false, synchronous),
            "dirsync": (true, dirSync),
            "nodiratime": (true, noDirATime), "diratime": (false, noDirATime),
            "lazytime": (true, lazyTime), "nolazytime": (false, lazyTime),
        ]
        for token in groups.flatMap(MountOptionParser.splitOptions) where !token.isEmpty && token != "remount" {
            switch token {
            case "noatime": flags = (flags & ~atimeFlags) | noATime
            case "relatime": flags = (flags & ~atimeFlags) | relATime
            case "strictatime": flags = (flags & ~atimeFlags) | strictATime
            case "atime", "norelatime": flags &= ~(noATime | relATime)
            case "defaults": break
            case _ where fuseOptionsInMountTable.contains(String(token.prefix { $0 != "=" })): break
            default:
                if let toggle = toggles[token] {
                    flags = toggle.set ? flags | toggle.flag : flags & ~toggle.flag
                } else {
                    ignored.append(token)
                }
            }
        }
        return (flags | remount, ignored)
    }

    /// MS_* flags from statvfs's f_flag (ST_* share the MS_* values).
    static func current(fromStatvfs f: UInt) -> UInt {
        // ST_RELATIME is 4096 in statvfs but MS_RELATIME is 1 << 21.
        let stRelATime: UInt = 4096
        var flags = f & (readOnly | noSUID | noDev | noExec | synchronous | noATime | noDirATime)
        if f & stRelATime != 0 { flags |= relATime }
        return flags
    }
}

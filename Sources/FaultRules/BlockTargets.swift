// Block mode's pure half: the `ranges=` filter (a set of byte ranges of the
// image file), the file systems faultfs can put on a loop device, and the
// rewriting of a block-mode control line (`sectors=`, `region=`, `file=`,
// disk ops) into an ordinary rule on the image. No I/O here: the CLI resolves
// regions and files to image byte ranges and hands them in.

/// The `ranges=A-B,C-D` filter: byte ranges [A, B) of a file, sorted and
/// merged, so one binary search answers "does this request touch any?".
public struct ByteRangeSet: Sendable, Equatable, CustomStringConvertible {
    /// Sorted, disjoint, non-adjacent [lower, upper) pairs.
    public private(set) var ranges: [(lower: Int64, upper: Int64)]

    /// Empty ranges are dropped; overlapping or touching ones merged.
    public init(_ pairs: [(lower: Int64, upper: Int64)]) {
        var merged: [(lower: Int64, upper: Int64)] = []
        for pair in pairs.filter({ $0.upper > $0.lower }).sorted(by: { $0.lower < $1.lower }) {
            if let last = merged.last, pair.lower <= last.upper {
                merged[merged.count - 1].upper = max(last.upper, pair.upper)
            } else {
                merged.append(pair)
            }
        }
        ranges = merged
    }

    public var isEmpty: Bool { ranges.isEmpty }
    public var byteCount: Int64 { ranges.reduce(0) { $0 + ($1.upper - $1.lower) } }

    /// Whether [offset, offset+length) overlaps any range (length 0 counts
    /// as one byte; a request without offset, -1, never overlaps).
    public func overlaps(offset: Int64, length: Int64) -> Bool {
        guard offset >= 0 else { return false }
        let (sum, overflow) = offset.addingReportingOverflow(max(length, 1))
        let end = overflow ? Int64.max : sum
        // The first range whose upper bound lies past `offset`.
        var low = 0, high = ranges.count
        while low < high {
            let mid = (low + high) / 2
            if ranges[mid].upper <= offset { low = mid + 1 } else { high = mid }
        }
        return low < ranges.count && ranges[low].lower < end
    }

    /// `none` for the empty set (a `file=` rule whose files have no blocks yet).
    public var description: String {
        if ranges.isEmpty { return "none" }
        return ranges.map { formatSize($0.lower) + "-" + formatSize($0.upper) }.joined(separator: ",")
    }

    public static func == (a: ByteRangeSet, b: ByteRangeSet) -> Bool {
        a.ranges.count == b.ranges.count && zip(a.ranges, b.ranges).allSatisfy { $0 == $1 }
    }

    /// `A-B,C-D,...` with sizes A < B, or `none`; nil if any part is malformed.
    public static func parse(_ text: some StringProtocol) -> ByteRangeSet? {
        if text == "none" { return ByteRangeSet([]) }
        var pairs: [(lower: Int64, upper: Int64)] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
            guard bounds.count == 2, let lower = parseSize(Substring(bounds[0])), let upper = parseSize(Substring(bounds[1])),
                  upper > lower else { return nil }
            pairs.append((lower, upper))
        }
        return ByteRangeSet(pairs)
    }
}

/// A file system block mode can make on its loop device.
public enum BlockFileSystem: String, Sendable, CaseIterable {
    case ext4, xfs, btrfs

    /// The mkfs program, and the Debian package it comes in.
    public var mkfs: String { "mkfs." + rawValue }
    public var package: String {
        switch self {
        case .ext4: "e2fsprogs"
        case .xfs: "xfsprogs"
        case .btrfs: "btrfs-progs"
        }
    }

    /// The smallest image mkfs accepts (xfsprogs 6.1: 300 MiB; btrfs-progs
    /// 6.2: 114294784 bytes; ext4 wants room for its journal).
    public var minimumSize: Int64 {
        switch self {
        case .ext4: 16 << 20
        case .xfs: 300 << 20
        case .btrfs: 114_294_784
        }
    }

    /// Options that make mkfs overwrite an old signature and stay quiet.
    public var mkfsArguments: [String] {
        switch self {
        case .ext4: ["-q", "-F"]
        case .xfs: ["-q", "-f"]
        case .btrfs: ["-q", "-f"]
        }
    }

    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// Where the block mode of one target keeps its files: a directory named
/// after the target's path, reversibly (`/` becomes `-`; bytes other than
/// letters, digits, `.` and `_` become `%XX`), so two targets never share one.
public func blockStateName(forTarget target: String) -> String {
    var name = ""
    for byte in target.utf8.dropFirst(target.hasPrefix("/") ? 1 : 0) {
        switch byte {
        case UInt8(ascii: "/"): name += "-"
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"):
            name.unicodeScalars.append(Unicode.Scalar(byte))
        default:
            let hex = String(byte, radix: 16, uppercase: true)
            name += "%" + (hex.count == 1 ? "0" + hex : hex)
        }
    }
    return name.isEmpty ? "-" : name
}

/// A block-mode control line before resolution: which words need the
/// mounted file system (`region=`, `file=`) and how `sectors=` reads.
public struct BlockRuleRequest: Sendable, Equatable {
    /// The line's words, with block-only keys and ops taken out.
    public var words: [String]
    public var region: String?
    public var fileGlob: String?
    public var sectors: (first: Int64, last: Int64)?

    public static func == (a: BlockRuleRequest, b: BlockRuleRequest) -> Bool {
        a.words == b.words && a.region == b.region && a.fileGlob == b.fileGlob
            && a.sectors?.first == b.sectors?.first && a.sectors?.last == b.sectors?.last
    }
}

public struct BlockRuleError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum BlockRuleRewriter {
    /// The disk's ops and what they are on the image file: a cache flush
    /// reaches the image as fsync (loop calls vfs_fsync), a discard as
    /// fallocate (punch hole).
    public static let diskOps = ["flush": "fsync", "discard": "fallocate"]

    /// Splits a line into the part the daemon understands and the block keys.
    /// Lines that add no rule (clear, release, capacity, ...) pass unchanged.
    public static func parse(_ line: String) throws(BlockRuleError) -> BlockRuleRequest {
        var words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        var request = BlockRuleRequest(words: words)
        guard let action = words.first, ruleActionWords.contains(action) else {
            return request
        }
        if words.count > 1 {
            words[1] = words[1].split(separator: ",", omittingEmptySubsequences: false)
                .map { diskOps[String($0)] ?? String($0) }.joined(separator: ",")
        }
        var kept: [String] = []
        for word in words {
            guard let equals = word.firstIndex(of: "=") else { kept.append(word); continue }
            let key = word[..<equals], value = String(word[word.index(after: equals)...])
            switch key {
            case "region":
                guard ["journal", "metadata", "data"].contains(value) else {
                    throw BlockRuleError("unknown region \"\(value)\"; expected journal")
                }
                request.region = value
            case "file":
                guard !value.isEmpty else { throw BlockRuleError("file= needs a path pattern inside the file system, such as pg_wal/*") }
                request.fileGlob = value
            case "sectors":
                let bounds = value.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
                guard bounds.count == 2, let first = parseUnsigned(bounds[0]), let last = parseUnsigned(bounds[1]),
                      first <= last, last < UInt64(Int64.max / 512) else {
                    throw BlockRuleError("bad sectors \"\(value)\"; expected A-B, 512-byte sectors A through B (A <= B)")
                }
                request.sectors = (Int64(first), Int64(last))
            case "path", "offset", "ranges":
                throw BlockRuleError("\(key)= names bytes of the image file; on a block-mode target use sectors=, region= or file=")
            default:
                kept.append(word)
            }
        }
        let selectors = [request.region != nil, request.fileGlob != nil, request.sectors != nil].filter { $0 }.count
        if selectors > 1 {
            throw BlockRuleError("use one of sectors=, region= and file= per rule")
        }
        if selectors == 1, let ops = kept.dropFirst().first?.split(separator: ","), ops.contains("fsync") {
            throw BlockRuleError("flush (a cache flush) has no place on the disk: sectors=, region= and file= cannot select it")
        }
        request.words = kept
        return request
    }

    /// The rule for the daemon: the kept words, the image's name as `path=`
    /// (its directory may hold other files) and the resolved ranges.
    public static func line(_ request: BlockRuleRequest, imageName: String, ranges: ByteRangeSet?) -> String {
        guard request.words.count > 1, ruleActionWords.contains(request.words[0]) else {
            return request.words.joined(separator: " ")
        }
        var words = request.words
        if PathGlob(imageName)?.pattern == imageName, !imageName.contains(where: { "*?[".contains($0) }) {
            words.append("path=" + imageName)
        }
        if let ranges { words.append("ranges=" + ranges.description) }
        return words.joined(separator: " ")
    }

    /// `sectors=A-B` as image bytes.
    public static func sectorRange(first: Int64, last: Int64) -> ByteRangeSet {
        ByteRangeSet([(first * 512, (last + 1) * 512)])
    }
}

// MARK: - Parsing what the file system tools print

public enum BlockToolOutput {
    /// ext4's journal inode (debugfs -R 'stat <8>'), its "EXTENTS:" section:
    /// `(0-1023):1234-2257, (1024-4095):5000-8071` (logical:physical blocks);
    /// single blocks read `(0):1234`. Returns image byte ranges.
    public static func debugfsExtents(_ text: String, blockSize: Int64) -> ByteRangeSet? {
        let parts = text.split(separator: "EXTENTS:", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        var pairs: [(lower: Int64, upper: Int64)] = []
        for item in parts[1].split(whereSeparator: { $0 == "," || $0 == "\n" }) {
            let trimmed = item.trimmingBlanks
            guard trimmed.hasPrefix("("), let colon = trimmed.lastIndex(of: ":") else { continue }
            let physical = trimmed[trimmed.index(after: colon)...]
            let bounds = physical.split(separator: "-")
            guard let first = bounds.first.flatMap({ Int64($0) }) else { continue }
            let last = bounds.count > 1 ? Int64(bounds[1]) ?? first : first
            pairs.append((first * blockSize, (last + 1) * blockSize))
        }
        let set = ByteRangeSet(pairs)
        return set.isEmpty ? nil : set
    }

    /// `Block size: 4096` and the like from dumpe2fs -h / debugfs.
    public static func number(after label: String, in text: String) -> Int64? {
        for line in text.split(separator: "\n") where line.hasPrefix(label) {
            return Int64(line.dropFirst(label.count).trimmingBlanks)
        }
        return nil
    }

    /// XFS's internal log from `xfs_db -r -c 'sb 0' -c 'p logstart blocksize agblocks agblklog logblocks'`:
    /// logstart is an fsblock number (AG number << agblklog | block in AG).
    public static func xfsLog(_ text: String) -> ByteRangeSet? {
        var values: [String: Int64] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let value = Int64(parts[1].trimmingBlanks) else { continue }
            values[String(parts[0].trimmingBlanks)] = value
        }
        guard let start = values["logstart"], start > 0, let blockSize = values["blocksize"],
              let agBlocks = values["agblocks"], let agBlockLog = values["agblklog"],
              let logBlocks = values["logblocks"] else { return nil }
        let ag = start >> agBlockLog, blockInAG = start & ((1 << agBlockLog) - 1)
        let first = (ag * agBlocks + blockInAG) * blockSize
        return ByteRangeSet([(first, first + logBlocks * blockSize)])
    }
}

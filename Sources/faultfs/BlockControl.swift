// `faultfs ctl TARGET ...` where TARGET is a file system on a loop device
// whose image sits on a faultfs mount: find that mount's control file
// through the loop device's backing file, and turn the block-mode keys
// (`sectors=`, `region=`, `file=`) and disk ops (`flush`, `discard`) into an
// ordinary rule on the image's byte ranges. All resolution happens here, in
// the CLI: the daemon only ever sees `ranges=`, and never calls back into
// the inner file system (its writeback may be waiting on the daemon).
import FaultRules
import Glibc

struct BlockTarget {
    var target: String
    var fileSystemType: String
    var loop: String
    /// The faultfs mount holding the image, and the image's path inside it.
    var faultMount: String
    var imageName: String

    /// Nil when `path` is not a file system on a loop device over a file on a faultfs mount.
    static func find(_ path: String) -> BlockTarget? {
        let target = UnmountCommand.resolve(path)
        let entries = MountTable.current()
        guard let top = MountTable.topMount(at: target, in: entries), top.source.hasPrefix("/dev/loop"),
              let image = BlockMode.backingFile(ofLoop: top.source) else { return nil }
        // The innermost faultfs mount whose mount point contains the image.
        let holder = entries.filter { $0.isFaultFS && image.hasPrefix($0.mountPoint + "/") }
            .max { $0.mountPoint.count < $1.mountPoint.count }
        guard let holder else { return nil }
        return BlockTarget(target: target, fileSystemType: top.fileSystemType, loop: top.source,
                           faultMount: holder.mountPoint, imageName: String(image.dropFirst(holder.mountPoint.count + 1)))
    }

    /// Lines for `faultfs ctl TARGET` without commands, before the rules.
    var factLines: [String] {
        let state = BlockState(target: target).facts
        var size = stat()
        let imageSize = stat(faultMount + "/" + imageName, &size) == 0 ? String(size.st_size) : "?"
        let sysName = loop.dropFirst(5)
        let sector = readTextFile("/sys/block/\(sysName)/queue/logical_block_size")?.trimmingNewline() ?? "?"
        let dio = readTextFile("/sys/block/\(sysName)/loop/dio")?.first == "1" ? "on" : "off"
        return [
            "# block mode: \(fileSystemType) at \(target) on \(loop) (sector size \(sector), direct I/O \(dio))",
            "# image: \(state["image"] ?? faultMount + "/" + imageName), \(imageSize) bytes, served by the faultfs mount \(faultMount)",
        ]
    }

    /// One control line with its block keys resolved.
    func rewrite(_ line: String) throws(BlockRuleError) -> String {
        let request = try BlockRuleRewriter.parse(line)
        var ranges: ByteRangeSet?
        if let sectors = request.sectors {
            ranges = BlockRuleRewriter.sectorRange(first: sectors.first, last: sectors.last)
        } else if let region = request.region {
            ranges = try resolveRegion(region)
        } else if let glob = request.fileGlob {
            ranges = try resolveFiles(glob)
        }
        return BlockRuleRewriter.line(request, imageName: imageName, ranges: ranges)
    }

    private func resolveRegion(_ region: String) throws(BlockRuleError) -> ByteRangeSet {
        guard region == "journal" else {
            throw BlockRuleError("region=\(region) is not resolved yet (only region=journal); use sectors= or file=")
        }
        switch fileSystemType {
        case "ext4", "ext3":
            let header = runTool(["dumpe2fs", "-h", loop])
            guard header.status == 0, let blockSize = BlockToolOutput.number(after: "Block size:", in: header.output) else {
                throw BlockRuleError("cannot read the superblock of \(loop): \(header.failure)")
            }
            guard let inode = BlockToolOutput.number(after: "Journal inode:", in: header.output) else {
                throw BlockRuleError("the ext4 on \(target) has no internal journal (made without has_journal, or with an external one)")
            }
            let stat = runTool(["debugfs", "-R", "stat <\(inode)>", loop])
            guard let ranges = BlockToolOutput.debugfsExtents(stat.output, blockSize: blockSize) else {
                throw BlockRuleError("cannot find the journal's blocks: \(stat.failure)")
            }
            return ranges
        case "xfs":
            let result = runTool(["xfs_db", "-r", "-c", "sb 0", "-c", "p logstart blocksize agblocks agblklog logblocks", loop])
            guard let ranges = BlockToolOutput.xfsLog(result.output) else {
                throw BlockRuleError("cannot find the XFS log on \(loop) (an external log has logstart 0): \(result.failure)")
            }
            return ranges
        default:
            throw BlockRuleError("region=journal on \(fileSystemType): \(fileSystemType) has no journal at a fixed place on the disk (Btrfs writes its log tree copy-on-write anywhere); use sectors=")
        }
    }

    /// The data blocks of the files `glob` names under the target, via
    /// FIEMAP with FIEMAP_FLAG_SYNC: dirty data is written (and so
    /// allocated) first, so what was written before the rule is covered.
    private func resolveFiles(_ pattern: String) throws(BlockRuleError) -> ByteRangeSet {
        guard fileSystemType == "ext4" || fileSystemType == "xfs" else {
            throw BlockRuleError("file= on \(fileSystemType): FIEMAP there reports logical addresses, not places on the disk; use sectors=")
        }
        guard !pattern.hasPrefix("/"), !pattern.split(separator: "/").contains("..") else {
            throw BlockRuleError("file=\(pattern) must be a path inside \(target), relative to it, without ..")
        }
        var matches = glob_t()
        defer { globfree(&matches) }
        guard glob(target + "/" + pattern, 0, nil, &matches) == 0, matches.gl_pathc > 0 else {
            throw BlockRuleError("file=\(pattern) names no file under \(target)")
        }
        var pairs: [(lower: Int64, upper: Int64)] = []
        for i in 0..<Int(matches.gl_pathc) {
            guard let cPath = matches.gl_pathv[i] else { continue }
            let path = String(cString: cPath)
            var info = stat()
            guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { continue }
            pairs += try fileExtents(path)
        }
        let set = ByteRangeSet(pairs)
        guard !set.isEmpty else {
            throw BlockRuleError("file=\(pattern): the files it names have no data blocks on the disk yet (empty, or their data is inline in the inode)")
        }
        return set
    }

    private func fileExtents(_ path: String) throws(BlockRuleError) -> [(lower: Int64, upper: Int64)] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw BlockRuleError("\(path): \(errnoString())") }
        defer { close(fd) }
        // struct fiemap (32 bytes) then fm_extent_count struct fiemap_extent (56 bytes each).
        let perCall = 256, headerSize = 32, extentSize = 56
        let fsIocFiemap: UInt = 0xC020_660B
        let fiemapFlagSync: UInt32 = 1, extentLast: UInt32 = 1
        let unusable: UInt32 = 0x2 | 0x4 | 0x8 | 0x80 | 0x200  // unknown, delalloc, encoded, encrypted, inline
        var buffer = [UInt8](repeating: 0, count: headerSize + perCall * extentSize)
        var start: UInt64 = 0
        var pairs: [(lower: Int64, upper: Int64)] = []
        while true {
            let mapped: Int = buffer.withUnsafeMutableBytes { raw -> Int in
                raw.initializeMemory(as: UInt8.self, repeating: 0)
                raw.storeBytes(of: start, toByteOffset: 0, as: UInt64.self)
                raw.storeBytes(of: UInt64.max - start, toByteOffset: 8, as: UInt64.self)
                raw.storeBytes(of: fiemapFlagSync, toByteOffset: 16, as: UInt32.self)
                raw.storeBytes(of: UInt32(perCall), toByteOffset: 24, as: UInt32.self)
                guard ioctl(fd, fsIocFiemap, raw.baseAddress!) == 0 else { return -1 }
                return Int(raw.load(fromByteOffset: 20, as: UInt32.self))
            }
            if mapped < 0 { throw BlockRuleError("FIEMAP on \(path): \(errnoString())") }
            if mapped == 0 { return pairs }
            var last = false
            for i in 0..<mapped {
                let base = headerSize + i * extentSize
                let (logical, physical, length, flags) = buffer.withUnsafeBytes {
                    ($0.load(fromByteOffset: base, as: UInt64.self), $0.load(fromByteOffset: base + 8, as: UInt64.self),
                     $0.load(fromByteOffset: base + 16, as: UInt64.self), $0.load(fromByteOffset: base + 40, as: UInt32.self))
                }
                if flags & unusable == 0 { pairs.append((Int64(physical), Int64(physical + length))) }
                start = logical + length
                if flags & extentLast != 0 { last = true }
            }
            if last { return pairs }
        }
    }
}

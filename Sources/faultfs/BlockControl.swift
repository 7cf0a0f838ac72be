// `faultfs ctl TARGET ...` where TARGET is a file system on a loop device
// whose image sits on a faultfs mount: find that mount's control file
// through the loop device's backing file, and turn the block-mode keys
// (`sectors=`, `region=`, `file=`) and disk ops (`flush`, `discard`) into an
// ordinary rule on the image's byte ranges. All resolution happens here, in
// the CLI: the daemon only ever sees `ranges=`, and never calls back into
// the inner file system (its writeback may be waiting on the daemon).
import System
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
        let sector = File.readText("/sys/block/\(sysName)/queue/logical_block_size")?.trimmingNewline() ?? "?"
        let dio = File.readText("/sys/block/\(sysName)/loop/dio")?.first == "1" ? "on" : "off"
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
    /// FIEMAP. Data still waiting for delayed allocation (ext4 and XFS
    /// allocate at writeback) has no place on the disk yet: those ranges are
    /// allocated now with fallocate(KEEP_SIZE), which writes nothing and
    /// changes neither size nor content, so the writeback that comes after
    /// the rule is armed lands in blocks the rule covers. Cost: one FIEMAP
    /// per file, plus one fallocate per delayed range; the file's ctime
    /// moves. Not caught: data appended after the rule is armed (arm the
    /// rule again to cover it).
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
        var targetInfo = stat()
        guard stat(target, &targetInfo) == 0 else { throw BlockRuleError("\(target): \(Errno.current.description)") }
        var pairs: [(lower: Int64, upper: Int64)] = []
        for i in 0..<Int(matches.gl_pathc) {
            guard let cPath = matches.gl_pathv[i] else { continue }
            let path = String(cString: cPath)
            var info = stat()
            guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { continue }
            // A file of another mount below the target has its blocks on another disk.
            guard info.st_dev == targetInfo.st_dev else {
                throw BlockRuleError("file=\(pattern): \(path) is on another file system mounted below \(target)")
            }
            let fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
            guard fd >= 0 else { throw BlockRuleError("\(path): \(Errno.current.description)") }
            defer { close(fd) }
            var extents = try fileExtents(fd, path)
            let delayed = extents.filter(\.delayed)
            if !delayed.isEmpty {
                // fallocate moves mtime and ctime; mtime is put back (ctime cannot be).
                var times = [timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2 /* UTIME_OMIT */), info.st_mtim]
                defer { _ = futimens(fd, &times) }
                for extent in delayed where csys_fallocate(fd, 1 /* FALLOC_FL_KEEP_SIZE */, off_t(extent.logical), off_t(extent.length)) != 0 {
                    throw BlockRuleError("\(path): allocating its delayed data (fallocate): \(Errno.current.description)")
                }
                extents = try fileExtents(fd, path)
            }
            pairs += extents.filter { !$0.delayed }.map { ($0.physical, $0.physical + $0.length) }
        }
        let set = ByteRangeSet(pairs)
        guard !set.isEmpty else {
            throw BlockRuleError("file=\(pattern): the files it names have no data blocks on the disk yet (empty, or their data is inline in the inode)")
        }
        return set
    }

    private struct Extent {
        var logical: Int64, physical: Int64, length: Int64
        /// Not on the disk yet (delayed allocation): `physical` means nothing.
        var delayed: Bool
    }

    /// FIEMAP without FIEMAP_FLAG_SYNC (that would write the dirty data
    /// before the rule is armed). Extents with no usable place (inline,
    /// encoded, encrypted) are left out.
    private func fileExtents(_ fd: Int32, _ path: String) throws(BlockRuleError) -> [Extent] {
        // struct fiemap (32 bytes) then fm_extent_count struct fiemap_extent (56 bytes each).
        let perCall = 256, headerSize = 32, extentSize = 56
        let fsIocFiemap: UInt = 0xC020_660B
        let extentLast: UInt32 = 0x1, extentDelayed: UInt32 = 0x4
        let unusable: UInt32 = 0x8 | 0x80 | 0x200  // encoded, encrypted, inline
        var buffer = [UInt8](repeating: 0, count: headerSize + perCall * extentSize)
        var start: UInt64 = 0
        var extents: [Extent] = []
        while true {
            let mapped: Int = buffer.withUnsafeMutableBytes { raw -> Int in
                raw.initializeMemory(as: UInt8.self, repeating: 0)
                raw.storeBytes(of: start, toByteOffset: 0, as: UInt64.self)
                raw.storeBytes(of: UInt64.max - start, toByteOffset: 8, as: UInt64.self)
                raw.storeBytes(of: UInt32(perCall), toByteOffset: 24, as: UInt32.self)
                guard ioctl(fd, fsIocFiemap, raw.baseAddress!) == 0 else { return -1 }
                return Int(raw.load(fromByteOffset: 20, as: UInt32.self))
            }
            if mapped < 0 { throw BlockRuleError("FIEMAP on \(path): \(Errno.current.description)") }
            if mapped == 0 { return extents }
            var last = false
            for i in 0..<mapped {
                let base = headerSize + i * extentSize
                let (logical, physical, length, flags) = buffer.withUnsafeBytes {
                    ($0.load(fromByteOffset: base, as: UInt64.self), $0.load(fromByteOffset: base + 8, as: UInt64.self),
                     $0.load(fromByteOffset: base + 16, as: UInt64.self), $0.load(fromByteOffset: base + 40, as: UInt32.self))
                }
                if flags & unusable == 0 {
                    extents.append(Extent(logical: Int64(logical), physical: Int64(physical), length: Int64(length),
                                          delayed: flags & extentDelayed != 0))
                }
                start = logical + length
                if flags & extentLast != 0 { last = true }
            }
            if last { return extents }
        }
    }
}

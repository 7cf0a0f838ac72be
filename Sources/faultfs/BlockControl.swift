// `faultfs ctl TARGET ...` where TARGET is a file system on a loop device
// whose image sits on a faultfs mount: find that mount's control file
// through the loop device's backing file, and turn the block-mode keys
// (`sectors=`, `region=`, `file=`) and disk ops (`flush`, `discard`) into an
// ordinary rule on the image's byte ranges. The first resolution happens
// here, in the CLI: the daemon only ever sees `ranges=`. A `file=` rule is
// also left for the daemon's re-resolver (BlockResolver.swift), which keeps
// its ranges current on a thread of its own, never in a FUSE handler.
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

    /// The state directory of `faultfs mount --fs`, whose daemon re-resolves
    /// `file=` rules; nil for a loop device attached by hand.
    var stateDirectory: String? {
        let state = BlockState(target: target)
        return state.mountpoint == faultMount && access(state.factsFile, F_OK) == 0 ? state.directory : nil
    }

    /// Control lines with their block keys resolved; the `file=` rules for
    /// the re-resolver (each given an id, `file-N`, if it has none); the
    /// ids whose records a `clear` ends (nil: all). `rules` is the control
    /// file's text now, for the ids in use.
    func prepare(_ lines: [String], rules: String) throws(BlockRuleError)
        -> (lines: [String], records: [FileRuleRecord], cleared: [String?]) {
        var out: [String] = [], records: [FileRuleRecord] = [], cleared: [String?] = []
        var used = Set(rules.split(whereSeparator: { $0 == " " || $0 == "\n" }).filter { $0.hasPrefix("id=") }.map { $0.dropFirst(3) })
        if let state = stateDirectory {
            used.formUnion(FileRuleRecord.all(inState: state).map { Substring($0.record.ruleID) })
        }
        for line in lines {
            var request = try BlockRuleRewriter.parse(line)
            if request.words.first == "clear" { cleared.append(request.words.count > 1 ? request.words[1] : nil) }
            if let glob = request.fileGlob, stateDirectory != nil {
                var id = request.words.first { $0.hasPrefix("id=") }.map { String($0.dropFirst(3)) }
                if id == nil {
                    id = (1...).lazy.map { "file-\($0)" }.first { !used.contains(Substring($0)) }!
                    request.words.append("id=" + id!)
                }
                used.insert(Substring(id!))
                records.append(FileRuleRecord(ruleID: id!, target: target, pattern: glob))
            }
            out.append(try rewrite(request))
        }
        return (out, records, cleared)
    }

    /// One control line with its block keys resolved.
    private func rewrite(_ request: BlockRuleRequest) throws(BlockRuleError) -> String {
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

    /// The data blocks of the files `pattern` names now (FileBlocks). With
    /// the re-resolver, `dir/*` may name no file yet if `dir` exists (files
    /// to come are caught); a pattern that names nothing at all is refused.
    private func resolveFiles(_ pattern: String) throws(BlockRuleError) -> ByteRangeSet {
        guard fileSystemType == "ext4" || fileSystemType == "xfs" else {
            throw BlockRuleError("file= on \(fileSystemType): FIEMAP there reports logical addresses, not places on the disk; use sectors=")
        }
        guard !pattern.hasPrefix("/"), !pattern.split(separator: "/").contains("..") else {
            throw BlockRuleError("file=\(pattern) must be a path inside \(target), relative to it, without ..")
        }
        var matches = glob_t()
        defer { globfree(&matches) }
        let namesFiles = glob(target + "/" + pattern, GLOB_NOSORT, nil, &matches) == 0 && matches.gl_pathc > 0
        let reResolved = stateDirectory != nil
        guard namesFiles || (reResolved && FileBlocks.hasDirectory(target: target, pattern: pattern)) else {
            throw BlockRuleError("file=\(pattern) names no file under \(target)")
        }
        let set = try FileBlocks.resolve(target: target, pattern: pattern, strict: true)
        guard !set.isEmpty || reResolved else {
            throw BlockRuleError("file=\(pattern): the files it names have no data blocks on the disk yet (empty, or their data is inline in the inode)")
        }
        return set
    }
}

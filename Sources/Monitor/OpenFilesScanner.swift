// Which processes have files on the mount open: /proc/PID/fdinfo/N, kept
// where mnt_id is a mount of the mount's device. fdinfo is read, the file is
// never stat'ed: a stat of a FUSE file can wait on the daemon, and the plan
// may be stalling it. Recorded on change only. This is what ties a failing
// close(fd) to its file, and what names the processes that had a file open
// when nobody was told. A file opened and closed between two samples is
// never seen.
import Glibc
import System
import MonitorCore

final class OpenFilesScanner {
    let device: DeviceID
    private var last: [Int32: [OpenFile]] = [:]
    private var comms: [Int32: String] = [:]
    private let ownPid = getpid()

    /// The mount ids of every mount of `device` (bind mounts included).
    private let mountIDs: Set<Int>

    /// The mount point, to skip fds elsewhere with one readlink each.
    private let mountPoint: String

    init(device: DeviceID, mountPoint: String) {
        self.device = device
        // Links in /proc are canonical paths.
        var resolved = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let canonical = realpath(mountPoint, &resolved) != nil ? resolved.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } : mountPoint
        self.mountPoint = canonical.count > 1 && canonical.hasSuffix("/") ? String(canonical.dropLast()) : canonical
        mountIDs = Set(MountTable.current().filter { $0.device == device.description }.map(\.mountID))
    }

    /// The processes whose open files changed since the last scan (a
    /// process that closed them all reports an empty list; one that is gone
    /// gets an empty list once).
    func scan(pids: [Int32], timeNs: Int64) -> [OpenFiles] {
        var out: [OpenFiles] = []
        var seen = Set<Int32>()
        for pid in pids where pid != ownPid && seen.insert(pid).inserted {
            guard let names = File.names(inDirectory: "/proc/\(pid)/fdinfo") else { continue }
            var files: [OpenFile] = []
            for n in names {
                guard let fd = Int32(n), underMountPoint("/proc/\(pid)/fd/\(n)"),
                      let info = File.readText("/proc/\(pid)/fdinfo/\(n)").flatMap(FdInfo.parse),
                      mountIDs.contains(info.mountID) else { continue }
                files.append(OpenFile(fd: fd, ino: info.ino))
            }
            files.sort { $0.fd < $1.fd }
            if files == (last[pid] ?? []) { continue }
            last[pid] = files
            let comm = (File.readText("/proc/\(pid)/comm") ?? "").split(separator: "\n").first.map(String.init) ?? ""
            comms[pid] = comm
            out.append(OpenFiles(timeNs: timeNs, pid: pid, comm: comm, files: files))
        }
        // Gone (or out of the tree): an empty list, so the report does not
        // count it as holding the file later on.
        for (pid, files) in last where !seen.contains(pid) {
            last[pid] = nil
            if !files.isEmpty { out.append(OpenFiles(timeNs: timeNs, pid: pid, comm: comms[pid] ?? "", files: [])) }
        }
        return out
    }

    /// Whether the fd's link names a path under the mount point (a cheap
    /// first filter; fdinfo's mount id decides). An unreadable link is kept.
    private func underMountPoint(_ link: String) -> Bool {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(link, &buffer, buffer.count - 1)
        guard n > 0 else { return true }
        let target = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return mountPoint == "/" || target == mountPoint || target.hasPrefix(mountPoint + "/")
    }

    /// The processes that had files on the mount open at the last scan.
    var holders: [Int32] { last.filter { !$0.value.isEmpty }.map(\.key) }

    /// Every process id in /proc (for `faultfs monitor`, which has no workload tree).
    static func allProcesses() -> [Int32] {
        (File.names(inDirectory: "/proc") ?? []).compactMap { Int32($0) }
    }
}

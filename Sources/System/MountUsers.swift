// Which processes use a mount (`faultfs crash --kill`): an open file, the
// working directory, the root directory or a memory mapping on it. The
// matching is pure (`MountUse`); `MountUsers.find` reads /proc.
import Glibc

/// One mount as /proc names it: its id (fdinfo's `mnt_id`), its device
/// (mountinfo's decimal `major:minor`) and its mount point.
public struct MountUse: Sendable, Equatable {
    public let mountID: Int
    public let major: UInt32
    public let minor: UInt32
    public let mountPoint: String

    /// `device` as mountinfo writes it ("0:52"); nil if malformed.
    public init?(mountID: Int, device: String, mountPoint: String) {
        let parts = device.split(separator: ":")
        guard parts.count == 2, let major = UInt32(parts[0]), let minor = UInt32(parts[1]) else { return nil }
        self.mountID = mountID; self.major = major; self.minor = minor; self.mountPoint = mountPoint
    }

    /// Whether /proc/PID/fdinfo/N's text names this mount (`mnt_id:`).
    public func holds(fdinfo text: String) -> Bool {
        for line in text.split(separator: "\n") where line.hasPrefix("mnt_id:") {
            return Int(line.dropFirst("mnt_id:".count).trimmingBlanks) == mountID
        }
        return false
    }

    /// Whether a directory link (/proc/PID/cwd or root, as readlink gives
    /// it) lies on the mount: the mount point or below it.
    public func contains(path: String) -> Bool {
        path == mountPoint || path.hasPrefix(mountPoint == "/" ? "/" : mountPoint + "/")
    }

    /// Whether /proc/PID/maps maps a file of this mount (its device field,
    /// hex `major:minor`, the 4th column).
    public func maps(_ text: String) -> Bool {
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count >= 5 else { continue }
            let device = fields[3].split(separator: ":")
            guard device.count == 2, let major = UInt32(device[0], radix: 16), let minor = UInt32(device[1], radix: 16) else { continue }
            if major == self.major && minor == self.minor && fields[4] != "0" { return true }
        }
        return false
    }
}

public enum MountUsers {
    /// The processes (other than `excluding`) with an open file, working
    /// directory, root or mapping on `mount`. Reads only /proc (no request
    /// reaches the mount, so a stalled one cannot hang the scan).
    public static func find(_ mount: MountUse, excluding: pid_t = getpid()) -> [pid_t] {
        ProcFS.pids().filter { pid in
            guard pid != excluding else { return false }
            for link in ["cwd", "root"] {
                if let target = readLink("/proc/\(pid)/\(link)"), mount.contains(path: target) { return true }
            }
            for fd in File.names(inDirectory: "/proc/\(pid)/fd") ?? [] {
                if let info = File.readText("/proc/\(pid)/fdinfo/\(fd)"), mount.holds(fdinfo: info) { return true }
            }
            if let maps = File.readText("/proc/\(pid)/maps"), mount.maps(maps) { return true }
            return false
        }
    }

    private static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buffer, buffer.count - 1)
        return n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
    }
}

// Readers of /proc for one process or thread. Each returns nil once the
// process is gone.
import Glibc

public enum ProcFS {
    /// The task's name (/proc/PID/comm, without its newline).
    public static func comm(pid: pid_t) -> String? {
        guard var text = readSmall("/proc/\(pid)/comm") else { return nil }
        if text.hasSuffix("\n") { text.removeLast() }
        return text
    }

    /// The process a thread belongs to (Tgid in /proc/TID/status).
    public static func tgid(tid: pid_t) -> pid_t? {
        guard let value = status(pid: tid)?["Tgid"] else { return nil }
        return pid_t(value)
    }

    /// /proc/PID/status as key → value ("Tgid" → "1234"), values trimmed.
    public static func status(pid: pid_t) -> [String: String]? {
        guard let text = readSmall("/proc/\(pid)/status") else { return nil }
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let value = line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" }
            fields[String(line[..<colon])] = String(value)
        }
        return fields
    }

    /// The arguments the process was started with (/proc/PID/cmdline).
    public static func cmdline(pid: pid_t) -> [String]? {
        guard let text = File.readText("/proc/\(pid)/cmdline") else { return nil }
        var arguments = text.split(separator: "\0", omittingEmptySubsequences: false).map(String.init)
        if arguments.last == "" { arguments.removeLast() }  // each argument ends with NUL
        return arguments
    }

    /// The pids of all processes (the numeric names in /proc).
    public static func pids() -> [pid_t] {
        (File.names(inDirectory: "/proc") ?? []).compactMap { pid_t($0) }
    }

    /// Our own executable, resolved (for re-running faultfs; the daemon's
    /// comm comes from this file name, where /proc/self/exe would give "exe").
    public static func selfExecutable() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        return n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "/proc/self/exe"
    }

    /// A /proc file of at most 4 KiB with one read(2) into a stack buffer
    /// (comm, status): the rule engine asks on request paths.
    static func readSmall(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 4096) { buffer in
            let n = read(fd, buffer.baseAddress, buffer.count)
            return n > 0 ? String(decoding: UnsafeBufferPointer(rebasing: buffer[0..<n]), as: UTF8.self) : nil
        }
    }
}

// The fault layer's few calls into the system: /proc readers, clocks,
// sleep, a thread. Kept in this one small file so that a shared system
// layer can replace it without touching the rest of the fault layer.
import Glibc

/// /proc/PID/comm without its newline; nil when the process is gone.
func processName(_ pid: pid_t) -> String? {
    guard let text = readProcFile("/proc/\(pid)/comm") else { return nil }
    return text.hasSuffix("\n") ? String(text.dropLast()) : text
}

/// The process a thread belongs to (Tgid in /proc/TID/status).
func threadGroup(of tid: pid_t) -> pid_t? {
    guard let text = readProcFile("/proc/\(tid)/status"),
          let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Tgid:") }) else { return nil }
    return pid_t(String(line.dropFirst(5).filter { $0 != " " && $0 != "\t" }))
}

/// The first 4 KiB of a /proc file; nil when it cannot be read.
private func readProcFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: 4096)
    let n = read(fd, &buf, buf.count)
    return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
}

func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func realtimeNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

func sleepNanoseconds(_ ns: UInt64) {
    var req = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
    var rem = timespec()
    while nanosleep(&req, &rem) != 0 && errno == EINTR { req = rem }
}

/// Runs `body` on a new detached thread.
func startThread(_ body: @escaping @Sendable () -> Void) {
    final class Box { let body: @Sendable () -> Void; init(_ body: @escaping @Sendable () -> Void) { self.body = body } }
    let context = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let started = pthread_create(&thread, nil, { raw in
        let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
        box.body()
        return nil
    }, context)
    if started == 0 { pthread_detach(thread) } else {
        Unmanaged<Box>.fromOpaque(context).release()
        body()  // no thread to be had: run it here rather than never
    }
}

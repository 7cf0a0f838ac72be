// Reads /dev/kmsg during a block-mode run and writes the messages about the
// run's loop device (the inner file system and its disk) to kernel.jsonl in
// the run folder. Starts at the end of the log (SEEK_END): what the kernel
// said before the run is not ours.
import Glibc
import MonitorCore
import System
import Synchronization

public final class KernelLogReader: Sendable {
    private let fd: Int32
    private let stopRequested = Atomic<Bool>(false)
    private let finished = Atomic<Bool>(false)

    /// Starts reading; nil (with the reason) when /dev/kmsg cannot be read.
    public static func start(device: String, outputPath: String) -> Result<KernelLogReader, MonitorError> {
        let fd = open("/dev/kmsg", O_RDWR | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return .failure(MonitorError("/dev/kmsg: \(Errno.current.description)")) }
        guard lseek(fd, 0, SEEK_END) >= 0 else {
            let e = Errno.current.description
            close(fd)
            return .failure(MonitorError("/dev/kmsg seek to end: \(e)"))
        }
        guard let out = FileAppender(outputPath) else {
            close(fd)
            return .failure(MonitorError("cannot create \(outputPath): \(Errno.current.description)"))
        }
        out.close()
        let reader = KernelLogReader(fd: fd)
        let name = device.hasPrefix("/dev/") ? String(device.dropFirst(5)) : device
        // The record times are the kernel's printk clock (local_clock), which
        // drifts from CLOCK_MONOTONIC by milliseconds over hours, as much as
        // a file system takes to react. A record of our own, stamped as we
        // write it, ties the two clocks together (see `loop`).
        let marker = "faultfs: kernel log of run \(getpid()).\(SystemClock.monotonicNanoseconds())"
        let before = SystemClock.realtimeNanoseconds()
        let bytes = Array(marker.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count  // one record per write
        let markerRealtime = before + (SystemClock.realtimeNanoseconds() - before) / 2
        startThread { reader.loop(device: name, outputPath: outputPath, marker: written ? (marker, markerRealtime) : nil) }
        return .success(reader)
    }

    private init(fd: Int32) { self.fd = fd }

    /// Reads what is left (the kernel may log a run's last errors at
    /// unmount), then stops and closes.
    public func stop() {
        stopRequested.store(true, ordering: .sequentiallyConsistent)
        let end = SystemClock.monotonicNanoseconds() + 2_000_000_000
        while !finished.load(ordering: .sequentiallyConsistent) && SystemClock.monotonicNanoseconds() < end { SystemClock.sleep(nanoseconds: 5_000_000) }
    }

    private func loop(device: String, outputPath: String, marker: (text: String, realtimeNs: Int64)?) {
        let out = FileAppender(outputPath, truncate: false)
        defer { out?.close(); close(fd); finished.store(true, ordering: .sequentiallyConsistent) }
        // realtime - printk clock: the run's times are CLOCK_REALTIME. Until
        // our marker is read, CLOCK_MONOTONIC stands in for the printk clock.
        var offsetNs = SystemClock.realtimeNanoseconds() - SystemClock.monotonicNanoseconds()
        var buffer = [UInt8](repeating: 0, count: 8192)  // one record per read(); records are at most ~1 KiB
        var draining = false
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                let record = String(decoding: buffer[0..<n], as: UTF8.self)
                guard let r = KmsgRecord.parse(record) else { continue }
                if let marker, r.text == marker.text {
                    offsetNs = marker.realtimeNs - r.monotonicMicroseconds * 1000
                    continue
                }
                if let m = KernelMessage.classify(r, offsetNs: offsetNs), m.device == device {
                    out?.line(m.jsonLine())
                    out?.flush()
                }
                continue
            }
            if n < 0 && errno == EPIPE { continue }  // overwritten before we read it: go on with the next
            if n < 0 && errno == EINTR { continue }
            // EAGAIN: nothing new. After stop, one last empty read ends it.
            if draining { return }
            if stopRequested.load(ordering: .sequentiallyConsistent) { draining = true; continue }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, 50)
        }
    }
}

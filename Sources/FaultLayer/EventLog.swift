import FaultRules
import FuseKit
import Glibc
import Synchronization

/// The injection log behind `.faultfs/events`: an append-only byte stream
/// (so `tail -f` sees the file grow) of which the last `capacity` lines are
/// kept in memory; optionally also appended to a file.
final class EventLog: Sendable {
    private struct Ring {
        var lines: [(start: Int64, bytes: [UInt8])] = []
        var first = 0            // index of the oldest line in `lines`
        var totalBytes: Int64 = 0
    }
    private let ring = Mutex(Ring())
    private let capacity: Int
    private let fileFD: Int32

    /// `path`: a file to append every line to as well (nil: none).
    init(capacity: Int = 10_000, path: String?) throws(Errno) {
        self.capacity = capacity
        if let path {
            let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            if fd < 0 { throw Errno(errno) }
            fileFD = fd
        } else {
            fileFD = -1
        }
    }

    deinit { if fileFD >= 0 { close(fileFD) } }

    /// Returns the stream's new length.
    @discardableResult
    func append(_ event: InjectionEvent) -> Int64 {
        let bytes = Array(event.jsonLine().utf8)
        let size = ring.withLock { r in
            let line = (start: r.totalBytes, bytes: bytes)
            if r.lines.count < capacity { r.lines.append(line) } else {
                r.lines[r.first] = line
                r.first = (r.first + 1) % capacity
            }
            r.totalBytes += Int64(bytes.count)
            return r.totalBytes
        }
        if fileFD >= 0 { _ = bytes.withUnsafeBytes { write(fileFD, $0.baseAddress, $0.count) } }
        return size
    }

    /// The stream's length: what `stat` shows for the events file.
    var size: Int64 { ring.withLock { $0.totalBytes } }

    /// Bytes [offset, offset+count) of the stream; what fell out of the ring
    /// is skipped (a reader that far behind resumes at the oldest line kept).
    func read(offset: Int64, count: Int) -> [UInt8] {
        ring.withLock { r in
            var out: [UInt8] = []
            var position = offset
            for i in 0..<r.lines.count {
                let line = r.lines[(r.first + i) % r.lines.count]
                let end = line.start + Int64(line.bytes.count)
                if end <= position { continue }
                let from = max(0, Int(position - line.start))
                let take = min(line.bytes.count - from, count - out.count)
                out += line.bytes[from..<(from + take)]
                position = line.start + Int64(from + take)
                if out.count == count { break }
            }
            return out
        }
    }

    var text: String { String(decoding: read(offset: 0, count: Int.max / 2), as: UTF8.self) }
}

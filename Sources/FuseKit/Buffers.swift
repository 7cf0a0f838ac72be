import CFuse
import Glibc
import System

/// The data of a write request, still in libfuse's buffer (memory, or a pipe
/// when the kernel spliced it). Valid only during the handler call. Its data
/// is taken once (`store` or `bytes`): a pipe is drained by reading it, and
/// libfuse advances a memory buffer alike.
public struct WriteSource {
    @usableFromInline let bufvec: UnsafeMutablePointer<fuse_bufvec>
    @usableFromInline init(_ bufvec: UnsafeMutablePointer<fuse_bufvec>) { self.bufvec = bufvec }

    /// How many bytes the request carries.
    @inlinable public var count: Int { fuse_buf_size(bufvec) }

    /// Stores at most `limit` bytes at `offset` of `fd` (pwrite or splice);
    /// returns how many were stored.
    @inlinable public func store(to fd: Int32, at offset: off_t, limit: Int = .max) throws(Errno) -> Int {
        let n = ffs_bufvec_copy_to_fd(bufvec, fd, offset, limit)
        if n < 0 { throw Errno(Int32(-n)) }
        return n
    }

    /// Runs `body` with a source that holds only the first `count` bytes
    /// (a short write). libfuse hands write_buf a single buffer; should it
    /// ever hand several, the whole data is kept.
    public func withPrefix<T, E: Error>(_ count: Int, _ body: (WriteSource) throws(E) -> T) throws(E) -> T {
        guard bufvec.pointee.count == 1 else { return try body(self) }
        var copy = bufvec.pointee
        copy.buf.size = min(copy.buf.size, count)
        return try withUnsafeMutablePointer(to: &copy) { (p) throws(E) -> T in try body(WriteSource(p)) }
    }

    /// Runs `body` with a source over `bytes` in memory: code that takes a
    /// `WriteSource` runs without a FUSE request (the fault layer's unit
    /// tests). Scoped like a request's source, so `WriteSource` stays one
    /// pointer, with nothing to retain on the write path.
    public static func withBytes<T, E: Error>(_ bytes: [UInt8], _ body: (WriteSource) throws(E) -> T) throws(E) -> T {
        let result = bytes.withUnsafeBytes { raw -> Result<T, E> in
            var bufvec = ffs_bufvec_mem(raw.baseAddress, raw.count)
            return withUnsafeMutablePointer(to: &bufvec) { p in Result { () throws(E) -> T in try body(WriteSource(p)) } }
        }
        return try result.get()
    }

    /// Copies the data into memory (for the daemon's own control files).
    public func bytes(limit: Int = 1 << 20) throws(Errno) -> [UInt8] {
        let n = min(count, limit)
        var out = [UInt8](repeating: 0, count: n)
        let copied = out.withUnsafeMutableBytes { ffs_bufvec_copy_to_mem(bufvec, $0.baseAddress, n) }
        if copied < 0 { throw Errno(Int32(-copied)) }
        out.removeLast(n - copied)
        return out
    }
}

/// The reply buffer of one readdir/readdirplus request. `add` returns false
/// once the entry no longer fits: stop there and reply with what was added.
///
/// A memory-backed buffer (`init(capacity:)`, for tests) holds the same
/// bytes the kernel would get; `entries(plus:)` reads them back.
public struct DirectoryBuffer: ~Copyable {
    /// Nil for a memory-backed buffer: libfuse encodes an entry without
    /// looking at the request (3.14's fuse_add_direntry and _plus never read it).
    @usableFromInline let request: fuse_req_t?
    @usableFromInline let base: UnsafeMutablePointer<CChar>
    @usableFromInline let capacity: Int
    @usableFromInline var used = 0

    init(request: fuse_req_t, capacity: Int) {
        self.request = request
        self.capacity = capacity
        self.base = .allocate(capacity: max(capacity, 1))
    }
    /// A buffer of `capacity` bytes outside any request.
    public init(capacity: Int) {
        self.request = nil
        self.capacity = capacity
        self.base = .allocate(capacity: max(capacity, 1))
    }
    deinit { base.deallocate() }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: used) }
    public var isEmpty: Bool { used == 0 }

    /// readdir: the name, the type and inode bits of `attributes`, and the
    /// offset the kernel sends back to continue after this entry.
    public mutating func add(_ name: UnsafePointer<CChar>, attributes: stat, nextOffset: off_t) -> Bool {
        var st = attributes
        let need = fuse_add_direntry(request, base + used, capacity - used, name, &st, nextOffset)
        if need > capacity - used { return false }
        used += need
        return true
    }

    /// readdirplus: as `add`, with a full entry. The kernel counts a lookup
    /// for every entry that fits (but "." and ".."), so a caller that looked
    /// the entry up must undo that lookup when this returns false.
    public mutating func addPlus(_ name: UnsafePointer<CChar>, entry: Entry, nextOffset: off_t) -> Bool {
        var param = fuse_entry_param(ino: entry.node, generation: entry.generation, attr: entry.attributes,
                                     attr_timeout: entry.attributesTimeout, entry_timeout: entry.entryTimeout)
        let need = fuse_add_direntry_plus(request, base + used, capacity - used, name, &param, nextOffset)
        if need > capacity - used { return false }
        used += need
        return true
    }

    /// The entries added so far, decoded from the kernel's format (struct
    /// fuse_dirent, after a 128-byte struct fuse_entry_out for readdirplus).
    public func entries(plus: Bool) -> [DirectoryEntry] {
        var out: [DirectoryEntry] = []
        let raw = bytes
        var at = 0
        func u64(_ offset: Int) -> UInt64 { raw.loadUnaligned(fromByteOffset: at + offset, as: UInt64.self) }
        func u32(_ offset: Int) -> UInt32 { raw.loadUnaligned(fromByteOffset: at + offset, as: UInt32.self) }
        let dirent = plus ? 128 : 0
        while at + dirent + 24 <= raw.count {
            let nameLength = Int(u32(dirent + 16))
            let nameStart = at + dirent + 24
            out.append(DirectoryEntry(
                name: String(decoding: raw[nameStart..<(nameStart + nameLength)], as: UTF8.self),
                inode: u64(dirent), type: u32(dirent + 20), nextOffset: off_t(Int64(bitPattern: u64(dirent + 8))),
                node: plus ? u64(0) : nil))
            at += (dirent + 24 + nameLength + 7) & ~7
        }
        return out
    }
}

/// One entry of a `DirectoryBuffer`, as the kernel reads it.
public struct DirectoryEntry: Sendable, Equatable {
    public var name: String
    public var inode: UInt64
    /// The file type: bits 12-15 of st_mode (DT_REG, DT_DIR, ...).
    public var type: UInt32
    public var nextOffset: off_t
    /// readdirplus: the node id of the entry (0: none, as for "." and "..").
    public var node: NodeID?
    public init(name: String, inode: UInt64, type: UInt32, nextOffset: off_t, node: NodeID?) {
        self.name = name; self.inode = inode; self.type = type; self.nextOffset = nextOffset; self.node = node
    }
}

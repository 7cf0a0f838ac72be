import CFuse
import Glibc
import System

// The only code that sees fuse_req_t. Every callback below calls the file
// system once and replies exactly once: `answer` sends the value or the
// thrown Errno; forget answers with fuse_reply_none.

/// What the C callbacks reach through `fuse_req_userdata`.
final class Dispatcher {
    let fs: any FileSystem
    let state: SessionState
    /// Read replies splice from the backing fd when the kernel allows it.
    var spliceReplies = false
    init(fs: any FileSystem, state: SessionState) { self.fs = fs; self.state = state }
}

@inline(__always) private func dispatcher(_ req: fuse_req_t?) -> Dispatcher {
    ObjectAddress.object(at: fuse_req_userdata(req)!, as: Dispatcher.self)
}
@inline(__always) private func fs(_ req: fuse_req_t?) -> any FileSystem { dispatcher(req).fs }
@inline(__always) private func caller(_ req: fuse_req_t?) -> Caller {
    let c = fuse_req_ctx(req)!.pointee
    return Caller(uid: c.uid, gid: c.gid, pid: c.pid, umask: c.umask)
}
@inline(__always) private func name(_ p: UnsafePointer<CChar>?) -> FileName { FileName(p!) }

@inline(__always) private func answer<T>(_ req: fuse_req_t?, _ body: () throws(Errno) -> T,
                                          _ send: (fuse_req_t?, T) -> Void) {
    let result: T
    do throws(Errno) { result = try body() } catch { _ = fuse_reply_err(req, error.rawValue); return }
    send(req, result)
}
@inline(__always) private func answerStatus(_ req: fuse_req_t?, _ body: () throws(Errno) -> Void) {
    do throws(Errno) { try body(); _ = fuse_reply_err(req, 0) } catch { _ = fuse_reply_err(req, error.rawValue) }
}

private func replyEntry(_ req: fuse_req_t?, _ e: Entry) {
    var p = fuse_entry_param(ino: e.node, generation: e.generation, attr: e.attributes,
                             attr_timeout: e.attributesTimeout, entry_timeout: e.entryTimeout)
    _ = fuse_reply_entry(req, &p)
}
private func replyAttr(_ req: fuse_req_t?, _ a: Attributes) {
    var st = a.stat
    _ = fuse_reply_attr(req, &st, a.timeout)
}
private func fill(_ fi: UnsafeMutablePointer<fuse_file_info>, _ o: OpenedFile) {
    fi.pointee.fh = o.handle
    ffs_fi_set_direct_io(fi, o.directIO ? 1 : 0)
    ffs_fi_set_keep_cache(fi, o.keepCache ? 1 : 0)
    ffs_fi_set_cache_readdir(fi, o.cacheReaddir ? 1 : 0)
    ffs_fi_set_nonseekable(fi, o.nonSeekable ? 1 : 0)
    ffs_fi_set_noflush(fi, o.noFlush ? 1 : 0)
}
private func replyXattr(_ req: fuse_req_t?, _ x: XattrReply) {
    switch x {
    case .size(let n): _ = fuse_reply_xattr(req, n)
    case .data(let bytes): _ = bytes.withUnsafeBufferPointer { fuse_reply_buf(req, UnsafeRawPointer($0.baseAddress)?.assumingMemoryBound(to: CChar.self), $0.count) }
    }
}

private func readdir(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ size: Int, _ off: off_t,
                     _ fi: UnsafeMutablePointer<fuse_file_info>?, plus: Bool) {
    var buffer = DirectoryBuffer(request: req!, capacity: size)
    do throws(Errno) {
        try fs(req).readdir(caller(req), node: ino, handle: fi!.pointee.fh, offset: off, plus: plus, into: &buffer)
    } catch {
        // An error after some entries were added would lose their lookups.
        if buffer.isEmpty { _ = fuse_reply_err(req, error.rawValue); return }
    }
    let bytes = buffer.bytes
    _ = fuse_reply_buf(req, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
}

func makeOperations() -> fuse_lowlevel_ops {
    var ops = fuse_lowlevel_ops()
    ops.`init` = { userdata, conn in
        let d = ObjectAddress.object(at: userdata!, as: Dispatcher.self)
        let c = conn!
        var wanted = Connection(
            capable: Capabilities(rawValue: c.pointee.capable), want: Capabilities(rawValue: c.pointee.want),
            maxWrite: c.pointee.max_write, maxReadahead: c.pointee.max_readahead,
            maxBackground: c.pointee.max_background, congestionThreshold: c.pointee.congestion_threshold,
            timeGranularity: c.pointee.time_gran)
        d.fs.initialize(&wanted, session: d.state)
        let want = wanted.want.intersection(wanted.capable)
        c.pointee.want = want.rawValue
        c.pointee.max_write = wanted.maxWrite
        c.pointee.max_readahead = wanted.maxReadahead
        c.pointee.max_background = wanted.maxBackground
        c.pointee.congestion_threshold = wanted.congestionThreshold
        c.pointee.time_gran = wanted.timeGranularity
        d.spliceReplies = want.contains(.spliceWrite)
        d.state.negotiated = want
    }
    ops.destroy = { userdata in
        ObjectAddress.object(at: userdata!, as: Dispatcher.self).fs.destroy()
    }
    ops.lookup = { req, parent, n in
        answer(req, { () throws(Errno) in try fs(req).lookup(caller(req), parent: parent, name: name(n)) }, replyEntry)
    }
    ops.forget = { req, ino, count in
        fs(req).forget(node: ino, count: count)
        fuse_reply_none(req)
    }
    ops.forget_multi = { req, count, items in
        let f = fs(req)
        for i in 0..<count { f.forget(node: items![i].ino, count: items![i].nlookup) }
        fuse_reply_none(req)
    }
    ops.getattr = { req, ino, fi in
        answer(req, { () throws(Errno) in try fs(req).getattr(caller(req), node: ino, handle: fi?.pointee.fh) }, replyAttr)
    }
    ops.setattr = { req, ino, attr, toSet, fi in
        let a = attr!.pointee
        let fields = AttributeFields(rawValue: toSet)
        let omit = timespec(tv_sec: 0, tv_nsec: Int(CSYS_UTIME_OMIT))
        let now = timespec(tv_sec: 0, tv_nsec: Int(CSYS_UTIME_NOW))
        let changes = AttributeChanges(
            fields: fields, mode: a.st_mode, uid: a.st_uid, gid: a.st_gid, size: a.st_size,
            atime: fields.contains(.atimeNow) ? now : fields.contains(.atime) ? a.st_atim : omit,
            mtime: fields.contains(.mtimeNow) ? now : fields.contains(.mtime) ? a.st_mtim : omit,
            handle: fi?.pointee.fh)
        answer(req, { () throws(Errno) in try fs(req).setattr(caller(req), node: ino, changes: changes) }, replyAttr)
    }
    ops.readlink = { req, ino in
        answer(req, { () throws(Errno) in try fs(req).readlink(caller(req), node: ino) }) { req, target in
            _ = target.withUnsafeBufferPointer { fuse_reply_readlink(req, $0.baseAddress) }
        }
    }
    ops.mknod = { req, parent, n, mode, rdev in
        answer(req, { () throws(Errno) in try fs(req).mknod(caller(req), parent: parent, name: name(n), mode: mode, device: rdev) }, replyEntry)
    }
    ops.mkdir = { req, parent, n, mode in
        answer(req, { () throws(Errno) in try fs(req).mkdir(caller(req), parent: parent, name: name(n), mode: mode) }, replyEntry)
    }
    ops.unlink = { req, parent, n in
        answerStatus(req) { () throws(Errno) in try fs(req).unlink(caller(req), parent: parent, name: name(n)) }
    }
    ops.rmdir = { req, parent, n in
        answerStatus(req) { () throws(Errno) in try fs(req).rmdir(caller(req), parent: parent, name: name(n)) }
    }
    ops.symlink = { req, target, parent, n in
        answer(req, { () throws(Errno) in try fs(req).symlink(caller(req), target: name(target), parent: parent, name: name(n)) }, replyEntry)
    }
    ops.rename = { req, parent, n, newParent, newName, flags in
        answerStatus(req) { () throws(Errno) in
            try fs(req).rename(caller(req), parent: parent, name: name(n), newParent: newParent, newName: name(newName), flags: flags)
        }
    }
    ops.link = { req, ino, newParent, newName in
        answer(req, { () throws(Errno) in try fs(req).link(caller(req), node: ino, newParent: newParent, newName: name(newName)) }, replyEntry)
    }
    ops.open = { req, ino, fi in
        answer(req, { () throws(Errno) in try fs(req).open(caller(req), node: ino, flags: fi!.pointee.flags) }) { req, opened in
            fill(fi!, opened)
            if fuse_reply_open(req, fi) == -ENOENT {
                // The opener was interrupted: nobody will release this handle.
                fs(req).release(caller(req), node: ino, handle: opened.handle)
            }
        }
    }
    ops.create = { req, parent, n, mode, fi in
        answer(req, { () throws(Errno) in
            try fs(req).create(caller(req), parent: parent, name: name(n), mode: mode, flags: fi!.pointee.flags)
        }) { req, result in
            fill(fi!, result.1)
            var p = fuse_entry_param(ino: result.0.node, generation: result.0.generation, attr: result.0.attributes,
                                     attr_timeout: result.0.attributesTimeout, entry_timeout: result.0.entryTimeout)
            if fuse_reply_create(req, &p, fi) == -ENOENT {
                fs(req).release(caller(req), node: result.0.node, handle: result.1.handle)
                fs(req).forget(node: result.0.node, count: 1)
            }
        }
    }
    ops.read = { req, ino, size, off, fi in
        answer(req, { () throws(Errno) in try fs(req).read(caller(req), node: ino, handle: fi!.pointee.fh, offset: off, size: size) }) { req, data in
            switch data {
            case .file(let fd, let offset, let count):
                _ = ffs_reply_data_fd(req, fd, count, offset, dispatcher(req).spliceReplies ? 1 : 0)
            case .bytes(let bytes):
                _ = bytes.withUnsafeBufferPointer { fuse_reply_buf(req, UnsafeRawPointer($0.baseAddress)?.assumingMemoryBound(to: CChar.self), $0.count) }
            }
        }
    }
    ops.write_buf = { req, ino, bufv, off, fi in
        answer(req, { () throws(Errno) in
            try fs(req).write(caller(req), node: ino, handle: fi!.pointee.fh, data: WriteSource(bufv!),
                              offset: off, fromWriteback: ffs_fi_writepage(fi) != 0)
        }) { req, n in _ = fuse_reply_write(req, n) }
    }
    ops.flush = { req, ino, fi in
        answerStatus(req) { () throws(Errno) in try fs(req).flush(caller(req), node: ino, handle: fi!.pointee.fh) }
    }
    ops.release = { req, ino, fi in
        fs(req).release(caller(req), node: ino, handle: fi!.pointee.fh)
        _ = fuse_reply_err(req, 0)
    }
    ops.fsync = { req, ino, datasync, fi in
        answerStatus(req) { () throws(Errno) in try fs(req).fsync(caller(req), node: ino, handle: fi!.pointee.fh, dataOnly: datasync != 0) }
    }
    ops.opendir = { req, ino, fi in
        answer(req, { () throws(Errno) in try fs(req).opendir(caller(req), node: ino, flags: fi!.pointee.flags) }) { req, opened in
            fill(fi!, opened)
            if fuse_reply_open(req, fi) == -ENOENT { fs(req).releasedir(caller(req), node: ino, handle: opened.handle) }
        }
    }
    ops.readdir = { req, ino, size, off, fi in readdir(req, ino, size, off, fi, plus: false) }
    ops.readdirplus = { req, ino, size, off, fi in readdir(req, ino, size, off, fi, plus: true) }
    ops.releasedir = { req, ino, fi in
        fs(req).releasedir(caller(req), node: ino, handle: fi!.pointee.fh)
        _ = fuse_reply_err(req, 0)
    }
    ops.fsyncdir = { req, ino, datasync, fi in
        answerStatus(req) { () throws(Errno) in try fs(req).fsyncdir(caller(req), node: ino, handle: fi!.pointee.fh, dataOnly: datasync != 0) }
    }
    ops.statfs = { req, ino in
        answer(req, { () throws(Errno) in try fs(req).statfs(caller(req), node: ino) }) { req, st in
            var s = st
            _ = fuse_reply_statfs(req, &s)
        }
    }
    ops.access = { req, ino, mask in
        answerStatus(req) { () throws(Errno) in try fs(req).access(caller(req), node: ino, mask: mask) }
    }
    ops.setxattr = { req, ino, n, value, size, flags in
        answerStatus(req) { () throws(Errno) in
            try fs(req).setxattr(caller(req), node: ino, name: name(n), value: UnsafeRawBufferPointer(start: value, count: size), flags: flags)
        }
    }
    ops.getxattr = { req, ino, n, size in
        answer(req, { () throws(Errno) in try fs(req).getxattr(caller(req), node: ino, name: name(n), size: size) }, replyXattr)
    }
    ops.listxattr = { req, ino, size in
        answer(req, { () throws(Errno) in try fs(req).listxattr(caller(req), node: ino, size: size) }, replyXattr)
    }
    ops.removexattr = { req, ino, n in
        answerStatus(req) { () throws(Errno) in try fs(req).removexattr(caller(req), node: ino, name: name(n)) }
    }
    ops.fallocate = { req, ino, mode, off, len, fi in
        answerStatus(req) { () throws(Errno) in
            try fs(req).fallocate(caller(req), node: ino, handle: fi!.pointee.fh, mode: mode, offset: off, length: len)
        }
    }
    ops.copy_file_range = { req, inoIn, offIn, fiIn, inoOut, offOut, fiOut, len, flags in
        answer(req, { () throws(Errno) in
            try fs(req).copyFileRange(caller(req), from: inoIn, sourceHandle: fiIn!.pointee.fh, sourceOffset: offIn,
                                      to: inoOut, destinationHandle: fiOut!.pointee.fh, destinationOffset: offOut,
                                      length: len, flags: flags)
        }) { req, n in _ = fuse_reply_write(req, n) }
    }
    ops.lseek = { req, ino, off, whence, fi in
        answer(req, { () throws(Errno) in try fs(req).lseek(caller(req), node: ino, handle: fi!.pointee.fh, offset: off, whence: whence) }) { req, pos in
            _ = fuse_reply_lseek(req, pos)
        }
    }
    return ops
}

import CFuse
import FuseKit
import Glibc
import Testing

/// The binding's constants must be libfuse's: a wrong bit would silently
/// turn a feature off or misread a setattr.
@Suite struct BindingConstantsTests {
    @Test func attributeFieldsMatchLibfuse() {
        #expect(AttributeFields.mode.rawValue == FUSE_SET_ATTR_MODE)
        #expect(AttributeFields.uid.rawValue == FUSE_SET_ATTR_UID)
        #expect(AttributeFields.gid.rawValue == FUSE_SET_ATTR_GID)
        #expect(AttributeFields.size.rawValue == FUSE_SET_ATTR_SIZE)
        #expect(AttributeFields.atime.rawValue == FUSE_SET_ATTR_ATIME)
        #expect(AttributeFields.mtime.rawValue == FUSE_SET_ATTR_MTIME)
        #expect(AttributeFields.atimeNow.rawValue == FUSE_SET_ATTR_ATIME_NOW)
        #expect(AttributeFields.mtimeNow.rawValue == FUSE_SET_ATTR_MTIME_NOW)
        #expect(AttributeFields.ctime.rawValue == FUSE_SET_ATTR_CTIME)
        #expect(AttributeFields.killSUID.rawValue == FUSE_SET_ATTR_KILL_SUID)
        #expect(AttributeFields.killSGID.rawValue == FUSE_SET_ATTR_KILL_SGID)
    }

    @Test func capabilitiesMatchLibfuse() {
        let pairs: [(Capabilities, Int32)] = [
            (.asyncRead, FUSE_CAP_ASYNC_READ), (.posixLocks, FUSE_CAP_POSIX_LOCKS),
            (.atomicOTrunc, FUSE_CAP_ATOMIC_O_TRUNC), (.exportSupport, FUSE_CAP_EXPORT_SUPPORT),
            (.dontMask, FUSE_CAP_DONT_MASK), (.spliceWrite, FUSE_CAP_SPLICE_WRITE),
            (.spliceMove, FUSE_CAP_SPLICE_MOVE), (.spliceRead, FUSE_CAP_SPLICE_READ),
            (.flockLocks, FUSE_CAP_FLOCK_LOCKS), (.autoInvalData, FUSE_CAP_AUTO_INVAL_DATA),
            (.readdirplus, FUSE_CAP_READDIRPLUS), (.readdirplusAuto, FUSE_CAP_READDIRPLUS_AUTO),
            (.asyncDIO, FUSE_CAP_ASYNC_DIO), (.writebackCache, FUSE_CAP_WRITEBACK_CACHE),
            (.parallelDirops, FUSE_CAP_PARALLEL_DIROPS), (.posixACL, FUSE_CAP_POSIX_ACL),
            (.handleKillpriv, FUSE_CAP_HANDLE_KILLPRIV), (.cacheSymlinks, FUSE_CAP_CACHE_SYMLINKS),
            (.explicitInvalData, FUSE_CAP_EXPLICIT_INVAL_DATA),
        ]
        for (capability, value) in pairs { #expect(capability.rawValue == UInt32(value)) }
    }
}

@Suite struct FileNameTests {
    @Test func fileNameComparesBytes() {
        "control".withCString { c in
            #expect(FileName(c).equals("control"))
            #expect(!FileName(c).equals("controls"))
            #expect(FileName(c).string == "control")
        }
    }
}

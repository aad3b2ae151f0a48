import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A read-only memory map of a whole file.
public final class MappedFile: @unchecked Sendable {
    /// The file's path.
    public let path: String
    /// Size in bytes.
    public let size: Int
    /// The first byte (nil for an empty file).
    public let base: UnsafeRawPointer?

    /// Maps `path`; throws a `ModelError` naming the file when it cannot be opened.
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw ModelError("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw ModelError("cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw ModelError("\(path) is not a regular file") }
        size = Int(info.st_size)
        if size == 0 {
            base = nil
            return
        }
        guard let pointer = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), pointer != MAP_FAILED else {
            throw ModelError("cannot map \(path): \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(pointer)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }

    /// Tells the kernel the bytes `offset ..< offset + count` were copied out and are not needed
    /// again: their whole pages leave this process's resident set (a later read faults them back
    /// in from the page cache). Loading a 16 GB checkpoint into 4-bit weights would otherwise keep
    /// every page it read counted in the process's memory until the file is closed.
    public func release(offset: Int, count: Int) {
        guard let base, count > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (offset + page - 1) / page * page, end = min(size, offset + count) / page * page
        guard end > start else { return }
        madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, Int32(MADV_DONTNEED))
    }

    /// The bytes as a buffer.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }
}

#include "virtio/blk/disk_image.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace vireo::virtio {

Result<std::shared_ptr<DiskImage>> DiskImage::open(const DiskOptions& o,
                                                   std::span<const InputFile> reads, bool lock) {
    // O_NONBLOCK while it is checked: a FIFO would otherwise wait for its other end forever.
    const int flags = (o.readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    UniqueFd fd(::open(o.path.c_str(), flags));
    if (!fd) {
        const int e = errno;
        if (e == EISDIR)
            return fail(ErrorCode::InvalidArgument, "disk {}: is a directory, not an image",
                        o.path);
        const bool hint = !o.readonly && (e == EACCES || e == EROFS || e == EPERM);
        return fail_errno(e, "disk {}: cannot open{}", o.path,
                          hint ? " for writing (add ,readonly to attach it read-only)" : "");
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return fail_errno(errno, "disk {}: stat", o.path);
    if (const InputFile* in = o.readonly ? nullptr : find_input(reads, st))
        return fail(ErrorCode::InvalidArgument,
                    "disk {}: is the {}, which vireo reads: a writable disk cannot be one", o.path,
                    in->name);
    uint64_t size = 0;
    if (S_ISREG(st.st_mode)) {
        size = static_cast<uint64_t>(st.st_size);
    } else if (S_ISBLK(st.st_mode)) {
        if (::ioctl(fd.get(), BLKGETSIZE64, &size) != 0)
            return fail_errno(errno, "disk {}: BLKGETSIZE64", o.path);
    } else if (S_ISDIR(st.st_mode)) {
        return fail(ErrorCode::InvalidArgument, "disk {}: is a directory, not an image", o.path);
    } else {
        return fail(ErrorCode::InvalidArgument, "disk {}: not a regular file or block device",
                    o.path);
    }
    if (size == 0 || size % 512 != 0)
        return fail(ErrorCode::InvalidArgument,
                    "disk {}: size {} bytes is not a positive multiple of 512", o.path, size);
    // Back to blocking: io_uring answers EAGAIN instead of waiting for an O_NONBLOCK file.
    if (::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK) != 0)
        return fail_errno(errno, "disk {}: fcntl", o.path);
    auto disk = std::shared_ptr<DiskImage>(new DiskImage(std::move(fd), size, o, file_id(st)));
    if (lock) VIREO_TRY(disk->lock());
    return disk;
}

Result<void> DiskImage::lock() {
    if (::flock(fd_.get(), (options_.readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            return fail(ErrorCode::AlreadyExists,
                        "disk {}: in use (locked by another vireo or QEMU, or given twice)",
                        options_.path);
        return fail_errno(errno, "disk {}: flock", options_.path);
    }
    return {};
}

void DiskImage::unlock() noexcept {
    (void)::flock(fd_.get(), LOCK_UN);
}

}  // namespace vireo::virtio

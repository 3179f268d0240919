// A virtio-blk back-end: a raw image (regular file or block device), checked, opened and locked
// (flock) against a second writer before any guest runs, and kept across reboots. Its options
// (`--disk`, a domain's `disks`) and their parser live here with it.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "base/file_id.hpp"
#include "base/result.hpp"
#include "base/token_bucket.hpp"
#include "base/unique_fd.hpp"

namespace vireo::virtio {

/// The longest serial (VIRTIO_BLK_T_GET_ID answers with this many bytes).
inline constexpr size_t kBlkIdBytes = 20;

/// `--disk PATH[,readonly][,serial=ID][,queue-size=N]`.
struct DiskOptions {
    std::string path;
    bool readonly = false;
    std::string serial;         ///< up to 20 bytes, reported by VIRTIO_BLK_T_GET_ID
    uint16_t queue_size = 256;  ///< QueueNumMax: a power of two, 2 to 1024
    IoLimits limits;            ///< reads and writes: bytes and operations per second
};

/// An opened, locked raw image (regular file or block device). Checked before a guest starts:
/// exists, readable (and writable unless read-only), not a directory, size a multiple of 512.
class DiskImage {
  public:
    /// A writable disk that is one of `reads` (the kernel, the initrd, earlier disks: files
    /// vireo reads) is refused first, before its size or lock is looked at.
    /// Without `lock`, the image is opened and checked but not locked yet (a migration's
    /// destination: the source holds the lock until it hands the domain over): lock() then.
    static Result<std::shared_ptr<DiskImage>> open(const DiskOptions& options,
                                                   std::span<const InputFile> reads = {},
                                                   bool lock = true);
    /// Takes the lock (exclusive, or shared for a read-only image); an error naming the image
    /// if another holds it.
    Result<void> lock();
    /// Gives the lock up (a migration's source, stopped, before the destination takes it).
    void unlock() noexcept;
    int fd() const noexcept { return fd_.get(); }
    uint64_t size() const noexcept { return size_; }
    const DiskOptions& options() const noexcept { return options_; }
    FileId id() const noexcept { return id_; }

  private:
    DiskImage(UniqueFd fd, uint64_t size, DiskOptions options, FileId id)
        : fd_(std::move(fd)), size_(size), options_(std::move(options)), id_(id) {}
    UniqueFd fd_;
    uint64_t size_;
    DiskOptions options_;
    FileId id_;
};

}  // namespace vireo::virtio

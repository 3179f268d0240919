#include "vmm/console_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"

namespace vireo::vmm {

std::shared_ptr<ConsoleLog> ConsoleLog::file(UniqueFd fd, std::string path, uint64_t max_bytes,
                                             std::span<const InputFile> reads) {
    struct stat st {};
    const bool regular = ::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode);
    const uint64_t size = regular ? static_cast<uint64_t>(st.st_size) : 0;
    auto log = std::shared_ptr<ConsoleLog>(new ConsoleLog(fd.release(), true,
                                                          regular ? std::move(path) : std::string(),
                                                          regular ? max_bytes : 0, size));
    if (regular) {
        log->id_ = file_id(st);
        log->reads_.assign(reads.begin(), reads.end());
        // Standard output and error that are this same file (a domain of `vireo up`, whose
        // log is both) move with it at each rotation.
        for (int other : {STDOUT_FILENO, STDERR_FILENO}) {
            struct stat o {};
            if (::fstat(other, &o) == 0 && file_id(o) == log->id_) log->followers_.push_back(other);
        }
    }
    return log;
}

std::shared_ptr<ConsoleLog> ConsoleLog::stream(int fd) {
    return std::shared_ptr<ConsoleLog>(new ConsoleLog(fd, false, {}, 0, 0));
}

ConsoleLog::ConsoleLog(int fd, bool owned, std::string path, uint64_t max_bytes, uint64_t size)
    : fd_(fd), owned_(owned), path_(std::move(path)), max_(max_bytes), size_(size) {}

ConsoleLog::~ConsoleLog() {
    if (owned_ && fd_ >= 0) ::close(fd_);
}

void ConsoleLog::put(uint8_t byte) noexcept {
    if (fd_ < 0) return;
    if (broken_) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    if (max_ != 0 && size_ >= max_) {
        rotate();
        if (broken_) return;  // this byte was counted by drop()
    }
    ssize_t n;
    while ((n = ::write(fd_, &byte, 1)) < 0 && errno == EINTR) {
    }
    if (n != 1) {
        write_errors_.fetch_add(1, std::memory_order_relaxed);
        drop("write", n < 0 ? errno : EIO);
        return;
    }
    ++size_;
    bytes_.fetch_add(1, std::memory_order_relaxed);
}

void ConsoleLog::drop(const char* why, int err) noexcept {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    if (warned_) return;
    warned_ = true;  // once: a full disk would otherwise log a line per byte
    log::warn(
        "console {}: {} failed: {}; output is dropped and counted (console_log_dropped_bytes)",
        path_.empty() ? "output" : path_, why, std::strerror(err));
}

// PATH -> PATH.1, a new PATH, and every descriptor that was the old file moves to the new one
// (dup2: the numbers stay, so the UART and the log never see a closed descriptor). If PATH is
// no longer this file (moved by someone else, as logrotate does), it is not renamed: a new
// PATH is started beside it.
void ConsoleLog::rotate() noexcept {
    if (old_) {
        rotate_in_place();
        return;
    }
    struct stat st {};
    const bool ours = ::lstat(path_.c_str(), &st) == 0 && file_id(st) == id_;
    if (ours) {
        const std::string old = path_ + ".1";
        if (::rename(path_.c_str(), old.c_str()) != 0) {
            broken_ = true;
            drop("rotation (rename to .1)", errno);
            return;
        }
    }
    // After our own rename PATH must be new (O_EXCL); a PATH someone else made is appended to.
    UniqueFd next(::open(
        path_.c_str(),
        O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | (ours ? O_EXCL : 0),
        0600));
    if (!next || ::fstat(next.get(), &st) != 0) {
        broken_ = true;
        drop("rotation (a new file)", errno);
        return;
    }
    // A PATH someone else put there may be another name of a file vireo reads (a hard link to
    // the kernel or a disk): never written (after our own rename, O_EXCL made it new).
    if (find_input(reads_, st) != nullptr) {
        broken_ = true;
        drop("rotation (the new file is one vireo reads)", EEXIST);
        return;
    }
    // dup2 clears FD_CLOEXEC on the target: the console descriptor keeps it.
    if (::dup3(next.get(), fd_, O_CLOEXEC) < 0) {
        broken_ = true;
        drop("rotation (dup3)", errno);
        return;
    }
    for (int f : followers_)
        (void)::dup2(next.get(), f);
    id_ = file_id(st);
    size_ = 0;
    rotations_.fetch_add(1, std::memory_order_relaxed);
}

ConsoleLog::Stats ConsoleLog::stats() const noexcept {
    return {bytes_.load(std::memory_order_relaxed), rotations_.load(std::memory_order_relaxed),
            write_errors_.load(std::memory_order_relaxed),
            dropped_.load(std::memory_order_relaxed)};
}

Result<void> ConsoleLog::confine() {
    if (path_.empty() || max_ == 0 || old_) return {};
    UniqueFd reader(::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY));
    struct stat st {};
    if (!reader || ::fstat(reader.get(), &st) != 0 || file_id(st) != id_)
        return fail(ErrorCode::System, "console {}: cannot reopen it for rotation in the sandbox",
                    path_);
    const std::string old_path = path_ + ".1";
    UniqueFd old(::open(old_path.c_str(),
                        O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK, 0600));
    if (!old || ::fstat(old.get(), &st) != 0)
        return fail_errno(errno, "console {}: open {}", path_, old_path);
    // PATH.1 someone else put there may be another name of a file vireo reads, or PATH itself.
    if (!S_ISREG(st.st_mode) || find_input(reads_, st) != nullptr || file_id(st) == id_)
        return fail(ErrorCode::AlreadyExists,
                    "console {}: {} is not a regular file of its own (a file vireo reads, or "
                    "the log itself): refused",
                    path_, old_path);
    reader_ = std::move(reader);
    old_ = std::move(old);
    return {};
}

// In the sandbox: PATH's bytes into PATH.1 (emptied first), then PATH emptied; the
// descriptors stay the same files.
void ConsoleLog::rotate_in_place() noexcept {
    if (::ftruncate(old_.get(), 0) != 0) {
        broken_ = true;
        drop("rotation (empty .1)", errno);
        return;
    }
    loff_t in = 0, out = 0;
    for (;;) {
        const ssize_t n = ::copy_file_range(reader_.get(), &in, old_.get(), &out, 1 << 20, 0);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            broken_ = true;
            drop("rotation (copy to .1)", errno);
            return;
        }
    }
    if (::ftruncate(fd_, 0) != 0 || ::lseek(fd_, 0, SEEK_SET) < 0) {
        broken_ = true;
        drop("rotation (empty the log)", errno);
        return;
    }
    size_ = 0;
    rotations_.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace vireo::vmm

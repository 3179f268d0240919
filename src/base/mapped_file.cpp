#include "base/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>

#include "base/unique_fd.hpp"

namespace vireo {

Result<MappedFile> MappedFile::open(const std::string& path, const char* what) {
    // O_NONBLOCK: opening a FIFO for reading would wait for a writer (forever); it is refused
    // below like any other file that is not a regular one.
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    if (!fd) return fail_errno(errno, "cannot open {} {}", what, path);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return fail_errno(errno, "cannot stat {} {}", what, path);
    if (!S_ISREG(st.st_mode))
        return fail(ErrorCode::InvalidArgument, "{} {} is not a regular file", what, path);
    if (st.st_size == 0) return fail(ErrorCode::InvalidArgument, "{} {} is empty", what, path);
    void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (p == MAP_FAILED) return fail_errno(errno, "cannot map {} {}", what, path);
    MappedFile f;
    f.data_ = static_cast<const uint8_t*>(p);
    f.size_ = static_cast<size_t>(st.st_size);
    f.path_ = path;
    f.id_ = file_id(st);
    return f;
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      path_(std::move(o.path_)),
      id_(o.id_) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
    if (this != &o) {
        if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
        data_ = std::exchange(o.data_, nullptr);
        size_ = std::exchange(o.size_, 0);
        path_ = std::move(o.path_);
        id_ = o.id_;
    }
    return *this;
}

MappedFile::~MappedFile() {
    if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace vireo

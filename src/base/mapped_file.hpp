// A file mapped read-only (for kernel and initrd images): no copy into the VMM's heap.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/file_id.hpp"
#include "base/result.hpp"

namespace vireo {

class MappedFile {
  public:
    /// Maps `path` read-only. `what` names the file in errors ("kernel", "initrd"). Anything
    /// but a non-empty regular file is refused without waiting (a FIFO is opened non-blocking).
    static Result<MappedFile> open(const std::string& path, const char* what);

    MappedFile(MappedFile&& o) noexcept;
    MappedFile& operator=(MappedFile&& o) noexcept;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    ~MappedFile();

    std::span<const uint8_t> bytes() const noexcept { return {data_, size_}; }
    const std::string& path() const noexcept { return path_; }
    /// The mapped file's identity (for "is this output one of my inputs?").
    FileId id() const noexcept { return id_; }

  private:
    MappedFile() = default;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    std::string path_;
    FileId id_;
};

}  // namespace vireo

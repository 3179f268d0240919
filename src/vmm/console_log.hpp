// Where the guest's serial console output goes: a file vireo opened (`--console file:PATH` or
// `append:PATH`; a domain's RUN_DIR/NAME.log under `vireo up`), or standard output.
//
// A file is bounded: once it holds `max_bytes`, it is renamed PATH.1 (replacing the previous
// one) and a new PATH is started, so a guest that floods its console costs at most about twice
// `max_bytes` of disk. Standard output and the other descriptors that were the same file (a
// domain's stderr under `vireo up`) follow to the new file. A write that fails (a full disk)
// is dropped and counted, never retried or waited on; so is everything once rotation failed.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/file_id.hpp"
#include "base/limits.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "devices/legacy/serial.hpp"

namespace vireo::vmm {

class ConsoleLog final : public devices::OutputTap {
  public:
    struct Stats {
        uint64_t bytes = 0;          ///< written since start, all files
        uint64_t rotations = 0;      ///< times PATH became PATH.1
        uint64_t write_errors = 0;   ///< failed writes (each byte counts once)
        uint64_t dropped_bytes = 0;  ///< bytes not written (failed writes, failed rotation)
    };

    /// A file vireo opened at `path`: bounded to `max_bytes` when it is a regular file. A new
    /// PATH found at rotation is refused if it is one of `reads` (files vireo reads).
    static std::shared_ptr<ConsoleLog> file(UniqueFd fd, std::string path, uint64_t max_bytes,
                                            std::span<const InputFile> reads = {});
    /// A descriptor vireo does not own (standard output): written, counted, never rotated.
    static std::shared_ptr<ConsoleLog> stream(int fd);
    ~ConsoleLog();
    ConsoleLog(const ConsoleLog&) = delete;
    ConsoleLog& operator=(const ConsoleLog&) = delete;

    /// Called with the UART's mutex held (one writer at a time); never blocks on rotation.
    void put(uint8_t byte) noexcept override;
    Stats stats() const noexcept;
    int fd() const noexcept { return fd_; }

    /// Before the domain enters its sandbox (no file system afterwards): opens PATH.1 and a
    /// reader of PATH now, and rotates through them from then on: PATH's content is copied into
    /// PATH.1 (replacing it) and PATH emptied in place. Same files, same bound; PATH.1 exists
    /// (empty) from the start. No-op for an unbounded log or a stream.
    Result<void> confine();

  private:
    ConsoleLog(int fd, bool owned, std::string path, uint64_t max_bytes, uint64_t size);
    void rotate() noexcept;
    void rotate_in_place() noexcept;
    void drop(const char* why, int err) noexcept;

    int fd_;
    bool owned_;
    std::string path_;              // empty: never rotated
    uint64_t max_ = 0;              // 0: unbounded
    uint64_t size_ = 0;             // of the current file, as far as this writer knows
    FileId id_{};                   // of the current file
    std::vector<int> followers_;    // descriptors that were the same file (stdout, stderr)
    std::vector<InputFile> reads_;  // never written, whatever name they appear under
    UniqueFd reader_, old_;         // confine(): PATH read-only and PATH.1
    bool broken_ = false;           // rotation failed: everything is dropped from now on
    bool warned_ = false;
    std::atomic<uint64_t> bytes_{0}, rotations_{0}, write_errors_{0}, dropped_{0};
};

}  // namespace vireo::vmm

// The console log's bound: rotation at the size limit, PATH.1 replaced, a path moved away by
// someone else, and failed writes (a full disk: /dev/full) dropped and counted.
#include "vmm/console_log.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace vireo::vmm {
namespace {

namespace fs = std::filesystem;

class ConsoleLogTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/vireo-console-log.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        path_ = dir_ + "/c.log";
    }
    void TearDown() override { fs::remove_all(dir_); }

    std::shared_ptr<ConsoleLog> open_log(uint64_t max) {
        UniqueFd fd(::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
        EXPECT_TRUE(fd);
        return ConsoleLog::file(std::move(fd), path_, max);
    }
    static void put(ConsoleLog& log, const std::string& s) {
        for (char c : s)
            log.put(static_cast<uint8_t>(c));
    }
    static std::string read(const std::string& p) {
        std::ifstream f(p);
        std::stringstream ss;
        ss << f.rdbuf();
        return ss.str();
    }

    std::string dir_, path_;
};

TEST_F(ConsoleLogTest, RotatesAtTheBoundKeepingOneOldFile) {
    auto log = open_log(10);
    put(*log, "0123456789abcdefghij");  // 20 bytes: one full file, then one more
    EXPECT_EQ(read(path_ + ".1"), "0123456789");
    EXPECT_EQ(read(path_), "abcdefghij");
    put(*log, "XYZ");  // the second rotation replaces PATH.1
    EXPECT_EQ(read(path_ + ".1"), "abcdefghij");
    EXPECT_EQ(read(path_), "XYZ");
    const auto s = log->stats();
    EXPECT_EQ(s.bytes, 23u);
    EXPECT_EQ(s.rotations, 2u);
    EXPECT_EQ(s.dropped_bytes, 0u);
    struct stat st {};
    ASSERT_EQ(::stat(path_.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(ConsoleLogTest, ExistingContentCountsTowardTheBound) {
    { std::ofstream(path_) << "12345678"; }
    auto log = open_log(10);
    put(*log, "abc");
    EXPECT_EQ(read(path_ + ".1"), "12345678ab");
    EXPECT_EQ(read(path_), "c");
}

TEST_F(ConsoleLogTest, APathMovedAwayIsNotRenamedAgain) {
    auto log = open_log(4);
    put(*log, "abcd");
    fs::rename(path_, dir_ + "/moved.log");  // as logrotate does
    put(*log, "ef");
    EXPECT_EQ(read(dir_ + "/moved.log"), "abcd");
    EXPECT_FALSE(fs::exists(path_ + ".1"));
    EXPECT_EQ(read(path_), "ef");
}

TEST_F(ConsoleLogTest, ANewPathThatIsAnInputIsNeverWritten) {
    const std::string kernel = dir_ + "/k.elf";
    { std::ofstream(kernel) << "ELF"; }
    struct stat st {};
    ASSERT_EQ(::stat(kernel.c_str(), &st), 0);
    const InputFile reads[] = {{file_id(st), "kernel k.elf"}};
    UniqueFd fd(::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd);
    auto log = ConsoleLog::file(std::move(fd), path_, 4, reads);
    put(*log, "abcd");
    fs::rename(path_, dir_ + "/moved.log");
    fs::create_hard_link(kernel, path_);  // PATH is now another name of the kernel
    put(*log, "ef");
    EXPECT_EQ(read(kernel), "ELF");
    EXPECT_EQ(log->stats().dropped_bytes, 2u);
}

TEST_F(ConsoleLogTest, FailedWritesAreDroppedAndCounted) {
    UniqueFd full(::open("/dev/full", O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(full);
    auto log = ConsoleLog::file(std::move(full), "/dev/full", kMinConsoleLogMax);
    put(*log, "hello");
    const auto s = log->stats();
    EXPECT_EQ(s.bytes, 0u);
    EXPECT_EQ(s.write_errors, 5u);
    EXPECT_EQ(s.dropped_bytes, 5u);
    EXPECT_EQ(s.rotations, 0u);  // a character device is never rotated
}

TEST_F(ConsoleLogTest, AFailedRotationDropsEverythingAfter) {
    auto log = open_log(4);
    put(*log, "abcd");
    fs::create_directory(path_ + ".1");  // rename(PATH, PATH.1) fails: PATH.1 is a directory
    put(*log, "ef");
    const auto s = log->stats();
    EXPECT_EQ(s.bytes, 4u);
    EXPECT_EQ(s.dropped_bytes, 2u);
    EXPECT_EQ(read(path_), "abcd");  // the bound held
}

}  // namespace
}  // namespace vireo::vmm

// Live migration of a whole vmm::Vm within one process, over a socket pair, with the tiny
// counting guest (pvh_counter: "C=<count>" lines, the count in guest memory): the dirty log sees
// the guest's writes to a slot whose logging was switched on while it ran; a machine migrated
// while it counts goes on at the destination with no count repeated or lost; a destination that
// refuses the state leaves the source running. The domain layer's two halves (migrate_out,
// receive_in) run as the processes run them; the CLI's part is tests/migration.sh.
#include <sys/socket.h>

#include <chrono>
#include <mutex>
#include <string>
#include <thread>

#include "arch/x86/boot/kernel.hpp"
#include "base/unique_fd.hpp"
#include "counter_guest.hpp"
#include "domain/migrate.hpp"
#include "kvm_test.hpp"
#include "snapshot/stream.hpp"
#include "vmm/vm.hpp"

namespace vireo {
namespace {

using namespace std::chrono_literals;

using test::config;
using test::counts;
using test::Recorder;
using test::Running;
using test::wait_lines;

// One parse of the guest for every machine of these tests.
const vmm::BootImages& images() {
    static const vmm::BootImages img = test::images();
    return img;
}

uint64_t bits(const std::vector<std::vector<uint64_t>>& b) {
    uint64_t n = 0;
    for (const auto& r : b)
        for (uint64_t w : r)
            n += static_cast<uint64_t>(std::popcount(w));
    return n;
}

TEST(Migration, TheDirtyLogSeesWhatTheRunningGuestWrites) {
    auto out = std::make_shared<Recorder>();
    auto vm = vmm::Vm::create(test::hypervisor(), config(out), images());
    ASSERT_TRUE(vm) << vm.error().message();
    Running r(std::move(*vm));
    ASSERT_TRUE(wait_lines(*out, 2));
    ASSERT_TRUE(r.vm->start_dirty_log());
    std::vector<std::vector<uint64_t>> dirty;
    ASSERT_TRUE(r.vm->take_dirty(dirty));  // from a clean log
    const size_t now = out->lines();
    ASSERT_TRUE(wait_lines(*out, now + 3));
    dirty.clear();  // take_dirty ORs into what it is given
    ASSERT_TRUE(r.vm->take_dirty(dirty));
    // The counter's page (and the stack's, if any): written for every line.
    EXPECT_GE(bits(dirty), 1u);
    EXPECT_LE(bits(dirty), 16u);
    r.vm->stop_dirty_log();
}

// Runs the receiving half as `vireo run --incoming` does: the hello, then receive_in.
struct Receiver {
    explicit Receiver(int fd, std::shared_ptr<Recorder> out) {
        thread = std::thread([this, fd, out] {
            snapshot::stream::Channel ch(fd, 30000);
            auto hello = snapshot::stream::read_hello(ch);
            if (!hello) {
                error = hello.error().message();
                return;
            }
            auto vm = vmm::Vm::prepare_incoming(test::hypervisor(), config(out), images());
            if (!vm) {
                error = vm.error().message();
                return;
            }
            if (auto r = domain::receive_in(**vm, fd); !r) {
                error = r.error().message();
                return;
            }
            (void)snapshot::stream::send_reply(ch, snapshot::stream::Reply::Running);
            result = std::move(*vm);
        });
    }
    std::thread thread;
    std::unique_ptr<vmm::Vm> result;
    std::string error;
};

TEST(Migration, AMachineMovedWhileItCountsGoesOnWithNoCountRepeatedOrLost) {
    auto out_a = std::make_shared<Recorder>(), out_b = std::make_shared<Recorder>();
    auto a = vmm::Vm::create(test::hypervisor(), config(out_a), images());
    ASSERT_TRUE(a) << a.error().message();
    Running ra(std::move(*a));
    ASSERT_TRUE(wait_lines(*out_a, 3));

    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    UniqueFd send_end(sv[0]), recv_end(sv[1]);
    Receiver rx(recv_end.get(), out_b);
    domain::MigrationProgress progress;
    domain::MigrationOptions o;
    o.downtime_ms = 50;
    auto report = domain::migrate_out(*ra.vm, "{}", send_end.get(), o, progress);
    rx.thread.join();
    ASSERT_TRUE(report) << report.error().message() << " / receiver: " << rx.error;
    ASSERT_TRUE(rx.result) << rx.error;
    EXPECT_GT((*report)["downtime_ms"].get<double>(), 0.0);
    EXPECT_GE((*report)["passes"].get<int>(), 2);
    ra.runner.join();  // migrated: the source stopped
    ra.runner = std::thread([] {});
    EXPECT_EQ(ra.outcome.fate, vmm::Fate::Stopped);

    Running rb(std::move(rx.result));
    ASSERT_TRUE(wait_lines(*out_b, 3)) << "the migrated guest did not go on";
    const auto all = counts(out_a->text() + out_b->text());
    ASSERT_GE(all.size(), 6u);
    for (size_t i = 0; i < all.size(); ++i)
        ASSERT_EQ(all[i], static_cast<long>(i + 1)) << "line " << i << " of\n"
                                                    << out_a->text() << "|\n"
                                                    << out_b->text();
}

TEST(Migration, ADestinationThatRefusesTheStateLeavesTheSourceRunning) {
    auto out_a = std::make_shared<Recorder>(), out_b = std::make_shared<Recorder>();
    auto a = vmm::Vm::create(test::hypervisor(), config(out_a), images());
    ASSERT_TRUE(a) << a.error().message();
    Running ra(std::move(*a));
    ASSERT_TRUE(wait_lines(*out_a, 2));
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    UniqueFd send_end(sv[0]), recv_end(sv[1]);
    // A destination with another machine shape (1 vCPU): it takes the memory, refuses the state.
    std::string error;
    std::thread rx([&] {
        snapshot::stream::Channel ch(recv_end.get(), 30000);
        if (!snapshot::stream::read_hello(ch)) return;
        auto c = config(out_b);
        c.cpus = 1;
        auto vm = vmm::Vm::prepare_incoming(test::hypervisor(), c, images());
        if (!vm) return;
        auto r = domain::receive_in(**vm, recv_end.get());
        if (!r) error = r.error().message();
    });
    domain::MigrationProgress progress;
    auto report = domain::migrate_out(*ra.vm, "{}", send_end.get(), {}, progress);
    rx.join();
    ASSERT_FALSE(report);
    EXPECT_NE(report.error().message().find("the saved machine has 2 vCPUs"), std::string::npos)
        << report.error().message();
    EXPECT_NE(error.find("the saved machine has 2 vCPUs"), std::string::npos) << error;
    // The source counts on, unpaused.
    EXPECT_FALSE(ra.vm->paused());
    const size_t now = out_a->lines();
    EXPECT_TRUE(wait_lines(*out_a, now + 2));
}

}  // namespace
}  // namespace vireo

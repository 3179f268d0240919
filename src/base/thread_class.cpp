#include "base/thread_class.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace vireo {

namespace {
std::atomic<ConfineHook> g_hook{nullptr};
}

// A parked thread of one class. Workers live as long as the process: nothing frees them (a
// worker parked in its condition variable must not see it destroyed at exit).
struct Worker {
    explicit Worker(ThreadClass c) : cls(c) {}
    ThreadClass cls;
    pthread_t handle{};
    std::mutex mu;
    std::condition_variable cv;
    std::function<void()> job;
    bool lent = false;  // between start_thread() and join()
    bool done = false;  // the lent function has returned
};

namespace {

std::mutex g_pool_mu;
std::vector<Worker*>* g_pool = new std::vector<Worker*>;  // never freed: see Worker

[[noreturn]] void park_and_work(Worker* w) {
    for (;;) {
        std::function<void()> job;
        {
            std::unique_lock lock(w->mu);
            w->cv.wait(lock, [w] { return static_cast<bool>(w->job); });
            job = std::move(w->job);
            w->job = nullptr;
        }
        job();
        {
            std::lock_guard lock(w->mu);
            w->done = true;
        }
        w->cv.notify_all();
    }
}

}  // namespace

std::string_view to_string(ThreadClass c) noexcept {
    switch (c) {
        case ThreadClass::Main:
            return "main";
        case ThreadClass::Vcpu:
            return "vcpu";
        case ThreadClass::IoLoop:
            return "io";
        case ThreadClass::Api:
            return "api";
        case ThreadClass::Console:
            return "console";
        case ThreadClass::ConsoleInput:
            return "console-input";
        case ThreadClass::Metrics:
            return "metrics";
        case ThreadClass::Slirp:
            return "slirp";
        case ThreadClass::Control:
            return "control";
        case ThreadClass::Signals:
            return "signals";
    }
    return "?";
}

void confine_thread(ThreadClass c) noexcept {
    if (ConfineHook h = g_hook.load(std::memory_order_acquire)) (void)h(c);
}

ClassThread::ClassThread(ClassThread&& o) noexcept
    : thread_(std::move(o.thread_)), worker_(o.worker_) {
    o.worker_ = nullptr;
}

ClassThread& ClassThread::operator=(ClassThread&& o) noexcept {
    if (this != &o) {
        join();
        thread_ = std::move(o.thread_);
        worker_ = o.worker_;
        o.worker_ = nullptr;
    }
    return *this;
}

ClassThread::~ClassThread() {
    join();
}

pthread_t ClassThread::native_handle() {
    return worker_ != nullptr ? worker_->handle : thread_.native_handle();
}

void ClassThread::join() {
    if (thread_.joinable()) thread_.join();
    if (worker_ == nullptr) return;
    {
        std::unique_lock lock(worker_->mu);
        worker_->cv.wait(lock, [this] { return worker_->done; });
    }
    {
        std::lock_guard pool(g_pool_mu);
        worker_->lent = false;
    }
    worker_ = nullptr;
}

ClassThread start_thread(ThreadClass c, std::function<void()> fn) {
    ClassThread t;
    {
        std::lock_guard pool(g_pool_mu);
        for (Worker* w : *g_pool)
            if (w->cls == c && !w->lent) {
                w->lent = true;
                t.worker_ = w;
                break;
            }
    }
    if (t.worker_ == nullptr) {
        t.thread_ = std::thread(std::move(fn));
        return t;
    }
    {
        std::lock_guard lock(t.worker_->mu);
        t.worker_->done = false;
        t.worker_->job = std::move(fn);
    }
    t.worker_->cv.notify_all();
    return t;
}

Result<void> start_workers(ThreadClass c, size_t n, const char* name_prefix) {
    // Shared with the workers, which outlive this call: a worker still inside notify_all()
    // when the last count lets this function return must not touch a dead stack frame (a
    // condition variable on this stack was written after its frame was reused: "stack
    // smashing detected" in about 1 start in 13 with two vCPU workers).
    struct Settle {
        std::mutex mu;
        std::condition_variable cv;
        size_t settled = 0, failed = 0;
    };
    auto st = std::make_shared<Settle>();
    size_t first;
    {
        std::lock_guard pool(g_pool_mu);
        first = static_cast<size_t>(
            std::count_if(g_pool->begin(), g_pool->end(), [c](Worker* w) { return w->cls == c; }));
    }
    for (size_t i = 0; i < n; ++i) {
        auto* w = new Worker(c);
        char name[16];
        std::snprintf(name, sizeof name, "%s%zu", name_prefix, first + i);
        std::string thread_name(name);
        std::thread([w, c, thread_name, st] {
            ::pthread_setname_np(::pthread_self(), thread_name.c_str());
            w->handle = ::pthread_self();
            ConfineHook h = g_hook.load(std::memory_order_acquire);
            const bool confined = h == nullptr || h(c);
            if (confined) {
                std::lock_guard pool(g_pool_mu);
                g_pool->push_back(w);
            }
            {
                std::lock_guard lock(st->mu);
                ++st->settled;
                if (!confined) ++st->failed;
            }
            st->cv.notify_all();
            if (!confined) {
                delete w;
                return;
            }
            park_and_work(w);
        }).detach();
    }
    std::unique_lock lock(st->mu);
    st->cv.wait(lock, [&] { return st->settled == n; });
    if (st->failed != 0)
        return fail(ErrorCode::System, "{} of {} {} threads could not confine themselves",
                    st->failed, n, to_string(c));
    return {};
}

size_t idle_workers(ThreadClass c) noexcept {
    std::lock_guard pool(g_pool_mu);
    return static_cast<size_t>(std::count_if(g_pool->begin(), g_pool->end(),
                                             [c](Worker* w) { return w->cls == c && !w->lent; }));
}

void set_confine_hook(ConfineHook hook) noexcept {
    g_hook.store(hook, std::memory_order_release);
}

}  // namespace vireo

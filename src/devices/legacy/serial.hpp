// 16550A UART (8250 family) on a port range, interrupt driven in both directions.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>

#include "devices/device.hpp"

namespace vireo::devices {

/// Receives every byte the guest writes to the UART: its output (a console log) and a tap (a
/// console socket). Called on vCPU threads with the UART's mutex held, one byte at a time.
class OutputTap {
  public:
    virtual void put(uint8_t byte) noexcept = 0;

  protected:
    ~OutputTap() = default;
};

class Serial final : public Device {
  public:
    /// Output goes to `out` and to `tap`, each if given. `irq` is the UART's interrupt line.
    Serial(std::shared_ptr<IrqLine> irq, std::shared_ptr<OutputTap> out,
           std::shared_ptr<OutputTap> tap = nullptr);

    const char* name() const noexcept override { return "serial"; }
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    /// Registers, the receive FIFO's bytes, the pending transmit interrupt.
    void save(snapshot::Encoder& e) const override;
    void restore(snapshot::Decoder& d) override;

    /// Feeds console input to the guest. Blocks while the receive FIFO is full (back-pressure
    /// instead of unbounded buffering) until `stop_waiting()` is called. Returns bytes accepted.
    size_t enqueue_input(std::span<const uint8_t> bytes);
    /// Releases a thread blocked in enqueue_input() (at shutdown).
    void stop_waiting();

    static constexpr size_t kFifoSize = 64;

  private:
    uint8_t read_reg(uint64_t offset);
    void write_reg(uint64_t offset, uint8_t value);
    uint8_t iir() const;
    void update_irq();
    void output(uint8_t byte);

    std::shared_ptr<IrqLine> irq_;
    std::shared_ptr<OutputTap> out_;
    std::shared_ptr<OutputTap> tap_;
    mutable std::mutex mu_;
    std::condition_variable rx_space_;
    bool stopping_ = false;
    std::deque<uint8_t> rx_;
    uint8_t ier_ = 0, lcr_ = 0, mcr_ = 0x08, scr_ = 0, dll_ = 0x0c, dlm_ = 0;
    bool fifo_enabled_ = false;
    bool thre_pending_ = false;
    bool irq_level_ = false;
};

}  // namespace vireo::devices

#include "devices/legacy/serial.hpp"

#include <unistd.h>

#include <vector>

namespace vireo::devices {

namespace {
// Register offsets.
constexpr uint64_t kRbrThr = 0, kIer = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6,
                   kScr = 7;
constexpr uint8_t kLcrDlab = 0x80;
constexpr uint8_t kIerRxData = 0x01, kIerThre = 0x02;
constexpr uint8_t kIirNone = 0x01, kIirThre = 0x02, kIirRxData = 0x04, kIirFifo = 0xc0;
constexpr uint8_t kLsrDataReady = 0x01, kLsrThre = 0x20, kLsrTemt = 0x40;
constexpr uint8_t kMcrLoop = 0x10;
constexpr uint8_t kFcrEnable = 0x01, kFcrClearRx = 0x02;
}  // namespace

Serial::Serial(std::shared_ptr<IrqLine> irq, std::shared_ptr<OutputTap> out,
               std::shared_ptr<OutputTap> tap)
    : irq_(std::move(irq)), out_(std::move(out)), tap_(std::move(tap)) {}

void Serial::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < data.size(); ++i)
        data[i] = read_reg(offset + i);
    update_irq();
}

void Serial::write(uint64_t offset, std::span<const uint8_t> data) {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < data.size(); ++i)
        write_reg(offset + i, data[i]);
    update_irq();
}

uint8_t Serial::iir() const {
    uint8_t fifo = fifo_enabled_ ? kIirFifo : 0;
    if ((ier_ & kIerRxData) && !rx_.empty()) return kIirRxData | fifo;
    if ((ier_ & kIerThre) && thre_pending_) return kIirThre | fifo;
    return kIirNone | fifo;
}

uint8_t Serial::read_reg(uint64_t offset) {
    switch (offset) {
        case kRbrThr: {
            if (lcr_ & kLcrDlab) return dll_;
            if (rx_.empty()) return 0;
            uint8_t b = rx_.front();
            rx_.pop_front();
            rx_space_.notify_one();
            return b;
        }
        case kIer:
            return (lcr_ & kLcrDlab) ? dlm_ : ier_;
        case kIirFcr: {
            uint8_t v = iir();
            // Reading IIR while it reports THRE clears that interrupt (16550 behaviour).
            if ((v & 0x0f) == kIirThre) thre_pending_ = false;
            return v;
        }
        case kLcr:
            return lcr_;
        case kMcr:
            return mcr_;
        case kLsr:
            return static_cast<uint8_t>((rx_.empty() ? 0 : kLsrDataReady) | kLsrThre | kLsrTemt);
        case kMsr:
            if (mcr_ & kMcrLoop) {
                // Loopback: RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD.
                return static_cast<uint8_t>(((mcr_ & 0x02) << 3) | ((mcr_ & 0x01) << 5) |
                                            ((mcr_ & 0x04) << 4) | ((mcr_ & 0x08) << 4));
            }
            return 0xb0;  // DCD, DSR, CTS
        case kScr:
            return scr_;
        default:
            return 0xff;
    }
}

void Serial::write_reg(uint64_t offset, uint8_t value) {
    switch (offset) {
        case kRbrThr:
            if (lcr_ & kLcrDlab) {
                dll_ = value;
            } else if (mcr_ & kMcrLoop) {
                if (rx_.size() < kFifoSize) rx_.push_back(value);
                thre_pending_ = true;
            } else {
                output(value);
                thre_pending_ = true;  // transmitted at once: the holding register is empty again
            }
            break;
        case kIer:
            if (lcr_ & kLcrDlab) {
                dlm_ = value;
            } else {
                // Enabling the THRE interrupt while the holding register is empty raises it.
                if (!(ier_ & kIerThre) && (value & kIerThre)) thre_pending_ = true;
                ier_ = value & 0x0f;
            }
            break;
        case kIirFcr:
            fifo_enabled_ = value & kFcrEnable;
            if (value & kFcrClearRx) {
                rx_.clear();
                rx_space_.notify_one();
            }
            break;
        case kLcr:
            lcr_ = value;
            break;
        case kMcr:
            mcr_ = value & 0x1f;
            break;
        case kScr:
            scr_ = value;
            break;
        default:
            break;
    }
}

void Serial::output(uint8_t byte) {
    if (out_) out_->put(byte);
    if (tap_) tap_->put(byte);
}

void Serial::update_irq() {
    bool level = (iir() & kIirNone) == 0;
    if (level != irq_level_) {
        irq_level_ = level;
        if (irq_) irq_->set_level(level);
    }
}

void Serial::save(snapshot::Encoder& e) const {
    std::lock_guard lock(mu_);
    for (uint8_t r : {ier_, lcr_, mcr_, scr_, dll_, dlm_})
        e.u8(r);
    e.boolean(fifo_enabled_);
    e.boolean(thre_pending_);
    const std::vector<uint8_t> rx(rx_.begin(), rx_.end());
    e.bytes(rx);
}

void Serial::restore(snapshot::Decoder& d) {
    uint8_t regs[6];
    for (uint8_t& r : regs)
        r = d.u8();
    const bool fifo_enabled = d.boolean();
    const bool thre_pending = d.boolean();
    const auto rx = d.bytes(kFifoSize);
    if (!d.ok()) return;  // a malformed section changes nothing
    std::lock_guard lock(mu_);
    ier_ = regs[0];
    lcr_ = regs[1];
    mcr_ = regs[2];
    scr_ = regs[3];
    dll_ = regs[4];
    dlm_ = regs[5];
    fifo_enabled_ = fifo_enabled;
    thre_pending_ = thre_pending;
    rx_.assign(rx.begin(), rx.end());
    // The line as the registers say (the interrupt controller's own state comes back with
    // the machine's).
    irq_level_ = false;
    update_irq();
}

size_t Serial::enqueue_input(std::span<const uint8_t> bytes) {
    std::unique_lock lock(mu_);
    size_t done = 0;
    while (done < bytes.size()) {
        rx_space_.wait(lock, [&] { return stopping_ || rx_.size() < kFifoSize; });
        if (stopping_) break;
        while (done < bytes.size() && rx_.size() < kFifoSize)
            rx_.push_back(bytes[done++]);
        update_irq();
    }
    return done;
}

void Serial::stop_waiting() {
    std::lock_guard lock(mu_);
    stopping_ = true;
    rx_space_.notify_all();
}

}  // namespace vireo::devices

// SlotTable: see slot_table.h.
#include "slot_table.h"

#include "word_pages.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <volfs/volfs.h>

#include <atomic>
#include <cassert>
#include <cerrno>
#include <climits>

namespace volfs::core {
namespace {

std::atomic_ref<uint64_t> word_of(const SlotTable::Slot& s) { return std::atomic_ref(*s.word); }

// Wakes the clients that wait in volfs_slot_pin for the word to leave
// PURGING: they wait on its high 32 bits, which hold the state.
void wake(const SlotTable::Slot& s) {
  auto* high = reinterpret_cast<uint32_t*>(s.word) + (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__);
  syscall(SYS_futex, high, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

}  // namespace

SlotTable::~SlotTable() {
  for (auto& [index, page] : pages_) WordPages::instance().unmap(page.addr);
}

std::optional<uint32_t> SlotTable::find_holder(const void* open_file) const {
  auto it = holders_.find(open_file);
  if (it == holders_.end()) return std::nullopt;
  return it->second;
}

std::optional<uint32_t> SlotTable::holder(const void* open_file) {
  if (std::optional<uint32_t> h = find_holder(open_file)) return h;
  for (uint32_t bit = 0; bit < VOLFS_SLOT_HOLDERS; ++bit) {
    if (holder_bits_ & (uint64_t{1} << bit)) continue;
    holders_.emplace(open_file, bit);
    holder_bits_ |= uint64_t{1} << bit;
    return bit;
  }
  return std::nullopt;
}

void SlotTable::release_holder(const void* open_file) {
  auto it = holders_.find(open_file);
  if (it == holders_.end()) return;
  const uint64_t bit = uint64_t{1} << it->second;
  for (auto& [off, s] : slots_) {
    // Only a LIVE word carries pin bits; the bit is this holder's alone, so
    // clearing it cannot take anyone else's pin. Release: nothing to
    // publish, but the purge that may follow takes the word with acquire.
    uint64_t w = load(s);
    while (VOLFS_SLOT_STATE(w) == VOLFS_SLOT_LIVE && (w & bit) &&
           !word_of(s).compare_exchange_weak(w, w & ~bit, std::memory_order_release,
                                             std::memory_order_relaxed)) {
    }
  }
  holder_bits_ &= ~bit;
  holders_.erase(it);
}

SlotTable::Slot* SlotTable::find(uint64_t word_offset) {
  auto it = slots_.find(word_offset);
  return it == slots_.end() ? nullptr : &it->second;
}

SlotTable::Slot* SlotTable::find_by_data(PageRange data) {
  auto it = by_data_.find(data.first);
  if (it == by_data_.end()) return nullptr;
  Slot* s = find(it->second);
  return s && s->data.end == data.end ? s : nullptr;
}

bool SlotTable::data_overlaps(PageRange r) const {
  if (r.first >= r.end) return false;
  // Data ranges are disjoint: only the last one starting before r.end can reach into r.
  auto d = by_data_.lower_bound(r.end);
  if (d == by_data_.begin()) return false;
  return slots_.at(std::prev(d)->second).data.end > r.first;
}

bool SlotTable::has_word_page(PageRange r) const {
  if (r.first >= r.end) return false;
  auto p = pages_.lower_bound(r.first);
  return p != pages_.end() && p->first < r.end;
}

bool SlotTable::touches_word(uint64_t off, uint64_t len) const {
  constexpr uint64_t kWord = sizeof(volfs_slot_word);
  auto it = slots_.lower_bound(off >= kWord - 1 ? off - (kWord - 1) : 0);
  return it != slots_.end() && it->first < off + len;
}

int SlotTable::add(uint64_t word_offset, PageRange data, uint8_t prio, uint32_t holder) {
  const uint64_t index = word_offset / page_size_;
  auto [page, fresh] = pages_.try_emplace(index);
  if (fresh) {
    // In the guarded range: a fault on a page a client took away is absorbed.
    void* p = WordPages::instance().map(fd_, index);
    if (!p) {
      int err = errno;
      pages_.erase(page);
      return -err;
    }
    page->second.addr = p;
  }
  ++page->second.users;
  Slot s;
  s.word_offset = word_offset;
  s.data = data;
  s.prio = prio;
  s.word =
      reinterpret_cast<uint64_t*>(static_cast<char*>(page->second.addr) + word_offset % page_size_);
  // Release: the client that sees LIVE sees a slot that is fully set up.
  word_of(s).store(VOLFS_SLOT_WORD(VOLFS_SLOT_LIVE) | (uint64_t{1} << holder),
                   std::memory_order_release);
  by_data_[data.first] = word_offset;
  slots_[word_offset] = s;
  return 0;
}

void SlotTable::remove(uint64_t word_offset, bool word_gone) {
  auto it = slots_.find(word_offset);
  if (it == slots_.end()) return;
  Slot& s = it->second;
  if (!word_gone) {
    word_of(s).store(0, std::memory_order_release);  // VOLFS_SLOT_NONE: pins get ESTALE
    wake(s);
  }
  by_data_.erase(s.data.first);
  slots_.erase(it);
  unmap_user(word_offset / page_size_);
}

void SlotTable::unmap_user(uint64_t index) {
  auto it = pages_.find(index);
  assert(it != pages_.end());
  if (--it->second.users > 0) return;
  WordPages::instance().unmap(it->second.addr);
  pages_.erase(it);
}

uint64_t SlotTable::load(const Slot& s) {
  // Acquire: a purge decided on this value reads the data after it.
  return word_of(s).load(std::memory_order_acquire);
}

bool SlotTable::take_for_purge(const Slot& s) {
  uint64_t w = load(s);
  for (;;) {
    const uint32_t state = VOLFS_SLOT_STATE(w);
    if ((state != VOLFS_SLOT_LIVE && state != VOLFS_SLOT_PURGED) || (w & VOLFS_SLOT_PIN_BITS)) {
      return false;
    }
    // Acquire pairs with the release of the client's last unpin: its stores
    // into the data happened before, so none lands after the punch.
    if (word_of(s).compare_exchange_weak(w, VOLFS_SLOT_WORD(VOLFS_SLOT_PURGING),
                                         std::memory_order_acq_rel, std::memory_order_acquire)) {
      return true;
    }
  }
}

void SlotTable::end_purge(const Slot& s) {
  // Release: a pin that sees PURGED sees the data punched.
  word_of(s).store(VOLFS_SLOT_WORD(VOLFS_SLOT_PURGED), std::memory_order_release);
  wake(s);
}

void SlotTable::abort_purge(const Slot& s) {
  word_of(s).store(VOLFS_SLOT_WORD(VOLFS_SLOT_LIVE), std::memory_order_release);
  wake(s);
}

bool SlotTable::settle_stray_purging(const Slot& s) {
  uint64_t w = load(s);
  if (VOLFS_SLOT_STATE(w) != VOLFS_SLOT_PURGING) return false;
  if (!word_of(s).compare_exchange_strong(w, VOLFS_SLOT_WORD(VOLFS_SLOT_PURGED),
                                          std::memory_order_acq_rel)) {
    return false;
  }
  wake(s);
  return true;
}

}  // namespace volfs::core

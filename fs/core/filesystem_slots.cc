// Filesystem, slots: pin and unpin without a system call (docs/volatile-ranges.md, "Slots").
// Clients change slot words behind the daemon's back; the daemon looks at them
// (sync_slots) whenever an answer or a purge depends on them, and takes a word
// with a compare-and-swap before it punches a slot's data.
// See filesystem.h for the interface and the lock order.
#include <volfs/volfs.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <utility>
#include <vector>

#include "filesystem.h"
#include "filesystem_internal.h"

namespace volfs::core {
namespace {

constexpr uint64_t kWordSize = sizeof(volfs_slot_word);

}  // namespace

Result<uint32_t> Filesystem::slot_holder(OpenFile& f) {
  Inode& i = *f.inode;
  if (!i.is_reg()) return Err{EINVAL};
  if (!f.writable()) return Err{EBADF};
  std::lock_guard lock(i.mu);
  if (!i.passthrough()) return Err{EOPNOTSUPP};
  if (!i.slots) {
    i.slots = std::make_unique<SlotTable>(i.store->fd(), page_size_);
    std::lock_guard files(slot_files_mu_);
    slot_files_.push_back(f.inode);
  }
  std::optional<uint32_t> h = i.slots->holder(&f);
  if (!h) return Err{EUSERS};
  f.slot_holder = true;
  return *h;
}

Result<SlotRegistration> Filesystem::register_slots(OpenFile& f, const SlotRequest& r) {
  Inode& i = *f.inode;
  if (r.count == 0 || r.count > VOLFS_SLOT_REGISTER_MAX) return Err{EINVAL};
  if (r.prio > kMaxPriority) return Err{EINVAL};
  const uint64_t len = r.data.length;
  if (len == 0 || len % page_size_ || r.data.offset % page_size_ || r.word_offset % kWordSize) {
    return Err{EINVAL};
  }
  if (len > UINT64_MAX / r.count || r.data.offset > UINT64_MAX - len * r.count ||
      r.word_offset > UINT64_MAX - kWordSize * r.count) {
    return Err{EINVAL};
  }
  Result<uint32_t> holder = slot_holder(f);  // checks the file, the open and the io mode
  if (!holder.ok()) return Err{holder.err()};
  const PageRange data{r.data.offset / page_size_, (r.data.offset + len * r.count) / page_size_};
  const uint64_t words_end = r.word_offset + kWordSize * r.count;
  const PageRange word_pages{r.word_offset / page_size_, (words_end + page_size_ - 1) / page_size_};
  const uint64_t per = len / page_size_;
  auto data_of = [&](uint64_t k) {
    return PageRange{data.first + k * per, data.first + (k + 1) * per};
  };

  std::unique_lock io(i.io_mu);
  std::lock_guard lock(i.mu);
  sync_with_store(i, PageRange{0, 0});
  SlotTable& t = *i.slots;
  if (data.end * page_size_ > i.size || words_end > i.size) return Err{EINVAL};

  // Attach: every slot exists with this geometry; create: none does.
  uint32_t existing = 0;
  for (uint32_t k = 0; k < r.count; ++k) {
    SlotTable::Slot* s = t.find(r.word_offset + k * kWordSize);
    if (!s) continue;
    if (s->data.first != data_of(k).first || s->data.end != data_of(k).end) return Err{EBUSY};
    ++existing;
  }
  if (existing == r.count) return SlotRegistration{*holder, false};
  if (existing) return Err{EBUSY};

  // Create. The data may not touch another slot's data or words, nor its own
  // words; a word may not lie in any slot's data; neither may hold a
  // volatile page (a slot's volatility is its word's alone).
  const bool words_in_data = word_pages.first < data.end && data.first < word_pages.end;
  if (words_in_data || t.overlaps(data) || t.data_overlaps(word_pages)) return Err{EBUSY};
  if (i.state->status(data).volatile_pages || i.state->status(word_pages).volatile_pages) {
    return Err{EBUSY};
  }
  // The words' pages must exist before the daemon maps them: a store to a
  // hole through a mapping could not fail cleanly (SIGBUS at a full tmpfs).
  if (int e = i.store->allocate(word_pages.first * page_size_, word_pages.pages() * page_size_);
      e < 0) {
    return Err{-e};
  }
  sync_with_store(i, word_pages);  // charges the pages it allocated
  for (uint32_t k = 0; k < r.count; ++k) {
    if (int e = t.add(r.word_offset + k * kWordSize, data_of(k), r.prio, *holder); e < 0) {
      while (k-- > 0) t.remove(r.word_offset + k * kWordSize, /*word_gone=*/false);
      return Err{-e};
    }
  }
  return SlotRegistration{*holder, true};
}

Result<bool> Filesystem::unregister_slot(OpenFile& f, uint64_t word_offset) {
  Inode& i = *f.inode;
  if (!i.is_reg()) return Err{EINVAL};
  if (!f.writable()) return Err{EBADF};
  std::unique_lock io(i.io_mu);
  std::lock_guard lock(i.mu);
  if (!i.passthrough()) return Err{EOPNOTSUPP};
  sync_slots(i);  // a pin since the last look has taken the PURGED answer already
  SlotTable::Slot* s = i.slots ? i.slots->find(word_offset) : nullptr;
  if (!s) return Err{EINVAL};
  uint64_t mine = 0;
  if (std::optional<uint32_t> h = i.slots->find_holder(&f)) mine = uint64_t{1} << *h;
  const uint64_t w = SlotTable::load(*s);
  if (VOLFS_SLOT_STATE(w) == VOLFS_SLOT_LIVE && (w & VOLFS_SLOT_PIN_BITS & ~mine)) {
    return Err{EBUSY};
  }
  bool purged = VOLFS_SLOT_STATE(w) == VOLFS_SLOT_PURGED;
  if (s->view != SlotTable::View::kPinned) {
    const UnmarkResult u = i.state->unmark(s->data);
    if (u == UnmarkResult::kBusy) return Err{EBUSY};  // never in passthrough: purges end at once
    purged = purged || u == UnmarkResult::kPurged;
  }
  i.slots->remove(word_offset, /*word_gone=*/false);
  return purged;
}

void Filesystem::set_slot_pinned(Inode& i, SlotTable::Slot& s) {
  if (s.view == SlotTable::View::kPinned) return;
  // Never kBusy in passthrough (a purge there ends under the locks it took);
  // should it be, the slot stays as it is until the next look.
  if (i.state->unmark(s.data) == UnmarkResult::kBusy) return;
  s.view = SlotTable::View::kPinned;
}

void Filesystem::make_slot_volatile(Inode& i, SlotTable::Slot& s) {
  // Pinned, refilled and unpinned again since the daemon purged it: its
  // purged pages hold data again.
  if (s.view == SlotTable::View::kPurged) set_slot_pinned(i, s);
  if (s.view != SlotTable::View::kPinned) return;
  sync_with_store(i, s.data);  // which pages hold data: those are purgeable
  // Bound the file's runs as a MARK does; past it the slot stays
  // non-volatile (kept longer, never lost).
  if (i.state->map().run_count() + i.state->holes_in(s.data) + 2 > kMaxRunsPerFile) return;
  const uint64_t seq = next_seq_.fetch_add(1, std::memory_order_relaxed);
  i.state->mark(s.data, s.prio, /*strict=*/false, seq);
  s.view = SlotTable::View::kVolatile;
  s.seq = seq;
}

void Filesystem::sync_slots(Inode& i) {
  if (!i.slots || i.slots->empty()) return;
  std::vector<SlotTable::Slot*> unpinned;
  std::vector<uint64_t> gone;
  try {
    i.slots->for_each([&](SlotTable::Slot& s) {
      const uint64_t w = SlotTable::load(s);
      switch (VOLFS_SLOT_STATE(w)) {
        case VOLFS_SLOT_NONE:  // zeroed or overwritten by a client: no slot any more
          gone.push_back(s.word_offset);
          return;
        case VOLFS_SLOT_PURGING:  // ours never outlive mu: a client wrote it
          SlotTable::settle_stray_purging(s);
          return;
        case VOLFS_SLOT_PURGED:  // ours, or a client's claim: harmless either way
          return;
        default:
          break;
      }
      if (w & VOLFS_SLOT_PIN_BITS) return set_slot_pinned(i, s);
      if (s.view != SlotTable::View::kVolatile) unpinned.push_back(&s);
    });
    for (uint64_t off : gone) {
      set_slot_pinned(i, *i.slots->find(off));
      i.slots->remove(off, /*word_gone=*/true);
    }
    // Purge order among slots is the order of their last unpins: the time
    // the client left next to the word (advisory: a client may write any).
    // Each time is read once: clients change them while we sort, and a sort
    // whose comparison changes under it may run off the end of the array.
    std::vector<std::pair<uint64_t, SlotTable::Slot*>> by_unpin;
    by_unpin.reserve(unpinned.size());
    for (SlotTable::Slot* s : unpinned) {
      by_unpin.emplace_back(std::atomic_ref(s->word[1]).load(std::memory_order_relaxed), s);
    }
    std::sort(by_unpin.begin(), by_unpin.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [when, s] : by_unpin) make_slot_volatile(i, *s);
  } catch (const std::bad_alloc&) {
    // Each step is all or nothing: what is left is done at the next look.
  }
}

void Filesystem::sync_slot_files() {
  std::vector<std::shared_ptr<Inode>> files;
  {
    std::lock_guard lock(slot_files_mu_);
    if (slot_files_.empty()) return;
    for (auto it = slot_files_.begin(); it != slot_files_.end();) {
      if (std::shared_ptr<Inode> i = it->lock()) {
        files.push_back(std::move(i));
        ++it;
      } else {
        it = slot_files_.erase(it);  // destroyed
      }
    }
  }
  for (const auto& i : files) {
    std::lock_guard lock(i->mu);
    sync_slots(*i);
  }
}

uint64_t Filesystem::purge_slot(Inode& i, SlotTable::Slot& s) {
  if (!SlotTable::take_for_purge(s)) {
    // Pinned since the daemon last looked (or the word is not one to
    // trust): not purgeable, and its queue entry goes with the mark.
    set_slot_pinned(i, s);
    return 0;
  }
  // The word is PURGING: no pin can succeed until it turns PURGED, so no
  // client stores into the data meanwhile. Every page that holds data now
  // is punched (the whole range, whatever FileState knew).
  uint32_t id = next_purge_id_.fetch_add(1, std::memory_order_relaxed);
  if (id == 0) id = next_purge_id_.fetch_add(1, std::memory_order_relaxed);
  std::vector<PageRange> victims;
  try {
    sync_with_store(i, s.data);
    victims = i.state->purge(s.data, s.seq, UINT64_MAX, id);
  } catch (...) {
    SlotTable::abort_purge(s);  // nothing was punched: LIVE again, as it was
    throw;
  }
  (void)i.store->punch(s.data.first * page_size_, s.data.pages() * page_size_);
  uint64_t pages = 0;
  for (const PageRange& v : victims) pages += v.pages();
  acc_.uncharge(pages);
  if (!victims.empty()) {
    i.state->finish_purge(PageRange{victims.front().first, victims.back().end}, id);
  }
  SlotTable::end_purge(s);
  s.view = SlotTable::View::kPurged;
  fit_backing();
  return pages;
}

void Filesystem::slots_before_truncate(Inode& i, uint64_t size) {
  if (!i.slots) return;
  std::vector<std::pair<uint64_t, bool>> cut;  // word offset, word gone
  i.slots->for_each([&](SlotTable::Slot& s) {
    const bool word_gone = s.word_offset + kWordSize > size;
    if (word_gone || s.data.end * page_size_ > size) cut.emplace_back(s.word_offset, word_gone);
  });
  for (auto [off, word_gone] : cut) {
    SlotTable::Slot& s = *i.slots->find(off);
    set_slot_pinned(i, s);
    i.slots->remove(off, word_gone);
  }
}

std::vector<SlotTable::Slot*> Filesystem::slots_before_punch(Inode& i, uint64_t off, uint64_t len) {
  std::vector<SlotTable::Slot*> taken;
  if (!i.slots) return taken;
  std::vector<uint64_t> words;
  const PageRange pages{off / page_size_, (off + len + page_size_ - 1) / page_size_};
  i.slots->for_each([&](SlotTable::Slot& s) {
    if (s.word_offset < off + len && s.word_offset + kWordSize > off) {
      words.push_back(s.word_offset);  // its word is zeroed: no slot any more
    } else if (s.data.first < pages.end && pages.first < s.data.end) {
      // An unpinned slot loses data: PURGED, so that its next pin learns it.
      // A pinned one is written with zeros by someone allowed to: as any
      // write, not a purge.
      set_slot_pinned(i, s);
      if (SlotTable::take_for_purge(s)) taken.push_back(&s);
    }
  });
  for (uint64_t w : words) {
    set_slot_pinned(i, *i.slots->find(w));
    i.slots->remove(w, /*word_gone=*/true);
  }
  return taken;
}

}  // namespace volfs::core

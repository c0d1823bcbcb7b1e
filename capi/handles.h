// The registry of live C ABI handles, so that a freed, foreign or wrong-type
// handle is answered with BERTH_ERR_BAD_HANDLE instead of undefined
// behaviour.
//
// A handle is not a pointer to its object. It is the address of a 16-byte
// cell in one reserved address range, with the cell's generation in bits
// 48..62:
//
//     handle = cell address | generation << 48
//
// A cell holds {generation, kind, creating process, object}. Looking a handle up checks that
// the address lies in the range and is a cell boundary, that the cell is live
// with the expected kind, and that the generations agree; freeing bumps the
// generation, so every earlier handle of the cell stops matching. Cells are
// never unmapped (a stale handle always reads valid memory) and a freed cell
// is reused only once kQuarantine others are waiting, so a stale handle is
// only mistaken for a live one after 2^15 reuses of its cell, that is after
// more than 30 million frees.
//
// The values stay canonical-looking to garbage collectors that scan
// pointer-typed words (Go's checks values below 4096 and values inside its
// own arenas; a tagged value is neither).
//
// This is the one process-wide structure of the C ABI: a handle must still be
// checkable after everything that made it is gone, so it cannot live in an
// engine. It holds no engine state. Thread-safe and lock-free (so a fork
// never inherits it locked).
// Freeing a handle while another thread is still using it remains a caller
// error (the header says so); using it after the free returned is detected.
#pragma once

#include <concurrentqueue/concurrentqueue.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>

namespace berth::capi {

class HandleTable {
 public:
  static constexpr size_t kCellBytes = 16;
  static constexpr size_t kReserveBytes = size_t{256} << 20;  // 16M cells of address space
  static constexpr size_t kCommitStep = size_t{64} << 10;     // 4096 cells
  static constexpr int64_t kQuarantine = 1024;
  static constexpr int kGenShift = 48;
  static constexpr uint32_t kGenMask = 0x7fff;  // 15 bits: the top bit stays clear

  // The process's table: made on first use, never destroyed (handles may be
  // freed from static destructors of the host).
  static HandleTable& Get();

  // A new live handle of `kind` (1..255) for `obj`, or 0 when no cell can be
  // had (address range exhausted or out of memory).
  uintptr_t Open(uint8_t kind, void* obj) noexcept;

  // The object of `h` if it is a live handle of `kind`, else nullptr. With
  // `this_process`, also nullptr for a handle made in another process (the
  // parent of a fork: see Forked). O(1): a range check, one cell load.
  void* Find(uintptr_t h, uint8_t kind, bool this_process) const noexcept;

  // Whether `h` is a live handle of `kind` made by another process: this
  // one was forked from it after the handle was made.
  bool Forked(uintptr_t h, uint8_t kind) const noexcept;

  // Ends `h` and returns its object, or nullptr if `h` is not a live handle
  // of `kind` (freed already, or never one). Of two racing Closes of the
  // same handle exactly one gets the object. *forked tells whether it was
  // made by another process (then the object must not be destroyed here:
  // threads of the process that made it may have held its locks at the fork).
  void* Close(uintptr_t h, uint8_t kind, bool* forked) noexcept;

  // Which process this is: a counter bumped in the child of every fork.
  static uint32_t Process() noexcept;

  // Handles currently live (for tests and leak checks).
  int64_t live() const noexcept { return live_.load(std::memory_order_relaxed); }

  HandleTable();
  HandleTable(const HandleTable&) = delete;
  HandleTable& operator=(const HandleTable&) = delete;

 private:
  struct Cell {
    // generation << 8 | kind; kind 0 = free. Zero-filled pages read as free.
    std::atomic<uint32_t> state;
    std::atomic<uint32_t> process;  // Process() of the process that made the handle
    std::atomic<void*> obj;
  };
  static_assert(sizeof(Cell) == kCellBytes);

  Cell* CellOf(uintptr_t h) const noexcept;
  bool Commit(uint64_t index) noexcept;

  char* base_ = nullptr;                  // start of the reserved range
  std::atomic<size_t> committed_{0};      // bytes of cells readable from base_
  std::atomic<uint64_t> next_{0};         // cells ever taken from the range
  std::atomic<int64_t> free_count_{0};    // cells waiting in free_
  std::atomic<int64_t> live_{0};
  moodycamel::ConcurrentQueue<uint32_t> free_;
};

}  // namespace berth::capi

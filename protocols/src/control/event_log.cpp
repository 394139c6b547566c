#include "event_log.hpp"

namespace troupe::protocols::control {

event_log::chunk::~chunk() {
  // A jump over many chunks frees them in one go; unlinking the chain here
  // keeps that from recursing once per chunk. Only a chunk nobody else holds
  // is unlinked: who could still copy its owner would have to hold us.
  auto n = std::move(next_owner);
  while (n && n.use_count() == 1) n = std::move(n->next_owner);
}

const std::shared_ptr<const prepared_event>* event_log::cursor::peek() {
  if (!at_) return nullptr;
  if (index_ == chunk_size) {
    chunk* n = at_->next.load(std::memory_order_acquire);
    if (n == nullptr) return nullptr;
    at_ = at_->next_owner;  // written before `next` was published
    index_ = 0;
  }
  if (index_ >= at_->count.load(std::memory_order_acquire)) return nullptr;
  return &at_->items[index_];
}

event_log::event_log() : tail_(std::make_shared<chunk>(0)) {}

std::uint64_t event_log::append(std::shared_ptr<const prepared_event> ev) {
  std::lock_guard lock(mu_);
  auto n = tail_->count.load(std::memory_order_relaxed);
  if (n == chunk_size) {
    auto next = std::make_shared<chunk>(tail_->base + chunk_size);
    tail_->next_owner = next;
    tail_->next.store(next.get(), std::memory_order_release);
    tail_ = std::move(next);
    n = 0;
  }
  tail_->items[n] = std::move(ev);
  tail_->count.store(n + 1, std::memory_order_release);
  // seq_cst: pairs with the parking check of sessions (control_server.cpp).
  return head_.fetch_add(1);
}

event_log::cursor event_log::tail() const {
  std::lock_guard lock(mu_);
  cursor c;
  c.at_ = tail_;
  c.index_ = tail_->count.load(std::memory_order_relaxed);
  return c;
}

}  // namespace troupe::protocols::control

// The pool book (actors/src/pool_book.hpp) and the backoff maths (backoff.hpp) as plain C++:
// no CAF, no actors, time passed in by the test. Example cases, then a randomized property
// test of the invariants under any order of events.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <string>

#include "backoff.hpp"
#include "pool_book.hpp"

using namespace sshpool;
using namespace std::chrono_literals;

namespace {

using time_point = pool_book::time_point;

const time_point t0{std::chrono::hours(1)};

pool_book::limits small_limits() {
  pool_book::limits lim;
  lim.max_connections = 2;
  lim.max_channels = 2;
  lim.max_waiters = 4;
  lim.validation_idle_threshold = 30s;
  return lim;
}

/// Records what the book asks for.
struct recorder final : pool_book::effects {
  std::vector<std::pair<std::uint64_t, pool_book::grant>> grants;
  std::vector<std::uint64_t> validations;
  std::size_t connects = 0;
  std::vector<std::uint64_t> expirations;

  void granted(std::uint64_t waiter, pool_book::grant g) override {
    grants.emplace_back(waiter, g);
  }
  void validate(std::uint64_t id) override { validations.push_back(id); }
  void connect() override { ++connects; }
  void expired(std::uint64_t waiter) override { expirations.push_back(waiter); }
};

/// A book with one ready connection per id in `ids`, created at `t0`.
pool_book with_ready(pool_book::limits lim, std::initializer_list<std::uint64_t> ids) {
  pool_book book{lim};
  recorder fx;
  for (auto id : ids) {
    book.enqueue(t0 + 1h);
    book.serve(t0, pool_book::connect_rule::now, fx);
    book.permit_granted(id, t0, t0 + 1h);
    book.transition(id, conn_phase::ready);
  }
  for (auto& [waiter, g] : fx.grants)
    book.release(g.lease, g.connection, t0);
  book.take_waiters();
  return book;
}

} // namespace

TEST_CASE("a permit asked counts against the cap until it is granted or refused", "[book]") {
  pool_book book{small_limits()};
  recorder fx;
  book.enqueue(t0 + 5s);
  CHECK_FALSE(book.serve(t0, pool_book::connect_rule::now, fx));
  CHECK(fx.connects == 1);
  CHECK(book.permits_asked() == 1);
  CHECK(book.counted() == 1);
  CHECK(book.pending() == 1);
  book.permit_granted(7, t0, t0 + 1h);
  CHECK(book.permits_asked() == 0);
  CHECK(book.count(conn_phase::connecting) == 1);
  CHECK(book.counted() == 1);
  CHECK(book.pending() == 1);
  book.transition(7, conn_phase::ready);
  book.serve(t0, pool_book::connect_rule::now, fx);
  REQUIRE(fx.grants.size() == 1);
  CHECK(fx.grants[0].second.connection == 7);
  CHECK(book.pending() == 0);
  CHECK(book.active_leases() == 1);
  CHECK(book.idle() == 0);
  CHECK_THROWS_AS(book.permit_refused(), std::logic_error);
}

TEST_CASE("under the cap, a caller waits for a new connection rather than share one", "[book]") {
  auto book = with_ready(small_limits(), {1});
  auto a = book.lease_now(t0);
  REQUIRE(a.has_value());
  CHECK(a->connection == 1);
  CHECK_FALSE(book.lease_now(t0).has_value());
  recorder fx;
  auto w = book.enqueue(t0 + 5s);
  book.serve(t0, pool_book::connect_rule::now, fx);
  CHECK(fx.connects == 1);
  CHECK(fx.grants.empty());
  book.permit_granted(2, t0, t0 + 1h);
  book.transition(2, conn_phase::ready);
  book.serve(t0, pool_book::connect_rule::now, fx);
  REQUIRE(fx.grants.size() == 1);
  CHECK(fx.grants[0].first == w);
  CHECK(fx.grants[0].second.connection == 2);
}

TEST_CASE("at the cap, callers share the least leased connection up to the channel cap", "[book]") {
  auto book = with_ready(small_limits(), {1, 2});
  auto a = book.lease_now(t0);
  auto b = book.lease_now(t0);
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  CHECK(a->connection != b->connection);
  CHECK(book.lease_now(t0).has_value());
  CHECK(book.lease_now(t0).has_value());
  CHECK_FALSE(book.lease_now(t0).has_value()); // 2 x 2 leases
  CHECK(book.active_leases() == 4);
  CHECK(book.describe() ==
        "2/2 connections (0 connecting), 4 leases of at most 2 per connection, 0 waiting");
  CHECK(book.release(a->lease, a->connection, t0));
  CHECK_FALSE(book.release(a->lease, a->connection, t0)); // twice
  CHECK_FALSE(book.release(b->lease, a->connection, t0)); // another connection's
  auto e = book.lease_now(t0);
  REQUIRE(e.has_value());
  CHECK(e->connection == a->connection);
}

TEST_CASE("waiters are served in FIFO order and never get a draining connection", "[book]") {
  auto book = with_ready(small_limits(), {1, 2});
  std::vector<pool_book::grant> held;
  for (int i = 0; i < 4; ++i)
    held.push_back(*book.lease_now(t0));
  auto w1 = book.enqueue(t0 + 5s);
  auto w2 = book.enqueue(t0 + 5s);
  auto w3 = book.enqueue(t0 + 5s);
  CHECK_FALSE(book.lease_now(t0).has_value()); // no overtaking
  // Leases alternate: 1, 2, then the least leased, 1, 2.
  REQUIRE(held[0].connection == 1);
  REQUIRE(held[1].connection == 2);
  recorder fx;
  book.release(held[0].lease, held[0].connection, t0);
  book.serve(t0, pool_book::connect_rule::now, fx);
  REQUIRE(fx.grants.size() == 1);
  CHECK(fx.grants[0].first == w1);
  // Connection 2 drains: its released slot serves nobody.
  book.transition(2, conn_phase::draining);
  book.release(held[1].lease, held[1].connection, t0);
  book.serve(t0, pool_book::connect_rule::never, fx);
  CHECK(fx.grants.size() == 1);
  book.release(held[2].lease, held[2].connection, t0); // on 1
  book.serve(t0, pool_book::connect_rule::never, fx);
  book.release(fx.grants[0].second.lease, fx.grants[0].second.connection, t0);
  book.serve(t0, pool_book::connect_rule::never, fx);
  REQUIRE(fx.grants.size() == 3);
  CHECK(fx.grants[1].first == w2);
  CHECK(fx.grants[2].first == w3);
  for (auto& [w, g] : fx.grants)
    CHECK(g.connection == 1);
  CHECK(book.count(conn_phase::draining) == 1);
  CHECK(book.counted() == 1);
}

TEST_CASE("an idle connection unused for long is validated before it is leased", "[book]") {
  auto book = with_ready(small_limits(), {1});
  CHECK_FALSE(book.lease_now(t0 + 31s).has_value()); // stale: not given without a probe
  recorder fx;
  auto w = book.enqueue(t0 + 60s);
  book.serve(t0 + 31s, pool_book::connect_rule::now, fx);
  REQUIRE(fx.validations == std::vector<std::uint64_t>{1});
  CHECK(fx.connects == 0); // the probe covers the one waiter
  CHECK(book.pending() == 1);
  book.transition(1, conn_phase::ready);
  book.touch(1, t0 + 32s);
  book.serve(t0 + 32s, pool_book::connect_rule::now, fx);
  REQUIRE(fx.grants.size() == 1);
  CHECK(fx.grants[0].first == w);
}

TEST_CASE("handshakes are asked only for waiters no pending one covers", "[book]") {
  pool_book book{small_limits()};
  recorder fx;
  book.enqueue(t0 + 5s);
  book.enqueue(t0 + 5s);
  book.enqueue(t0 + 5s);
  SECTION("now: up to the cap") {
    CHECK_FALSE(book.serve(t0, pool_book::connect_rule::now, fx));
    CHECK(fx.connects == 2);
    CHECK(book.counted() == 2);
  }
  SECTION("later: none, and serve says it would have") {
    CHECK(book.serve(t0, pool_book::connect_rule::later, fx));
    CHECK(fx.connects == 0);
  }
  SECTION("never: none") {
    CHECK_FALSE(book.serve(t0, pool_book::connect_rule::never, fx));
    CHECK(fx.connects == 0);
  }
  SECTION("withdrawn permits stop counting") {
    book.serve(t0, pool_book::connect_rule::now, fx);
    CHECK(book.withdraw_permits() == 2);
    CHECK(book.counted() == 0);
    CHECK(book.pending() == 0);
  }
}

TEST_CASE("waiters covered by pending handshakes outlive their deadline", "[book]") {
  pool_book book{small_limits()};
  recorder fx;
  auto w1 = book.enqueue(t0 + 5s);
  book.serve(t0, pool_book::connect_rule::now, fx); // one handshake covers w1
  auto w2 = book.enqueue(t0 + 5s);
  auto w3 = book.enqueue(t0 + 8s);
  book.serve(t0, pool_book::connect_rule::later, fx); // backoff: w2 and w3 uncovered
  CHECK(book.expire(t0 + 4s, fx) == t0 + 5s);
  CHECK(fx.expirations.empty());
  CHECK(book.expire(t0 + 5s, fx) == t0 + 8s);
  CHECK(fx.expirations == std::vector<std::uint64_t>{w2});
  REQUIRE(book.waiters().size() == 2);
  CHECK(book.waiters()[0].id == w1);
  CHECK(book.waiters()[1].id == w3);
}

TEST_CASE("transition only takes the moves of the diagram", "[book]") {
  auto book = with_ready(small_limits(), {1});
  CHECK_THROWS_AS(book.transition(1, conn_phase::connecting), std::logic_error);
  CHECK_THROWS_AS(book.transition(9, conn_phase::ready), std::logic_error);
  book.transition(1, conn_phase::draining);
  CHECK_THROWS_AS(book.transition(1, conn_phase::ready), std::logic_error);
  CHECK_THROWS_AS(book.transition(1, conn_phase::closing), std::logic_error);
  CHECK(book.remove(1) == conn_phase::draining);
  CHECK_FALSE(book.remove(1).has_value());
  CHECK(book.empty());
}

TEST_CASE("a lease on a connection that is gone can still be released", "[book]") {
  auto book = with_ready(small_limits(), {1});
  auto a = book.lease_now(t0);
  REQUIRE(a.has_value());
  book.transition(1, conn_phase::closing);
  CHECK(book.active_leases() == 0);
  book.remove(1);
  CHECK_FALSE(book.empty());
  CHECK(book.lease_records() == 1);
  CHECK(book.release(a->lease, a->connection, t0));
  CHECK(book.empty());
}

TEST_CASE("lifetime and idleness select ready connections without a lease", "[book]") {
  auto book = with_ready(small_limits(), {1, 2});
  auto a = book.lease_now(t0); // on 1
  REQUIRE(a.has_value());
  CHECK(book.unused_for(t0 + 10min, 5min) == std::vector<std::uint64_t>{2});
  CHECK(book.expired_idle(t0 + 59min).empty());
  CHECK(book.expired_idle(t0 + 1h) == std::vector<std::uint64_t>{2});
  CHECK_FALSE(book.any_leasable(t0 + 1h));
}

TEST_CASE("expire_all (a new endpoint): no lease on the old connections, idle ones retire, "
          "leased ones once released, agents stay",
          "[book]") {
  auto book = with_ready(small_limits(), {1, 2});
  book.adopt(3, t0);
  book.transition(3, conn_phase::ready);
  auto a = book.lease_now(t0); // on 1
  REQUIRE(a.has_value());
  book.expire_all(t0 + 1s);
  CHECK(book.expired_idle(t0 + 1s) == std::vector<std::uint64_t>{2});
  book.touch(3, t0 + 1s);
  auto b = book.lease_now(t0 + 1s);
  REQUIRE(b.has_value());
  CHECK(b->connection == 3); // the agent: neither 1 nor 2
  REQUIRE(book.release(a->lease, a->connection, t0 + 2s));
  CHECK(book.expired_idle(t0 + 2s) == std::vector<std::uint64_t>{1, 2});
}

TEST_CASE("an agent enters without a permit, counts, and is never expired nor evicted", "[book]") {
  auto book = with_ready(small_limits(), {1});
  book.adopt(2, t0);
  CHECK(book.permits_asked() == 0);
  CHECK(book.counted() == 2);
  CHECK(book.pending() == 1);
  CHECK(book.agents() == 1);
  CHECK_THROWS_AS(book.adopt(2, t0), std::logic_error);
  book.transition(2, conn_phase::ready);
  CHECK(book.idle() == 2);
  // Long past the dialed one's lifetime and idle limit, only the dialed one is proposed.
  CHECK(book.unused_for(t0 + 10h, 5min) == std::vector<std::uint64_t>{1});
  CHECK(book.expired_idle(t0 + 10h) == std::vector<std::uint64_t>{1});
  CHECK(book.any_leasable(t0 + 10h)); // the agent, still
  book.touch(2, t0 + 10h);            // found alive (else it is validated first)
  auto a = book.lease_now(t0 + 10h);
  REQUIRE(a.has_value());
  CHECK(a->connection == 2);
  // Leaving the cap's count, it leaves the agents'.
  book.transition(2, conn_phase::draining);
  CHECK(book.agents() == 0);
  CHECK(book.counted() == 1);
}

TEST_CASE("backoff: full jitter below a doubling ceiling; refusals wait cap / 2 to cap",
          "[backoff]") {
  auto base = std::chrono::milliseconds{1000};
  auto cap = std::chrono::milliseconds{30000};
  CHECK(backoff_range(1, false, base, cap).high == 1000ms);
  CHECK(backoff_range(2, false, base, cap).high == 2000ms);
  CHECK(backoff_range(5, false, base, cap).high == 16000ms);
  CHECK(backoff_range(6, false, base, cap).high == 30000ms);
  CHECK(backoff_range(500, false, base, cap).high == 30000ms);
  CHECK(backoff_range(3, false, base, cap).low == 0ms);
  CHECK(backoff_range(1, true, base, cap).low == 15000ms);
  CHECK(backoff_range(1, true, base, cap).high == 30000ms);
  CHECK(is_refusal(errc::auth_failed));
  CHECK(is_refusal(errc::host_key_mismatch));
  CHECK(is_refusal(errc::host_key_revoked));
  CHECK_FALSE(is_refusal(errc::connect_failed));
  CHECK_FALSE(is_refusal(errc::timeout));
  std::minstd_rand rng{42};
  for (std::uint32_t failures = 1; failures < 40; ++failures)
    for (bool refusal : {false, true}) {
      auto range = backoff_range(failures, refusal, base, cap);
      auto d = backoff_delay(failures, refusal, base, cap, rng);
      CHECK(d >= range.low);
      CHECK(d <= range.high);
    }
}

// -- the property test ------------------------------------------------------------------------

namespace {

/// Drives a book with random events and checks its invariants after each one.
class random_driver final : public pool_book::effects {
public:
  explicit random_driver(std::uint32_t seed) : rng_(seed) {
    pool_book::limits lim;
    lim.max_connections = pick(1, 4);
    lim.max_channels = pick(1, 3);
    lim.max_waiters = pick(1, 6);
    lim.validation_idle_threshold = std::chrono::seconds(pick(0, 10));
    book_ = pool_book{lim};
  }

  /// One random event, then serve() (as the actor does after every event).
  void step() {
    now_ += std::chrono::milliseconds(pick(0, 9) == 0 ? pick(0, 5000) : pick(0, 200));
    // Weighted: callers and releases most, failures and drains rarely.
    auto roll = pick(0, 99);
    if (roll < 25) {
      arrive();
    } else if (roll < 45) {
      release();
    } else if (roll < 55) {
      if (book_.permits_asked() > 0)
        book_.permit_granted(++next_conn_, now_, now_ + std::chrono::seconds(pick(5, 120)));
    } else if (roll < 57) {
      if (book_.permits_asked() > 0)
        book_.permit_refused();
    } else if (roll < 67) {
      if (auto id = any_in(conn_phase::connecting)) // up, or its handshake failed
        move(id, pick(0, 4) > 0 ? conn_phase::ready : conn_phase::closing);
    } else if (roll < 72) {
      if (auto id = any_in(conn_phase::validating)) // alive, or no answer
        move(id, pick(0, 3) > 0 ? conn_phase::ready : conn_phase::closing);
    } else if (roll < 75) {
      if (auto id = any_in(conn_phase::evicting)) // kept, or evicted
        move(id, pick(0, 1) > 0 ? conn_phase::ready : conn_phase::closing);
      else
        for (auto c : book_.unused_for(now_, std::chrono::seconds(pick(0, 10))))
          move(c, conn_phase::evicting);
    } else if (roll < 78) {
      for (auto id : book_.expired_idle(now_)) // past their lifetime
        move(id, conn_phase::draining);
    } else if (roll < 79) { // a drain or a close of the user
      auto to = pick(0, 1) > 0 ? conn_phase::draining : conn_phase::closing;
      book_.withdraw_permits();
      for (auto id : book_.ids_where(counts_against_cap))
        move(id, to);
    } else if (roll < 89) { // a connection actor is down
      auto id = any_leaving();
      if (id == 0 && pick(0, 19) == 0)
        id = any_entry(); // a crash, even of one that counts
      book_.remove(id);
    } else if (roll < 97) {
      book_.expire(now_, *this);
    } else if (auto id = any_in(conn_phase::ready)) { // lost
      move(id, conn_phase::closing);
    }
    auto rule = static_cast<pool_book::connect_rule>(pick(0, 2));
    book_.serve(now_, rule, *this);
    check();
  }

  /// The first invariant that does not hold, or empty.
  const std::string& violation() const { return violation_; }

  /// How often each kind of effect happened (coverage).
  struct tally {
    std::size_t grants = 0, validations = 0, connects = 0, expirations = 0;
  };
  const tally& seen() const { return seen_; }

  void granted(std::uint64_t waiter, pool_book::grant g) override {
    if (fifo_.empty() || fifo_.front() != waiter)
      fail("waiter " + std::to_string(waiter) + " served out of FIFO order");
    else
      fifo_.pop_front();
    on_lease(g);
  }

  void validate(std::uint64_t id) override {
    if (auto* c = book_.find(id); c == nullptr || c->phase != conn_phase::validating)
      fail("validate() for a connection not validating");
    ++seen_.validations;
  }

  void connect() override {
    if (book_.pending() > book_.waiting())
      fail("more handshakes than waiters");
    ++seen_.connects;
  }

  void expired(std::uint64_t waiter) override {
    auto i = std::find(fifo_.begin(), fifo_.end(), waiter);
    if (i == fifo_.end())
      fail("an unknown waiter expired");
    else
      fifo_.erase(i);
    ++seen_.expirations;
  }

private:
  std::size_t pick(std::size_t low, std::size_t high) {
    return std::uniform_int_distribution<std::size_t>{low, high}(rng_);
  }

  void fail(std::string what) {
    if (violation_.empty())
      violation_ = std::move(what);
  }

  void arrive() {
    if (auto g = book_.lease_now(now_)) {
      if (!fifo_.empty())
        fail("a caller overtook the FIFO");
      on_lease(*g);
    } else if (!book_.waiters_full()) {
      fifo_.push_back(book_.enqueue(now_ + std::chrono::seconds(pick(1, 10))));
    }
  }

  void release() {
    if (held_.empty() || pick(0, 9) == 0) { // a forged or repeated release
      if (book_.release(next_lease_guess_++ + 1000000, 1, now_))
        fail("a lease never made was released");
      return;
    }
    auto i = held_.begin() + static_cast<std::ptrdiff_t>(pick(0, held_.size() - 1));
    auto g = *i;
    held_.erase(i);
    if (!book_.release(g.lease, g.connection, now_))
      fail("a held lease could not be released");
    if (book_.release(g.lease, g.connection, now_))
      fail("a lease was released twice");
  }

  void on_lease(pool_book::grant g) {
    auto* c = book_.find(g.connection);
    if (c == nullptr || c->phase != conn_phase::ready)
      fail("a lease on a connection that is not ready");
    held_.push_back(g);
    ++seen_.grants;
  }

  void move(std::uint64_t id, conn_phase to) {
    book_.transition(id, to);
    if (!counts_against_cap(to))
      frozen_[id] = book_.find(id)->leases;
  }

  std::uint64_t any_in(conn_phase p) {
    std::vector<std::uint64_t> ids;
    for (auto& c : book_.entries())
      if (c.phase == p)
        ids.push_back(c.id);
    return ids.empty() ? 0 : ids[pick(0, ids.size() - 1)];
  }

  std::uint64_t any_leaving() {
    return pick(0, 1) > 0 ? any_in(conn_phase::draining) : any_in(conn_phase::closing);
  }

  std::uint64_t any_entry() {
    auto& all = book_.entries();
    return all.empty() ? 0 : all[pick(0, all.size() - 1)].id;
  }

  /// The kept counts equal a rescan; the caps and the FIFO hold.
  void check() {
    auto& lim = book_.limit();
    std::map<conn_phase, std::size_t> in_phase;
    std::size_t counted = book_.permits_asked(), pending = book_.permits_asked();
    std::size_t active_leases = 0, idle = 0, all_leases = 0;
    for (auto& c : book_.entries()) {
      ++in_phase[c.phase];
      counted += counts_against_cap(c.phase) ? 1 : 0;
      pending += is_pending(c.phase) ? 1 : 0;
      active_leases += counts_against_cap(c.phase) ? c.leases : 0;
      idle += c.phase == conn_phase::ready && c.leases == 0 ? 1 : 0;
      all_leases += c.leases;
      if (c.leases > lim.max_channels)
        fail("more leases than channels on a connection");
      if (auto f = frozen_.find(c.id); f != frozen_.end() && c.leases > f->second)
        fail("a new lease on a draining or closing connection");
    }
    for (auto p : {conn_phase::connecting, conn_phase::ready, conn_phase::validating,
                   conn_phase::evicting, conn_phase::draining, conn_phase::closing})
      if (book_.count(p) != in_phase[p])
        fail("the count of a phase differs from a rescan");
    if (book_.counted() != counted || book_.pending() != pending ||
        book_.active_leases() != active_leases || book_.idle() != idle)
      fail("a kept count differs from a rescan");
    if (book_.counted() > lim.max_connections)
      fail("over the connection cap");
    if (book_.lease_records() != held_.size() || all_leases > held_.size())
      fail("lease records differ from the leases held");
    if (book_.waiting() > lim.max_waiters)
      fail("over the waiter cap");
    if (!std::equal(fifo_.begin(), fifo_.end(), book_.waiters().begin(), book_.waiters().end(),
                    [](std::uint64_t id, const pool_book::waiter& w) { return id == w.id; }))
      fail("the FIFO differs from the order of arrival");
    bool empty =
        book_.entries().empty() && book_.permits_asked() == 0 && held_.empty() && fifo_.empty();
    if (book_.empty() != empty)
      fail("empty() is wrong");
  }

  std::mt19937 rng_;
  pool_book book_;
  time_point now_ = t0;
  std::uint64_t next_conn_ = 0;
  std::uint64_t next_lease_guess_ = 0;
  std::deque<std::uint64_t> fifo_;
  std::vector<pool_book::grant> held_;
  /// Leases of a connection when it stopped counting: they may only go down.
  std::map<std::uint64_t, std::uint32_t> frozen_;
  tally seen_;
  std::string violation_;
};

} // namespace

TEST_CASE("property: under random events the book keeps its invariants", "[book][property]") {
  constexpr std::uint32_t runs = 1000;
  constexpr int steps = 500;
  random_driver::tally seen;
  for (std::uint32_t seed = 1; seed <= runs; ++seed) {
    random_driver driver{seed};
    for (int step = 0; step < steps && driver.violation().empty(); ++step)
      driver.step();
    INFO("seed " << seed);
    REQUIRE(driver.violation().empty());
    seen.grants += driver.seen().grants;
    seen.validations += driver.seen().validations;
    seen.connects += driver.seen().connects;
    seen.expirations += driver.seen().expirations;
  }
  // The runs reach every path: leases, probes, handshakes and expired waiters.
  INFO("grants " << seen.grants << ", validations " << seen.validations << ", connects "
                 << seen.connects << ", expirations " << seen.expirations);
  CHECK(seen.grants > runs * 20);
  CHECK(seen.validations > runs);
  CHECK(seen.connects > runs * 5);
  CHECK(seen.expirations > runs);
}

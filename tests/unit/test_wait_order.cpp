// The front end's shedding order (app/gateway/wait_order.hpp) on its own, in explicit time:
// oldest first whatever order members are placed in, moves and removals from anywhere,
// answered connections ahead of all, and one member in two orders at once.
#include <catch2/catch.hpp>

#include <vector>

#include "gateway/wait_order.hpp"

using namespace sshpool::gateway;
using namespace std::chrono_literals;
using time_point = std::chrono::steady_clock::time_point;

namespace {

struct member {
  int id = 0;
  wait_link<member> all;
  wait_link<member> mine;
};

using order = wait_order<member, &member::all>;

const time_point t0{};

/// The ids in `o`'s order, by taking the oldest until it is empty.
std::vector<int> drain(order& o) {
  std::vector<int> ids;
  while (member* m = o.oldest()) {
    ids.push_back(m->id);
    o.remove(*m);
  }
  return ids;
}

} // namespace

TEST_CASE("wait_order: the oldest first, whatever order they came in", "[wait_order]") {
  std::vector<member> m(6);
  for (int i = 0; i < 6; ++i)
    m[i].id = i;
  order o;
  CHECK(o.oldest() == nullptr);
  o.place(m[0], t0 + 30ms);
  o.place(m[1], t0 + 10ms);
  o.place(m[2], t0 + 50ms);
  o.place(m[3], t0 + 20ms);
  o.place(m[4], t0 + 30ms); // after m[0]: equal ones keep the order they were placed in
  o.place(m[5], t0 + 40ms);
  CHECK(drain(o) == std::vector<int>{1, 3, 0, 4, 5, 2});
  for (auto& x : m)
    CHECK_FALSE(x.all.linked);
}

TEST_CASE("wait_order: a member moved or removed from the middle, the head or the tail",
          "[wait_order]") {
  std::vector<member> m(5);
  order o;
  for (int i = 0; i < 5; ++i) {
    m[i].id = i;
    o.place(m[i], t0 + std::chrono::milliseconds(10 * i));
  }
  o.place(m[2], t0 + 100ms); // the middle made younger: to the tail
  o.place(m[0], t0 + 5ms);   // the head stays the head
  o.remove(m[2]);            // the tail
  o.remove(m[2]);            // twice: nothing
  CHECK_FALSE(m[2].all.linked);
  o.place(m[3], t0 + 1ms);  // made older: to the head
  o.place(m[2], t0 + 35ms); // back in, between m[1] and m[4] (the tail)
  CHECK(m[2].all.since == t0 + 35ms);
  CHECK(drain(o) == std::vector<int>{3, 0, 1, 2, 4});
}

TEST_CASE("wait_order: time_point::min goes ahead of every other member", "[wait_order]") {
  std::vector<member> m(4);
  order o;
  for (int i = 0; i < 4; ++i)
    m[i].id = i;
  o.place(m[0], t0 + 1ms);
  o.place(m[1], time_point::min());
  o.place(m[2], t0);
  o.place(m[3], time_point::min());
  // Each time_point::min() goes to the head, ahead of those placed before it too.
  CHECK(drain(o) == std::vector<int>{3, 1, 2, 0});
}

TEST_CASE("wait_order: one member in two orders keeps a place in each", "[wait_order]") {
  std::vector<member> m(4);
  order all;
  wait_order<member, &member::mine> mine;
  for (int i = 0; i < 4; ++i) {
    m[i].id = i;
    all.place(m[i], t0 + std::chrono::milliseconds(10 * (4 - i)));
  }
  mine.place(m[1], t0 + 30ms);
  mine.place(m[3], t0 + 10ms);
  CHECK(all.oldest() == &m[3]);
  all.remove(m[3]); // taken out of one order: still the oldest of the other
  CHECK(mine.oldest() == &m[3]);
  CHECK(all.oldest() == &m[2]);
  mine.remove(m[3]);
  CHECK(mine.oldest() == &m[1]);
  CHECK(all.oldest() == &m[2]);
}

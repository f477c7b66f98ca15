// A CAF-based service: the engine runs inside the service's own actor system, and one of
// the service's actors leases a connection and forwards requests through the typed actor
// handles, never blocking. Results are collected and checked on the test thread.
#include <catch2/catch.hpp>

#include <future>

#include <caf/all.hpp>

#include "backend/http_backend.hpp"
#include "sshpool/actors.hpp"
#include "sshpool/sshpool.hpp"
#include "support/test_sshd.hpp"
#include "support/timing.hpp"

using namespace sshpool;
using namespace std::chrono_literals;

namespace {

/// An engine on one scheduler thread (which a thread_holder can take), acquire_timeout 100 ms.
engine_config one_thread_config(std::chrono::milliseconds connect_timeout) {
  engine_config cfg;
  cfg.scheduler_threads = 1;
  cfg.pool.acquire_timeout = 100ms;
  cfg.pool.connect_timeout = connect_timeout;
  cfg.log_level = "warn";
  return cfg;
}

/// The fault: an actor that holds one of the engine's scheduler threads (with
/// `scheduler_threads = 1`, the only one) from its construction until `let_go`.
class thread_holder {
public:
  explicit thread_holder(engine& eng) {
    blocker_ = eng.system().spawn([this](caf::event_based_actor*) -> caf::behavior {
      return {[this](std::int32_t) {
        holding_.set_value();
        go_.get_future().wait();
        released_.set_value();
      }};
    });
    caf::anon_send(blocker_, std::int32_t{1});
    holding_.get_future().wait();
  }
  ~thread_holder() { let_go(); }
  thread_holder(const thread_holder&) = delete;
  thread_holder& operator=(const thread_holder&) = delete;

  /// Frees the thread and waits until the actor has let it go.
  void let_go() {
    if (!blocker_)
      return;
    go_.set_value();
    released_.get_future().wait();
    caf::anon_send_exit(blocker_, caf::exit_reason::user_shutdown);
    blocker_ = nullptr;
  }

private:
  std::promise<void> holding_;
  std::promise<void> go_;
  std::promise<void> released_;
  caf::actor blocker_;
};

struct outcome {
  std::vector<std::string> bodies;
  error err;
};

/// Leases a connection of `user`, forwards `n` requests at once on it, releases it.
void drive(caf::event_based_actor* self, supervisor_actor sup, std::string user, int n,
           std::shared_ptr<std::promise<outcome>> done) {
  auto fail = [done](const caf::error& e) {
    done->set_value({{}, from_caf_error(e, errc::internal)});
  };
  self->request(sup, caf::timespan{10s}, acquire_atom_v, user)
      .then(
          [=](lease& l) {
            auto result = std::make_shared<outcome>();
            auto pending = std::make_shared<int>(n);
            for (int i = 0; i < n; ++i) {
              request req;
              req.id = "caf-" + std::to_string(i);
              req.method = "POST";
              req.path = "/echo";
              req.body = "body-" + std::to_string(i);
              self->request(l.connection, caf::timespan{10s}, forward_atom_v, req,
                            caf::timespan{10s})
                  .then(
                      [=](response& res) {
                        result->bodies.push_back(res.id + "=" + res.body);
                        if (--*pending == 0)
                          self->request(sup, caf::timespan{10s}, release_atom_v, user, l)
                              .then([=] { done->set_value(*result); }, fail);
                      },
                      fail);
            }
          },
          fail);
}

} // namespace

TEST_CASE("a CAF service drives the engine in its own actor system", "[actors]") {
  test::test_sshd sshd;
  demo::http_backend backend{demo::http_backend::options{"caf-backend"}};
  caf::actor_system_config cfg;
  add_message_types(cfg);
  caf::actor_system sys{cfg};
  {
    engine_config ecfg;
    ecfg.log_level = "warn";
    engine eng{sys, ecfg};
    CHECK(&eng.system() == &sys);
    REQUIRE(eng.set_endpoint("alice", sshd.make_endpoint(backend.port())));
    auto done = std::make_shared<std::promise<outcome>>();
    auto result = done->get_future();
    sys.spawn(drive, supervisor_of(eng), std::string{"alice"}, 8, done);
    REQUIRE(result.wait_for(30s) == std::future_status::ready);
    auto out = result.get();
    CHECK(out.err.code() == errc::none);
    REQUIRE(out.bodies.size() == 8);
    std::sort(out.bodies.begin(), out.bodies.end());
    for (int i = 0; i < 8; ++i)
      CHECK(std::count(out.bodies.begin(), out.bodies.end(),
                       "caf-" + std::to_string(i) + "=body-" + std::to_string(i)) == 1);
    CHECK(eng.pool().get_pool_stats().leases == 0);
  }
  // The engine stopped its actors; the service's system is still usable.
  auto echo = sys.spawn([]() -> caf::behavior { return {[](int x) { return x + 1; }}; });
  caf::scoped_actor self{sys};
  int answer = 0;
  self->request(echo, caf::timespan{5s}, 41)
      .receive([&](int x) { answer = x; }, [](caf::error&) {});
  CHECK(answer == 42);
  caf::anon_send_exit(echo, caf::exit_reason::user_shutdown);
}

TEST_CASE("a facade call to a stalled engine ends at its deadline; the next call is served",
          "[forward]") {
  engine eng{one_thread_config(100ms)};
  // The fault: an actor that holds the only scheduler thread until the test lets it go, so
  // the supervisor cannot answer. get_connection's deadline is acquire + connect timeout +
  // 5 s of slack.
  thread_holder holder{eng};
  auto start = std::chrono::steady_clock::now();
  auto conn = eng.pool().get_connection("alice");
  auto took = std::chrono::steady_clock::now() - start;
  REQUIRE_FALSE(conn);
  CHECK(conn.error().code() == errc::timeout);
  CHECK(took >= 5s);
  CHECK(took < 7s);
  holder.let_go();
  // The late reply (an error: alice has no endpoint) is dropped; the next calls are answered.
  CHECK(eng.set_endpoint("bob", endpoint{}).error().code() == errc::invalid_argument);
  CHECK(eng.pool().get_pool_stats().leases == 0);
}

TEST_CASE("a lease granted after get_connection gave up goes back to the pool", "[pool]") {
  test::test_sshd sshd;
  demo::http_backend backend{demo::http_backend::options{"late-backend"}};
  engine eng{one_thread_config(2s)};
  REQUIRE(eng.set_endpoint("alice", sshd.make_endpoint(backend.port())));
  // The fault: an actor holds the only scheduler thread until get_connection's deadline
  // (acquire + connect timeout + 5 s of slack) has passed. The pool then takes the request,
  // which waits for the handshake it starts, and grants the lease to a caller long gone.
  thread_holder holder{eng};
  auto conn = eng.pool().get_connection("alice");
  REQUIRE_FALSE(conn);
  CHECK(conn.error().code() == errc::timeout);
  holder.let_go();
  auto alice = [&] {
    for (auto& u : eng.pool().get_pool_stats().users)
      if (u.user == "alice")
        return u;
    return user_stats{};
  };
  // The late grant: the connection is up (and was leased as it came up).
  REQUIRE(test::eventually([&] {
    auto u = alice();
    return u.connections == 1 && u.connecting == 0;
  }));
  // The lease went back as it was granted, before the pool answered the reading above: a
  // lease nobody holds would count here for good.
  auto u = alice();
  CHECK(u.leases == 0);
  CHECK(u.idle == 1);
  // The next caller gets that connection.
  auto next = eng.pool().get_connection("alice");
  REQUIRE(next);
  CHECK(alice().connections == 1);
  CHECK(eng.pool().release_connection("alice", *next));
}

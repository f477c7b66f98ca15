// The supervisor actor: routes calls to one user_pool per user (spawned on demand), spawns
// every connection actor for the pools (applying the global connection cap in one place),
// monitors all of them, answers engine-wide stats, and stops the tree.
//
//            stop_atom                      last child down
//   running ──────────► stopping ────────────────────────► (replies to stop, quits)
//     │  acquire / release / close / stats / endpoint / spawn
//     └──► (routes; in stopping, acquire and spawn get shutting_down)
#include "supervisor.hpp"

#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <caf/all.hpp>

#include "connection.hpp"
#include "handlers.hpp"
#include "sshpool/ssh/log.hpp"
#include "user_pool.hpp"

namespace sshpool {

namespace {

struct supervisor_state {
  static inline const char* name = "sshpool.supervisor";

  std::shared_ptr<const actor_context> ctx;
  std::unordered_map<std::string, endpoint> endpoints;
  std::unordered_map<std::string, user_pool_actor> pools;
  std::unordered_map<caf::actor_addr, std::string> pool_users;
  std::unordered_set<caf::actor_addr> connections;
  bool stopping = false;
  std::vector<caf::typed_response_promise<void>> stop_promises;
};

using self_ptr = supervisor_actor::stateful_pointer<supervisor_state>;

void maybe_finish_stop(self_ptr self) {
  auto& st = self->state;
  if (!st.stopping || !st.pools.empty() || !st.connections.empty())
    return;
  for (auto& rp : st.stop_promises)
    static_cast<caf::response_promise&>(rp).deliver(caf::unit);
  st.stop_promises.clear();
  self->quit();
}

supervisor_actor::behavior_type supervisor_impl(self_ptr self,
                                                std::shared_ptr<const actor_context> ctx) {
  self->state.ctx = std::move(ctx);
  install_exception_handler(self, [self](const std::string& what) {
    for (auto& rp : self->state.stop_promises)
      rp.deliver(make_caf_error(errc::internal, what));
    self->state.stop_promises.clear();
  });
  self->set_down_handler([self](const caf::down_msg& dm) {
    auto& st = self->state;
    if (st.connections.erase(dm.source) == 0) {
      auto i = st.pool_users.find(dm.source);
      if (i != st.pool_users.end()) {
        auto p = st.pools.find(i->second);
        if (p != st.pools.end() && p->second.address() == dm.source)
          st.pools.erase(p);
        if (dm.reason && dm.reason != caf::exit_reason::user_shutdown)
          log().error("pool of '{}' ended: {}", i->second, caf::to_string(dm.reason));
        st.pool_users.erase(i);
      }
    }
    maybe_finish_stop(self);
  });
  return {
      [self](acquire_atom, const std::string& user) -> caf::result<lease> {
        auto& st = self->state;
        if (st.stopping)
          return make_caf_error(errc::shutting_down, "the engine is stopping");
        if (auto ok = validate_user(user); !ok)
          return make_caf_error(ok.error());
        auto pool = st.pools.find(user);
        if (pool == st.pools.end()) {
          auto ep = st.endpoints.find(user);
          if (ep == st.endpoints.end())
            return make_caf_error(errc::unknown_user, "no endpoint is set for user '" + user + "'");
          auto handle = spawn_user_pool(self, user, ep->second,
                                        caf::actor_cast<supervisor_actor>(self), st.ctx);
          self->monitor(handle);
          st.pool_users.emplace(handle.address(), user);
          pool = st.pools.emplace(user, std::move(handle)).first;
        }
        return self->delegate(pool->second, acquire_atom_v, user);
      },
      [self](release_atom, const std::string& user, const lease& l) -> caf::result<void> {
        auto& st = self->state;
        auto pool = st.pools.find(user);
        if (pool == st.pools.end()) {
          if (l.user != user)
            return make_caf_error(errc::wrong_user, "the lease belongs to user '" + l.user +
                                                        "', not to '" + user + "'");
          return make_caf_error(errc::not_leased, "user '" + user + "' holds no lease");
        }
        return self->delegate(pool->second, release_atom_v, user, l);
      },
      [self](close_atom, const std::string& user) -> caf::result<std::uint64_t> {
        auto& st = self->state;
        auto pool = st.pools.find(user);
        if (pool == st.pools.end())
          return std::uint64_t{0};
        return self->delegate(pool->second, close_atom_v, user);
      },
      [self](stats_atom) -> caf::result<pool_stats> {
        auto& st = self->state;
        auto rp = self->make_response_promise<pool_stats>();
        auto acc = std::make_shared<pool_stats>();
        acc->user_count = st.pools.size();
        if (st.pools.empty()) {
          rp.deliver(*acc);
          return rp;
        }
        auto remaining = std::make_shared<std::size_t>(st.pools.size());
        auto done = [rp, acc, remaining]() mutable {
          if (--*remaining == 0)
            rp.deliver(std::move(*acc));
        };
        for (auto& [user, pool] : st.pools)
          self->request(pool, std::chrono::seconds(5), stats_atom_v)
              .then(
                  [acc, done](user_stats& us) mutable {
                    acc->total_connections += us.connections;
                    acc->connecting += us.connecting;
                    acc->idle += us.idle;
                    acc->leases += us.leases;
                    acc->waiters += us.waiters;
                    acc->users.push_back(std::move(us));
                    done();
                  },
                  [done](caf::error&) mutable { done(); });
        return rp;
      },
      [self](endpoint_atom, const std::string& user, endpoint& ep) -> caf::result<void> {
        auto& st = self->state;
        if (auto ok = validate_user(user); !ok)
          return make_caf_error(ok.error());
        if (auto ok = validate(ep); !ok)
          return make_caf_error(ok.error());
        if (auto pool = st.pools.find(user); pool != st.pools.end())
          self->send(pool->second, endpoint_atom_v, ep);
        st.endpoints[user] = std::move(ep);
        return caf::unit;
      },
      [self](stop_atom) -> caf::result<void> {
        auto& st = self->state;
        auto rp = self->make_response_promise<void>();
        st.stop_promises.push_back(rp);
        if (!st.stopping) {
          st.stopping = true;
          log().info("stopping: {} pools, {} connections", st.pools.size(), st.connections.size());
          for (auto& [user, pool] : st.pools)
            self->send(pool, stop_atom_v);
        }
        maybe_finish_stop(self);
        return rp;
      },
      [self](spawn_atom, std::string& user, endpoint& ep,
             user_pool_actor& pool) -> caf::result<connection_actor> {
        auto& st = self->state;
        if (st.stopping)
          return make_caf_error(errc::shutting_down, "the engine is stopping");
        if (st.connections.size() >= st.ctx->pool.max_connections_total)
          return make_caf_error(errc::pool_exhausted,
                                "the engine holds its maximum of " +
                                    std::to_string(st.ctx->pool.max_connections_total) +
                                    " connections (max_connections_total)");
        auto conn = spawn_connection(self, std::move(user), std::move(ep), std::move(pool), st.ctx);
        self->monitor(conn);
        st.connections.insert(conn.address());
        return conn;
      },
  };
}

} // namespace

supervisor_actor spawn_supervisor(caf::actor_system& sys,
                                  std::shared_ptr<const actor_context> ctx) {
  return sys.spawn(supervisor_impl, std::move(ctx));
}

expected<void> validate_user(const std::string& user) {
  if (user.empty())
    return {errc::invalid_argument, "the user id is empty"};
  if (user.size() > 1024)
    return {errc::invalid_argument,
            "the user id is " + std::to_string(user.size()) + " bytes long (at most 1024)"};
  return {};
}

expected<void> validate(const endpoint& ep) {
  auto missing = [](const char* what) {
    return expected<void>{errc::invalid_argument, std::string{"endpoint: "} + what + " is missing"};
  };
  if (ep.host.empty())
    return missing("host");
  if (ep.port == 0)
    return missing("port");
  if (ep.username.empty())
    return missing("username");
  if (ep.identity_file.empty())
    return missing("identity_file");
  if (ep.known_hosts_file.empty())
    return missing("known_hosts_file");
  if (ep.target_host.empty())
    return missing("target_host");
  if (ep.target_port == 0)
    return missing("target_port");
  return {};
}

} // namespace sshpool

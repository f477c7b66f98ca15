// A cluster node for the routing tests (test_cluster_routing.cpp): an engine in an actor
// system with CAF's middleman, its supervisor published on 127.0.0.1, driven by commands on
// stdin, one answer line per command on stdout ("<tag> ok ..." or "<tag> err <errc> ...").
// It stands in for the cluster actor: `peer` connects to another node's supervisor, `view`
// sends the supervisor a cluster_view, and the claims the supervisor sends are recorded.
//
// Arguments: node_id, then key=value pool settings (conns, channels, waiters, acquire_ms,
// connect_ms, window). With listen=PORT (and peers=PORT,PORT, pki=DIR) the node runs as a
// real cluster node instead: the engine's cluster actor on mutual TLS forms the cluster
// and sends the views; `peer` and `view` are then not used. Commands ("<tag> <command> <args>"),
// each run on a thread of its own:
//   endpoint USER HOST PORT LOGIN IDENTITY KNOWN_HOSTS TARGET_PORT
//   peer NODE PORT          view NODE...           claims
//   intrude NODE            this node's own calls sent to NODE's supervisor, as a peer
//                           that misbehaves: "ok" and the outcome of stop, stats,
//                           endpoint and counters (each "ok" or its errc number)
//   get USER PATH           a whole response: "ok STATUS BODY_BYTES", then released
//   hold USER               acquire and keep the lease ("ok"); holdget PATH forwards on it,
//                           drop [AS_USER] releases it (as its user, or as AS_USER)
//   stream USER PATH MS     streamed; the sink acks nothing for MS ms after the first chunk:
//                           "ok BODY_BYTES BYTES_BY_THE_END_OF_THE_HOLD"
//   close USER, drainuser USER   close or drain the user's connections: "ok CLOSED"
//   counters                "ok REMOTE_ACQUIRES FAILURES SERVED_ACQUIRES SERVED_LEASES"
//   conns                   "ok TOTAL_CONNECTIONS" (this node's pools)
//   members, cstats         cluster mode: engine::cluster_status()'s members, and its
//                           routed counters (as `counters`)
//   hello PORT ID mine|theirs   cluster mode, as a member that misbehaves: a hello to the
//                           cluster actor at PORT under ID, with this node's handles or
//                           the receiver's own: "ok" (admitted) or the error
// The first line is "ready PORT". EOF on stdin ends the node.
#include <atomic>
#include <condition_variable>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/remote_actor.hpp>

#include "cluster_messages.hpp"
#include "sshpool/actors.hpp"
#include "sshpool/engine.hpp"

using namespace sshpool;

namespace {

std::mutex out_mx;

void say(const std::string& tag, const std::string& line) {
  std::lock_guard<std::mutex> guard{out_mx};
  std::cout << tag << ' ' << line << std::endl;
}

/// An error as "err CODE MESSAGE"; CAF's own errors map to `fallback`.
std::string describe(const caf::error& err, errc fallback = errc::internal) {
  auto e = from_caf_error(err, fallback);
  return "err " + std::to_string(static_cast<int>(e.code())) + ' ' + e.message();
}

/// What the supervisor claimed (user → claimed).
struct claim_book {
  std::mutex mx;
  std::map<std::string, bool> claims;
};

claim_actor::behavior_type claim_recorder(claim_actor::pointer, std::shared_ptr<claim_book> book) {
  return {[book](claim_atom, const std::string& user, bool claimed) {
    std::lock_guard<std::mutex> guard{book->mx};
    book->claims[user] = claimed;
  }};
}

/// A sink that holds its acks for `hold` after the first chunk, then acks everything.
struct stream_outcome {
  std::mutex mx;
  std::condition_variable cv;
  bool done = false;
  std::size_t bytes = 0;
  std::size_t held = 0;
  caf::error err;
};

caf::behavior holding_sink(caf::event_based_actor* self, connection_actor conn,
                           std::chrono::milliseconds hold, std::shared_ptr<stream_outcome> out) {
  auto unacked = std::make_shared<std::size_t>(0);
  auto holding = std::make_shared<int>(0); // 0 before the first chunk, 1 holding, 2 done
  auto finish = [out](caf::error err) {
    std::lock_guard<std::mutex> guard{out->mx};
    out->err = std::move(err);
    out->done = true;
    out->cv.notify_all();
  };
  return {
      [](head_atom, std::uint64_t, response&) {},
      [=](chunk_atom, std::uint64_t id, std::string& chunk) {
        {
          std::lock_guard<std::mutex> guard{out->mx};
          out->bytes += chunk.size();
        }
        if (*holding == 0) {
          *holding = 1;
          self->delayed_send(self, hold, ack_atom_v, id, std::uint64_t{0});
        }
        if (*holding == 1)
          *unacked += chunk.size();
        else
          self->send(conn, ack_atom_v, id, static_cast<std::uint64_t>(chunk.size()));
      },
      [=](ack_atom, std::uint64_t id, std::uint64_t) {
        // The hold is over: what arrived meanwhile is acknowledged at once.
        {
          std::lock_guard<std::mutex> guard{out->mx};
          out->held = out->bytes;
        }
        *holding = 2;
        self->send(conn, ack_atom_v, id, static_cast<std::uint64_t>(*unacked));
        *unacked = 0;
      },
      [=](end_atom, std::uint64_t, caf::error& err) {
        finish(std::move(err));
        self->quit();
      },
      [=](whole_atom, std::uint64_t, response& whole) {
        {
          std::lock_guard<std::mutex> guard{out->mx};
          out->bytes += whole.body.size();
        }
        finish(caf::error{});
        self->quit();
      },
  };
}

struct node {
  node(caf::actor_system& system, engine& e, std::string id)
      : sys(system), eng(e), sup(supervisor_of(e)), self_id(std::move(id)) {}

  caf::actor_system& sys;
  engine& eng;
  supervisor_actor sup;
  std::string self_id;
  std::shared_ptr<claim_book> book = std::make_shared<claim_book>();
  claim_actor recorder;
  std::mutex mx;
  std::map<std::string, supervisor_actor> peers;
  std::vector<lease> held;

  caf::expected<lease> acquire(const std::string& user) {
    caf::scoped_actor self{sys};
    caf::expected<lease> result{caf::sec::unexpected_response};
    self->request(sup, std::chrono::seconds(30), acquire_atom_v, user)
        .receive([&](lease& l) { result = std::move(l); },
                 [&](caf::error& err) { result = std::move(err); });
    return result;
  }

  std::string release(const lease& l, const std::string& as) {
    caf::scoped_actor self{sys};
    std::string result = "ok";
    self->request(sup, std::chrono::seconds(30), release_atom_v, as, l)
        .receive([] {}, [&](caf::error& err) { result = describe(err); });
    return result;
  }

  std::string forward(const lease& l, const std::string& path) {
    caf::scoped_actor self{sys};
    request req;
    req.path = path;
    std::string result;
    auto timeout = caf::timespan{std::chrono::seconds(20)};
    self->request(l.connection, std::chrono::seconds(30), forward_atom_v, req, timeout)
        .receive(
            [&](response& r) {
              result = "ok " + std::to_string(r.status) + ' ' + std::to_string(r.body.size());
            },
            // A connection whose actor is gone (lost, or a relay of a lost one): as the
            // facade maps it.
            [&](caf::error& err) { result = describe(err, errc::connection_lost); });
    return result;
  }

  /// The supervisor of peer `id` (`peer`), or null.
  supervisor_actor peer_of(const std::string& id) {
    std::lock_guard<std::mutex> guard{mx};
    auto p = peers.find(id);
    return p != peers.end() ? p->second : supervisor_actor{};
  }

  std::string run(std::istringstream& in) {
    std::string cmd;
    in >> cmd;
    if (cmd == "endpoint") {
      std::string user;
      endpoint ep;
      in >> user >> ep.host >> ep.port >> ep.username >> ep.identity_file >> ep.known_hosts_file >>
          ep.target_port;
      ep.target_host = "127.0.0.1";
      auto ok = eng.set_endpoint(user, ep);
      return ok ? "ok" : "err " + ok.error().to_string();
    }
    if (cmd == "peer") {
      std::string id;
      std::uint16_t port = 0;
      in >> id >> port;
      auto peer = sys.middleman().remote_actor<supervisor_actor>("127.0.0.1", port);
      if (!peer)
        return describe(peer.error());
      std::lock_guard<std::mutex> guard{mx};
      peers[id] = *peer;
      return "ok";
    }
    if (cmd == "view") {
      cluster_view view;
      view.self = self_id;
      view.cluster = recorder;
      for (std::string id; in >> id;)
        view.members.push_back(id);
      std::sort(view.members.begin(), view.members.end());
      for (auto& id : view.members)
        if (auto p = peer_of(id))
          view.supervisors.emplace(id, p);
      caf::anon_send(caf::actor_cast<supervisor_impl>(sup), view_atom_v, std::move(view));
      return "ok";
    }
    if (cmd == "intrude") {
      // As a connected peer that misbehaves: this node's own calls sent to NODE's
      // supervisor (a view making this node NODE's owner of everything, then stop, stats,
      // endpoint and counters): "ok" and each call's outcome ("ok" or its errc number).
      std::string id;
      in >> id;
      auto impl = caf::actor_cast<supervisor_impl>(peer_of(id));
      if (!impl)
        return "err unknown peer";
      caf::scoped_actor self{sys};
      cluster_view view;
      view.self = id;
      view.members = {self_id};
      view.supervisors.emplace(self_id, sup);
      self->send(impl, view_atom_v, std::move(view));
      std::string result = "ok";
      auto ok = [&] { result += " ok"; };
      auto on_error = [&](caf::error& err) {
        result +=
            ' ' + std::to_string(static_cast<int>(from_caf_error(err, errc::internal).code()));
      };
      constexpr auto timeout = std::chrono::seconds(10);
      self->request(impl, timeout, stop_atom_v).receive(ok, on_error);
      self->request(impl, timeout, stats_atom_v).receive([&](pool_stats&) { ok(); }, on_error);
      endpoint ep;
      ep.mode = endpoint_mode::agent;
      ep.authorized_keys_file = "/nonexistent";
      ep.target_port = 1;
      self->request(impl, timeout, endpoint_atom_v, "intruded", ep).receive(ok, on_error);
      self->request(impl, timeout, view_atom_v)
          .receive([&](std::uint64_t, std::uint64_t, std::uint64_t, std::uint64_t) { ok(); },
                   on_error);
      return result;
    }
    if (cmd == "hello") {
      // Cluster mode, as a member that misbehaves: a hello to the cluster actor at PORT
      // under node id ID, with this node's handles (mine) or the receiver's own (theirs).
      std::uint16_t port = 0;
      std::string id, kind;
      in >> port >> id >> kind;
      auto peer = caf::openssl::remote_actor<caf::actor>(sys, "127.0.0.1", port);
      if (!peer)
        return describe(peer.error());
      cluster_hello hello;
      hello.node_id = id;
      hello.listen = "127.0.0.1:1";
      if (kind == "theirs") {
        hello.supervisor = caf::actor_cast<supervisor_actor>(*peer);
        hello.cluster = caf::actor_cast<cluster_peer_actor>(*peer);
      } else {
        hello.supervisor = sup;
        hello.cluster = caf::actor_cast<cluster_peer_actor>(recorder);
      }
      caf::scoped_actor self{sys};
      std::string result;
      self->request(caf::actor_cast<cluster_peer_actor>(*peer), std::chrono::seconds(10),
                    hello_atom_v, std::move(hello))
          .receive([&](cluster_hello&) { result = "ok"; },
                   [&](caf::error& err) { result = describe(err); });
      return result;
    }
    if (cmd == "claims") {
      std::lock_guard<std::mutex> guard{book->mx};
      std::string result = "ok";
      for (auto& [user, claimed] : book->claims)
        if (claimed)
          result += ' ' + user;
      return result;
    }
    if (cmd == "get") {
      std::string user, path;
      in >> user >> path;
      auto l = acquire(user);
      if (!l)
        return describe(l.error());
      auto result = forward(*l, path);
      release(*l, l->user);
      return result;
    }
    if (cmd == "hold") {
      std::string user;
      in >> user;
      auto l = acquire(user);
      if (!l)
        return describe(l.error());
      std::lock_guard<std::mutex> guard{mx};
      held.push_back(*l);
      return "ok";
    }
    if (cmd == "holdget" || cmd == "drop") {
      std::string arg;
      in >> arg;
      lease l;
      {
        std::lock_guard<std::mutex> guard{mx};
        if (held.empty())
          return "err no lease held";
        l = held.back();
      }
      if (cmd == "holdget")
        return forward(l, arg);
      return release(l, arg.empty() ? l.user : arg);
    }
    if (cmd == "stream") {
      std::string user, path;
      int hold_ms = 0;
      in >> user >> path >> hold_ms;
      auto l = acquire(user);
      if (!l)
        return describe(l.error());
      auto out = std::make_shared<stream_outcome>();
      auto sink = caf::actor_cast<stream_sink_actor>(
          sys.spawn(holding_sink, l->connection, std::chrono::milliseconds(hold_ms), out));
      caf::scoped_actor self{sys};
      request req;
      req.path = path;
      std::string result;
      self->request(l->connection, std::chrono::seconds(30), stream_atom_v, req,
                    caf::timespan{std::chrono::seconds(20)}, sink)
          .receive([](std::uint64_t) {}, [&](caf::error& err) { result = describe(err); });
      if (result.empty()) {
        std::unique_lock<std::mutex> guard{out->mx};
        out->cv.wait(guard, [&] { return out->done; });
        result = out->err ? describe(out->err)
                          : "ok " + std::to_string(out->bytes) + ' ' + std::to_string(out->held);
      }
      release(*l, l->user);
      return result;
    }
    if (cmd == "close" || cmd == "drainuser") {
      std::string user;
      in >> user;
      caf::scoped_actor self{sys};
      std::string result;
      auto on_error = [&](caf::error& err) { result = describe(err); };
      if (cmd == "close")
        self->request(sup, std::chrono::seconds(30), close_atom_v, user)
            .receive([&](std::uint64_t n) { result = "ok " + std::to_string(n); }, on_error);
      else
        self->request(sup, std::chrono::seconds(30), drain_atom_v, user)
            .receive(
                [&](shutdown_report& r) { result = "ok " + std::to_string(r.connections_closed); },
                on_error);
      return result;
    }
    if (cmd == "counters") {
      caf::scoped_actor self{sys};
      std::string result;
      self->request(caf::actor_cast<supervisor_impl>(sup), std::chrono::seconds(10), view_atom_v)
          .receive(
              [&](std::uint64_t a, std::uint64_t b, std::uint64_t c, std::uint64_t d) {
                result = "ok " + std::to_string(a) + ' ' + std::to_string(b) + ' ' +
                         std::to_string(c) + ' ' + std::to_string(d);
              },
              [&](caf::error& err) { result = describe(err); });
      return result;
    }
    if (cmd == "members" || cmd == "cstats") {
      auto st = eng.cluster_status();
      if (!st)
        return "err not a cluster node";
      std::string result = "ok";
      if (cmd == "members")
        for (auto& m : st->members)
          result += ' ' + m;
      else
        for (auto x : {st->remote_acquires, st->remote_acquire_failures, st->served_acquires,
                       st->served_leases})
          result += ' ' + std::to_string(x);
      return result;
    }
    if (cmd == "conns") {
      auto st = eng.pool().get_pool_stats();
      return "ok " + std::to_string(st.total_connections);
    }
    return "err unknown command " + cmd;
  }
};

std::size_t setting(const std::map<std::string, std::string>& s, const std::string& key,
                    std::size_t fallback) {
  auto i = s.find(key);
  return i != s.end() ? std::stoul(i->second) : fallback;
}

/// Cluster mode: this node's cluster settings (listen and peers on 127.0.0.1, the PKI's
/// ca.pem, NODE.pem and NODE.key, a short heartbeat).
cluster_config cluster_settings(const std::string& id,
                                const std::map<std::string, std::string>& s) {
  cluster_config c;
  c.node_id = id;
  c.listen = "127.0.0.1:" + s.at("listen");
  std::istringstream peers{s.count("peers") > 0 ? s.at("peers") : ""};
  for (std::string port; std::getline(peers, port, ',');)
    c.peers.push_back("127.0.0.1:" + port);
  auto pki = s.at("pki");
  c.ca_file = pki + "/ca.pem";
  c.cert_file = pki + "/" + id + ".pem";
  c.key_file = pki + "/" + id + ".key";
  c.heartbeat_interval = std::chrono::milliseconds(200);
  c.heartbeat_timeout = std::chrono::milliseconds(1000);
  c.reconnect_backoff_base = std::chrono::milliseconds(100);
  c.reconnect_backoff_cap = std::chrono::milliseconds(500);
  return c;
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: routing_node NODE_ID [key=value...]\n";
    return 2;
  }
  std::map<std::string, std::string> settings;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    auto eq = arg.find('=');
    settings[arg.substr(0, eq)] = arg.substr(eq + 1);
  }
  engine_config ecfg;
  ecfg.log_level = "warn";
  ecfg.pool.max_connections_per_user = setting(settings, "conns", 3);
  ecfg.pool.max_channels_per_connection = setting(settings, "channels", 10);
  ecfg.pool.max_waiters_per_user = setting(settings, "waiters", 100);
  ecfg.pool.acquire_timeout = std::chrono::milliseconds(setting(settings, "acquire_ms", 10000));
  ecfg.pool.connect_timeout = std::chrono::milliseconds(setting(settings, "connect_ms", 10000));
  ecfg.pool.stream_window_bytes = setting(settings, "window", std::size_t{256} << 10);
  caf::actor_system_config cfg;
  add_message_types(cfg);
  bool clustered = settings.count("listen") > 0;
  if (clustered) {
    ecfg.cluster = cluster_settings(argv[1], settings);
    add_cluster_modules(cfg, ecfg.cluster);
  } else {
    cfg.load<caf::io::middleman>();
  }
  caf::actor_system sys{cfg};
  engine eng{sys, ecfg};
  node n{sys, eng, argv[1]};
  n.recorder = sys.spawn(claim_recorder, n.book);
  if (clustered) {
    say("ready", settings.at("listen"));
  } else {
    auto port = sys.middleman().publish(n.sup, 0, "127.0.0.1");
    if (!port) {
      std::cerr << "publish: " << caf::to_string(port.error()) << '\n';
      return 1;
    }
    say("ready", std::to_string(*port));
  }
  std::vector<std::thread> threads;
  for (std::string line; std::getline(std::cin, line);) {
    threads.emplace_back([&n, line] {
      std::istringstream in{line};
      std::string tag;
      in >> tag;
      say(tag, n.run(in));
    });
  }
  for (auto& t : threads)
    t.join();
  caf::anon_send_exit(n.recorder, caf::exit_reason::user_shutdown);
  return 0;
}

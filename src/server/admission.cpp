// Admission: who may generate, until when, and whether its client is still there.
#include "impl.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

namespace ruvllm::server {
namespace {

// Whether the peer of the connection (ip, port) → our `local_port` has closed it. cpp-httplib 0.11
// does not expose the socket to handlers, so the watcher finds it among our descriptors by its
// addresses; a peer that closed shows as an orderly end of stream (recv → 0) under MSG_PEEK.
bool peer_closed(const std::string& ip, int port, int local_port, int& fd_cache) {
  auto matches = [&](int fd) {
    sockaddr_storage peer{}, self{};
    socklen_t pl = sizeof peer, sl = sizeof self;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) return false;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&self), &sl) != 0) return false;
    char buf[INET6_ADDRSTRLEN] = {};
    int pport = 0, sport = 0;
    if (peer.ss_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&peer);
      inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
      pport = ntohs(a->sin_port);
      sport = ntohs(reinterpret_cast<sockaddr_in*>(&self)->sin_port);
    } else if (peer.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&peer);
      inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
      pport = ntohs(a->sin6_port);
      sport = ntohs(reinterpret_cast<sockaddr_in6*>(&self)->sin6_port);
    } else {
      return false;
    }
    return pport == port && sport == local_port && ip == buf;
  };
  if (fd_cache < 0 || !matches(fd_cache)) {
    fd_cache = -1;
    if (DIR* d = opendir("/proc/self/fd")) {
      while (dirent* e = readdir(d)) {
        const int fd = std::atoi(e->d_name);
        struct stat st {};
        if (fd <= 2 || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
        if (matches(fd)) {
          fd_cache = fd;
          break;
        }
      }
      closedir(d);
    }
    if (fd_cache < 0) return true;  // the connection is gone
  }
  char c;
  const ssize_t n = recv(fd_cache, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0;
}

}  // namespace

void Server::Impl::watch(std::stop_token stop) noexcept {  // nothing in it throws; noexcept says so
  std::unique_lock lock(active_mutex);
  while (!stop.stop_requested()) {
    active_changed.wait_for(lock, std::chrono::milliseconds(100));
    const auto now = Clock::now();
    for (auto& a : active) {
      if (a.cancel.stop_requested()) continue;
      if (now > a.deadline || (a.watch_peer && peer_closed(a.ip, a.port, port, a.fd))) a.cancel.request_stop();
    }
  }
}

}  // namespace ruvllm::server

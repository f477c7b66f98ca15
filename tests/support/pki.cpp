#include "support/pki.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdexcept>
#include <vector>

namespace sshpool::test {

namespace {

/// Runs the openssl CLI with `args`; throws with its output unless it exits 0.
void openssl(const temp_dir& dir, std::vector<std::string> args) {
  args.insert(args.begin(), "/usr/bin/openssl");
  auto log = dir.path() + "/openssl.log";
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    throw_errno("open " + log);
  auto pid = spawn(args, fd);
  ::close(fd);
  int status = wait_child(pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error{"openssl " + args[1] + " failed: " + read_file(log)};
}

} // namespace

test_ca::test_ca(const temp_dir& d, const std::string& name) : dir(d), name_(name) {
  ca = dir.path() + "/" + name + ".pem";
  openssl(dir, {"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", dir.path() + "/" + name + ".key", "-out", ca, "-days", "2",
                "-subj", "/CN=sshpool-test-" + name});
  dir.write("san.cnf", "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
}

void test_ca::issue(const std::string& cert, const std::string& cn) const {
  auto base = dir.path() + "/" + cert;
  openssl(dir, {"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", base + ".key", "-out", base + ".csr", "-subj", "/CN=" + cn});
  openssl(dir, {"x509", "-req", "-in", base + ".csr", "-CA", ca, "-CAkey",
                dir.path() + "/" + name_ + ".key", "-CAcreateserial", "-days", "2", "-out",
                base + ".pem", "-extfile", dir.path() + "/san.cnf"});
}

} // namespace sshpool::test

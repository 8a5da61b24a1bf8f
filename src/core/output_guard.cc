// Output lock files (flock + pid) and the check that an output does not overwrite its input.
#include "core/output_guard.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "awq/error.h"

namespace awq {

namespace fs = std::filesystem;

namespace {

// The locks this process holds, by lock file path: nested OutputLocks of one output share the
// descriptor (a second flock on a fresh descriptor would conflict with our own).
struct Held {
  int fd = -1;
  int count = 0;
};
std::mutex& TableMutex() {
  static std::mutex mu;
  return mu;
}
std::map<std::string, Held>& Table() {
  static auto* table = new std::map<std::string, Held>();
  return *table;
}

std::string StripSlashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// The pid text another process wrote into its lock file. It writes it right after taking the
// flock, so a reader that arrives in between retries briefly.
std::string HolderPid(int fd) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    char buf[32] = {};
    const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
    if (n > 0) {
      std::string s(buf, static_cast<size_t>(n));
      while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
      if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos) return s;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return "unknown";
}

// Opens and flocks `path`, returning the descriptor. The file can be unlinked by its previous
// owner between our open() and flock(): then the lock we got is on a name nobody else sees, so
// it is dropped and taken again on the file now at `path`.
int TakeLock(const std::string& path, const std::string& out) {
  for (;;) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      throw Error(path + ": cannot create the lock file for output " + out + ": " +
                  std::strerror(errno) + " (is the folder writable?)");
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      const std::string pid = err == EWOULDBLOCK ? HolderPid(fd) : "";
      ::close(fd);
      if (err == EWOULDBLOCK) {
        throw Error(out + ": another awq run (pid " + pid + ") is writing this output (lock " +
                    path + "); wait for it to finish or stop it");
      }
      throw Error(path + ": cannot lock: " + std::strerror(err));
    }
    struct stat by_fd {};
    struct stat by_name {};
    if (::fstat(fd, &by_fd) == 0 && ::stat(path.c_str(), &by_name) == 0 &&
        by_fd.st_dev == by_name.st_dev && by_fd.st_ino == by_name.st_ino) {
      return fd;
    }
    ::close(fd);
  }
}

}  // namespace

std::string OutputLock::LockPath(const std::string& out) { return StripSlashes(out) + ".lock"; }

OutputLock::OutputLock(const std::string& out) {
  const std::string path = LockPath(out);
  std::error_code ec;
  key_ = fs::absolute(path, ec).lexically_normal().string();
  if (ec) key_ = path;
  std::lock_guard<std::mutex> guard(TableMutex());
  Held& held = Table()[key_];
  if (held.count > 0) {
    ++held.count;
    return;
  }
  try {
    held.fd = TakeLock(path, StripSlashes(out));
  } catch (...) {
    Table().erase(key_);
    throw;
  }
  held.count = 1;
  const std::string pid = std::to_string(::getpid()) + "\n";
  // Best effort: the pid is for the message of a second run; the flock is the lock.
  if (::ftruncate(held.fd, 0) != 0 ||
      ::pwrite(held.fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    // A full disk can refuse even these bytes; the lock still holds.
  }
}

OutputLock::~OutputLock() {
  std::lock_guard<std::mutex> guard(TableMutex());
  auto it = Table().find(key_);
  if (it == Table().end() || --it->second.count > 0) return;
  // Unlink before unlocking: a process that opened the old file meanwhile sees it is no longer
  // the one at the path (TakeLock) and retries.
  ::unlink(key_.c_str());
  ::close(it->second.fd);
  Table().erase(it);
}

void CheckOutputIsNotInput(const std::string& input, const std::string& out) {
  std::error_code ec;
  const fs::path in_path = fs::weakly_canonical(fs::absolute(input, ec), ec);
  if (ec) return;  // the input's own reader reports a missing or unreadable input
  const fs::path out_path = fs::weakly_canonical(fs::absolute(StripSlashes(out), ec), ec);
  if (ec) return;
  // Is `inner` equal to `outer` or below it?
  const auto within = [](const fs::path& inner, const fs::path& outer) {
    auto i = inner.begin();
    for (auto o = outer.begin(); o != outer.end(); ++o, ++i) {
      if (o->empty()) continue;  // a trailing separator
      if (i == inner.end() || *i != *o) return false;
    }
    return true;
  };
  if (in_path == out_path) {
    throw Error(out + ": the output is the input model " + input + "; choose another output path");
  }
  if (within(out_path, in_path)) {
    throw Error(out + ": the output lies inside the input model folder " + input +
                "; choose a path outside it");
  }
  if (within(in_path, out_path)) {
    throw Error(out + ": the output folder contains the input model " + input +
                " (replacing it would delete the input); choose another output path");
  }
}

}  // namespace awq

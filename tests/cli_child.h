// Runs the built `awq` command in a child process for the fault and determinism tests: extra
// environment, a file-size limit (the disk filling up), another user (read-only folders when the
// tests run as root), output captured, and kill -9 from the parent.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "core/mapped_file.h"

namespace awq::test {

struct ChildOptions {
  std::vector<std::string> env;           // "NAME=value" added to this process's environment
  rlim_t max_file_bytes = RLIM_INFINITY;  // RLIMIT_FSIZE; SIGXFSZ is ignored, so writes fail
                                          // with EFBIG as on a full disk
  bool as_nobody = false;                 // setuid(65534) first (needs root)
  std::string output_file;                // stdout and stderr go here ("" = /dev/null)
};

// Starts AWQ_CLI_PATH with `args`; returns the child's pid.
inline pid_t SpawnAwq(const std::vector<std::string>& args, const ChildOptions& o = {}) {
  // Everything the child needs is prepared before fork(): between fork and exec only
  // async-signal-safe calls are made.
  std::vector<std::string> argv_s = {AWQ_CLI_PATH};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** e = environ; *e != nullptr; ++e) env_s.emplace_back(*e);
  env_s.insert(env_s.end(), o.env.begin(), o.env.end());
  std::vector<char*> envp;
  for (std::string& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  const std::string out = o.output_file.empty() ? "/dev/null" : o.output_file;
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) ::_exit(126);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    if (o.max_file_bytes != RLIM_INFINITY) {
      ::signal(SIGXFSZ, SIG_IGN);  // kept across exec
      const rlimit lim = {o.max_file_bytes, o.max_file_bytes};
      if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(125);
    }
    if (o.as_nobody && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(124);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

// The exit status of `pid`, or minus the signal that ended it.
inline int WaitChild(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

struct ChildResult {
  int status = 0;
  std::string output;  // stdout and stderr
};

// Runs the command to its end; `scratch` is a folder for the captured output.
inline ChildResult RunAwq(const std::vector<std::string>& args, const std::string& scratch,
                          ChildOptions o = {}) {
  static int counter = 0;
  o.output_file = scratch + "/child-" + std::to_string(counter++) + ".log";
  ChildResult r;
  r.status = WaitChild(SpawnAwq(args, o));
  r.output = ReadFileToString(o.output_file);
  return r;
}

}  // namespace awq::test

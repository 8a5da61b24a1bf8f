// Guards around an output path: one writer at a time (a lock file naming its pid), and never an
// output that would overwrite or sit inside its own input.
#pragma once

#include <string>

namespace awq {

// Exclusive ownership of the output `out` (a file or folder) while a run writes it: the file
// "<out>.lock" beside it, flock'ed for the object's lifetime and holding the owner's pid. A second
// process asking for the same output gets an awq::Error naming that pid, at once, instead of two
// runs interleaving their temporary files and renames. The kernel drops the flock when the owner
// dies, even by kill -9, so a stale lock file is taken over silently. The lock is shared within a
// process (the CLI, the streaming run and the checkpoint writer each take it; nested locks of one
// path count up), and the file is removed when the last one goes.
class OutputLock {
 public:
  // Throws awq::Error when another process holds the lock (naming its pid), or when the lock file
  // cannot be created (a read-only or missing folder), naming the path and the OS error.
  explicit OutputLock(const std::string& out);
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

  // "<out>.lock", trailing slashes of `out` removed.
  static std::string LockPath(const std::string& out);

 private:
  std::string key_;  // the lock file's absolute path: the key of the process-wide table
};

// Throws awq::Error when writing `out` could destroy `input` (a model file or folder): the same
// path, an output inside the input folder, or an output folder that contains the input (which
// --overwrite would replace). Paths are compared after resolving symlinks and "..".
void CheckOutputIsNotInput(const std::string& input, const std::string& out);

}  // namespace awq

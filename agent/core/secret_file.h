// Files that hold secrets (passwords, tokens, private keys) and TLS material,
// checked and read the same way by the agent's config and by the drivers.
// Every message names the path and what is wrong with it, never a byte of
// the content. No function here logs.
#pragma once

#include <cstddef>
#include <string>

#include "core/status.h"

namespace vane {

// Reads a secret from `path`: the whole content less one trailing newline
// ("\n" or "\r\n"), so that `echo pw > file` and an editor's final newline
// both give "pw". Errors (invalid Status, message naming `path` only):
// unreadable ("cannot read PATH: reason"), a directory, empty ("PATH is
// empty"), larger than `max_bytes`, or holding a NUL byte.
Result<std::string> read_secret_file(const std::string& path, std::size_t max_bytes = 64 * 1024);

// Ok when this process can open `path` for reading and it is not a
// directory; otherwise "cannot read PATH: reason".
Status check_readable_file(const std::string& path);

// Whether the account `user` may read `path`, judged from the mode, owner
// and group of the file and of every directory above it (search permission),
// with the user's primary and supplementary groups from the user database.
// For a process that can see the file but is not that user (check-config run
// by root for the service user).
struct UserAccess {
  enum class Verdict {
    kReadable,
    kNotReadable,  // why: which file or directory and its mode/owner/group
    kUnknown,      // why: no such user, the file cannot be seen, or an ACL decides
  };
  Verdict verdict = Verdict::kUnknown;
  std::string why;
};
UserAccess file_readable_by(const std::string& path, const std::string& user);

}  // namespace vane

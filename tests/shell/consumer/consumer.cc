// consumer.cc: a program built against the installed volfs package. It needs
// no mount: a file that is not on volfs must be refused with ENOTTY and a
// message that names it, never opened as if it were.
#include <volfs/file.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <system_error>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: consumer_cxx FILE-NOT-ON-VOLFS\n");
    return 2;
  }
  const std::string path = argv[1];
  try {
    volfs::File f = volfs::File::open(path);
    std::fprintf(stderr, "consumer_cxx: %s was opened as a volfs file\n", path.c_str());
    return 1;
  } catch (const std::system_error& e) {
    if (e.code().value() != ENOTTY || std::string(e.what()).find(path) == std::string::npos) {
      std::fprintf(stderr, "consumer_cxx: wrong error: %s (errno %d)\n", e.what(),
                   e.code().value());
      return 1;
    }
    std::printf("consumer_cxx: ok: %s\n", e.what());
  }
  return 0;
}

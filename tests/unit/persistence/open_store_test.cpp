// open_store: URL parsing, failures reported at open time, secrets kept out.
#include "troupe/persistence/open_store.hpp"

#include <gtest/gtest.h>

#include <filesystem>

namespace troupe::persistence {
namespace {

using base::errc;

TEST(open_store, rejects_malformed_urls_as_invalid_config) {
  for (const char* url : {"", "troupe.db", "sqlite:", "sqlite:?sync=full", "mysql://db",
                          "sqlite:x.db?sync=sometimes", "sqlite:x.db?busy_timeout_ms=abc",
                          "sqlite:x.db?busy_timeout_ms=-1", "sqlite:x.db?colour=blue"}) {
    auto s = open_store(url);
    ASSERT_FALSE(s) << url;
    EXPECT_EQ(s.error().code, errc::invalid_config) << url;
    EXPECT_NE(s.error().message.find(url), std::string::npos) << s.error().message;
  }
  EXPECT_FALSE(std::filesystem::exists("x.db"));
}

TEST(open_store, unknown_scheme_message_says_what_is_expected) {
  auto s = open_store("redis://u:hunter2@localhost/0");
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("expected sqlite:PATH or postgresql://"), std::string::npos);
  EXPECT_EQ(s.error().message.find("hunter2"), std::string::npos) << s.error().message;
}

TEST(open_store, unopenable_sqlite_file_is_unavailable) {
  auto s = open_store("sqlite:/nonexistent-dir-for-troupe-tests/sub/troupe.db");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, errc::unavailable);
  EXPECT_NE(s.error().message.find("/nonexistent-dir-for-troupe-tests/sub/troupe.db"),
            std::string::npos)
      << s.error().message;
}

TEST(open_store, file_that_is_not_a_database_is_unavailable) {
  const auto path = std::filesystem::temp_directory_path() / "troupe-not-a-db.txt";
  {
    std::FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("this is certainly not an SQLite database, it is plain text. ........\n", f);
    std::fclose(f);
  }
  auto s = open_store("sqlite:" + path.string());
  std::filesystem::remove(path);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, errc::unavailable);
  EXPECT_NE(s.error().message.find("not a database"), std::string::npos) << s.error().message;
}

TEST(open_store, unreachable_server_is_unavailable_without_the_password) {
  // Port 1 on loopback: nothing listens there, the connection is refused at once.
  auto s = open_store("postgresql://troupe:hunter2@127.0.0.1:1/troupe?connect_timeout=5");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, errc::unavailable);
  EXPECT_TRUE(s.error().retryable);
  EXPECT_EQ(s.error().message.find("hunter2"), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find("troupe:***@127.0.0.1:1"), std::string::npos)
      << s.error().message;
}

TEST(open_store, malformed_server_url_is_invalid_config) {
  auto s = open_store("postgresql://troupe:hunter2@127.0.0.1:notaport/troupe");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, errc::invalid_config) << s.error().message;
  EXPECT_EQ(s.error().message.find("hunter2"), std::string::npos) << s.error().message;
}

TEST(open_store, redacts_passwords_in_urls) {
  EXPECT_EQ(redact_store_url("postgresql://u:secret@h:5432/db"), "postgresql://u:***@h:5432/db");
  EXPECT_EQ(redact_store_url("postgres://u@h/db?password=secret&sslmode=require"),
            "postgres://u@h/db?password=***&sslmode=require");
  EXPECT_EQ(redact_store_url("postgresql://u:p@ss@h/db"), "postgresql://u:***@h/db");
  EXPECT_EQ(redact_store_url("postgresql://h/db"), "postgresql://h/db");
  EXPECT_EQ(redact_store_url("sqlite:./troupe.db"), "sqlite:./troupe.db");
}

}  // namespace
}  // namespace troupe::persistence

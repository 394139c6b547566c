// HTTPS to the fake provider: certificate verification against a CA file, and
// the clean failure when the certificate is not trusted.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "one_call.hpp"
#include "troupe/fake_llm/fake_llm.hpp"

namespace troupe::protocols::llm {
namespace {

using namespace std::chrono_literals;

struct pem_pair {
  std::string cert, key;
};

std::string drain(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  return out;
}

void add_ext(X509* x, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  ASSERT_NE(ext, nullptr);
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
}

/// A throwaway self-signed certificate for localhost / 127.0.0.1, made fresh
/// for each run so that no key lives in the repository.
pem_pair make_self_signed() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("troupe test"), -1,
                             -1, 0);
  X509_set_issuer_name(x, name);
  add_ext(x, NID_basic_constraints, "critical,CA:TRUE");
  add_ext(x, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
  X509_sign(x, key, EVP_sha256());
  BIO* cert_bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(cert_bio, x);
  BIO* key_bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(key_bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  X509_free(x);
  EVP_PKEY_free(key);
  return {drain(cert_bio), drain(key_bio)};
}

class llm_tls_test : public ::testing::Test {
 protected:
  void SetUp() override {
    pem_ = make_self_signed();
    auto port = fake_.start_tls(pem_.cert, pem_.key);
    ASSERT_TRUE(port) << port.error().message;
    ca_path_ = std::filesystem::temp_directory_path() /
               ("troupe-llm-ca-" + std::to_string(::getpid()) + "-" + std::to_string(*port) + ".pem");
    std::ofstream(ca_path_) << pem_.cert;
  }
  void TearDown() override {
    fake_.stop();
    std::filesystem::remove(ca_path_);
  }

  base::result<base::llm_response> call(const std::string& base_url, const std::string& ca_file, bool stream) {
    config::provider p;
    p.name = "tls";
    p.kind = config::provider_kind::openai;
    p.base_url = base_url;
    p.ca_file = ca_file;
    p.connect_timeout_ms = 2000;
    p.timeout_ms = 5000;
    p.retry = {1, 1, 1};
    return test::one_call(p, [&](base::llm_request& r) {
             r.messages = {{"user", "over tls"}};
             r.stream = stream;
           }).result;
  }

  fake_llm::fake_llm_server fake_;
  pem_pair pem_;
  std::filesystem::path ca_path_;
};

TEST_F(llm_tls_test, verifies_the_server_against_the_ca_file) {
  for (bool stream : {false, true}) {
    auto r = call(fake_.endpoint() + "/v1", ca_path_.string(), stream);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->text, "echo: over tls");
  }
  // By name too (SNI and a DNS subject alternative name).
  auto r = call("https://localhost:" + std::to_string(fake_.port()) + "/v1", ca_path_.string(), false);
  ASSERT_TRUE(r) << r.error().message;
}

TEST_F(llm_tls_test, an_untrusted_certificate_fails_the_handshake) {
  auto r = call(fake_.endpoint() + "/v1", "", false);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, base::errc::unavailable);
  EXPECT_NE(r.error().message.find("tls failed"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("certificate verify failed"), std::string::npos) << r.error().message;
  EXPECT_EQ(fake_.counters().total, 0);
}

}  // namespace
}  // namespace troupe::protocols::llm

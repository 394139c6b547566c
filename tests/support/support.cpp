// Anchor translation unit for troupe_test_support.
namespace troupe::test {
int support_anchor = 0;
}  // namespace troupe::test

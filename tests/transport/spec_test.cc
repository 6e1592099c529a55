// The one spec tokenizer (spec.h) that pipelines and finishes share.
#include "datafeed/transport/spec.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "datafeed/transport/finish.h"

namespace datafeed {
namespace {

std::vector<SpecItem> ParseOrDie(std::string_view spec) {
  std::vector<SpecItem> items;
  Status st = ParseSpec(spec, &items);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return items;
}

TEST(SpecTest, ItemsNamesAndNumbers) {
  const auto items = ParseOrDie(" to_tensor , normalize( 0.5, +2e-1 ) ,flip(),resize(256)");
  ASSERT_EQ(items.size(), 4u);
  EXPECT_EQ(items[0].text, "to_tensor");
  EXPECT_EQ(items[0].name, "to_tensor");
  EXPECT_FALSE(items[0].has_args);
  EXPECT_EQ(items[1].text, "normalize( 0.5, +2e-1 )");
  EXPECT_EQ(items[1].name, "normalize");
  EXPECT_EQ(items[1].args, (std::vector<double>{0.5, 0.2}));
  EXPECT_TRUE(items[2].has_args);
  EXPECT_TRUE(items[2].args.empty());
  EXPECT_EQ(items[3].args, (std::vector<double>{256}));
}

TEST(SpecTest, EmptyItemsComeBackEmptyForTheCallerToJudge) {
  const auto items = ParseOrDie("a,,b,");
  ASSERT_EQ(items.size(), 4u);
  EXPECT_TRUE(items[1].name.empty());
  EXPECT_TRUE(items[3].text.empty());
}

TEST(SpecTest, ErrorsNameThePart) {
  const struct {
    const char* spec;
    const char* what;
  } bad[] = {{"a(1,(2))", "nested parentheses at offset 4"},
             {"a(1))", "unmatched ')' at offset 4"},
             {"a(1", "unmatched '('"},
             {"a(1)b", "'a(1)b': text after ')'"},
             {"a(1,x)", "'a(1,x)': 'x' is not a number"},
             {"a(1,,2)", "'' is not a number"},
             {"a(\x01)", "'a(\\x01)'"}};
  for (const auto& b : bad) {
    std::vector<SpecItem> items;
    Status st = ParseSpec(b.spec, &items);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << b.spec;
    EXPECT_NE(st.message().find(b.what), std::string::npos) << b.spec << ": " << st.message();
  }
}

// Finish::Parse reads what the tokenizer reads, with the finish's rules.
TEST(SpecTest, FinishParsesThroughTheSameTokenizer) {
  auto f = Finish::Parse(" to_tensor , normalize( 0.5 , 0.25 ) ");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->spec(), "to_tensor,normalize(0.5,0.25)");
  EXPECT_NE(Finish::Parse("to_tensor,normalize(0.5,(0.25))").status().message().find("nested"),
            std::string::npos);
  EXPECT_NE(Finish::Parse("to_tensor,normalize").status().message().find("expected normalize(m..., s...)"),
            std::string::npos);
}

}  // namespace
}  // namespace datafeed

// model synth / quantize / info: exact LFM2 shapes, a tokenizer that works, llama.cpp's quantizer.
#include <gtest/gtest.h>
#include <llama.h>

#include <sys/wait.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "fixtures.h"
#include "ruvllm/llm.h"

namespace ruvllm::llm {
namespace {

using test::tiny_lfm2;

TEST(Synth, ParameterCountsAreLfm2sPublishedOnes) {
  // The LFM2 model cards' parameter counts.
  EXPECT_EQ(lfm2_parameter_count("350m"), 354483968u);
  EXPECT_EQ(lfm2_parameter_count("700m"), 742489344u);
  EXPECT_EQ(lfm2_parameter_count("1.2b"), 1170340608u);
  EXPECT_EQ(lfm2_parameter_count("2.6b"), 2569272320u);
  EXPECT_THROW(lfm2_parameter_count("7b"), Error);
}

TEST(Synth, The350mFileHasExactlyItsParametersAsCountedByLlamaCpp) {
  SynthParams p;
  p.size = "350m";
  p.type = "q4_0";
  p.out = test::tmp_dir() + "/lfm2-350m-q4_0-test.gguf";
  const auto report = synth_lfm2(p);
  EXPECT_EQ(report.n_params, 354483968u);
  EngineParams ep;
  ep.ladder = {{"350m", p.out, "350m", 1.0, 0}};
  ep.parallel = 1;
  ep.context = 256;
  Engine engine(ep);
  const ModelInfo info = engine.info("350m");  // loaded below, then counted by llama.cpp
  EXPECT_EQ(info.n_params, 354483968u);
  engine.load("350m");
  EXPECT_EQ(engine.info("350m").n_params, 354483968u);
  EXPECT_EQ(engine.info("350m").n_layer, 16);
  EXPECT_EQ(engine.info("350m").n_embd, 1024);
  GenerateRequest r;
  r.prompt = "hello";
  r.max_tokens = 2;
  r.ignore_eos = true;
  EXPECT_EQ(engine.generate("350m", r).completion_tokens, 2);
  std::filesystem::remove(p.out);
}

TEST(Synth, TinyFileDescribesItselfAndItsTokenizerWorks) {
  const ModelInfo info = inspect_model(tiny_lfm2());
  EXPECT_EQ(info.architecture, "lfm2");
  EXPECT_TRUE(info.generated_weights);
  EXPECT_TRUE(info.hybrid);
  EXPECT_EQ(info.n_vocab, 65536);
  EXPECT_EQ(info.n_ctx_train, 32768);
  EXPECT_EQ(info.tokenizer, "gpt2");
  EXPECT_EQ(info.pre_tokenizer, "lfm2");
  EXPECT_NE(info.chat_template.find("<|im_start|>"), std::string::npos);
  EXPECT_EQ(info.n_params, lfm2_parameter_count("tiny"));

  // Round trip through llama.cpp's tokenizer, and the special tokens are single tokens.
  llama_model_params mp = llama_model_default_params();
  mp.vocab_only = true;
  std::unique_ptr<llama_model, void (*)(llama_model*)> model(llama_model_load_from_file(tiny_lfm2().c_str(), mp),
                                                             llama_model_free);
  ASSERT_TRUE(model);
  const llama_vocab* vocab = llama_model_get_vocab(model.get());
  const std::string text = "Hello, world! Grüße, 東京 and 42 numbers.\n\tTabs too.";
  std::vector<llama_token> tokens(256);
  tokens.resize(static_cast<std::size_t>(
      llama_tokenize(vocab, text.c_str(), static_cast<int32_t>(text.size()), tokens.data(), 256, false, false)));
  ASSERT_GT(tokens.size(), 5u);
  ASSERT_LT(tokens.size(), text.size());  // merges happened
  std::string back(512, '\0');
  back.resize(static_cast<std::size_t>(
      llama_detokenize(vocab, tokens.data(), static_cast<int32_t>(tokens.size()), back.data(), 512, false, false)));
  EXPECT_EQ(back, text);
  for (const char* special : {"<|im_start|>", "<|im_end|>", "<|startoftext|>"}) {
    std::vector<llama_token> t(8);
    EXPECT_EQ(llama_tokenize(vocab, special, static_cast<int32_t>(std::strlen(special)), t.data(), 8, false, true), 1)
        << special;
    EXPECT_GE(t[0], 65536 - 16) << special;  // LFM2's special tokens sit at the end
  }
  EXPECT_TRUE(llama_vocab_is_eog(vocab, llama_vocab_eos(vocab)));

  EngineParams ep;
  ep.ladder = {{"tiny", tiny_lfm2(), "tiny", 1.0, 0}};
  Engine engine(ep);
  EXPECT_EQ(engine.render_chat("tiny", {{"user", "hi"}}), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

// Models that tokenize alike share a vocab_hash (the pipeline shares token counts by it); another
// vocabulary gets another hash.
TEST(Synth, VocabHashIsSharedByOneTokenizerOnly) {
  const ModelInfo tiny = inspect_model(tiny_lfm2());
  EXPECT_NE(tiny.vocab_hash, 0u);
  SynthParams other;
  other.size = "tiny";
  other.seed = 99;  // other weights, the same vocabulary
  other.out = test::tmp_dir() + "/tiny-seed99.gguf";
  synth_lfm2(other);
  EXPECT_EQ(inspect_model(other.out).vocab_hash, tiny.vocab_hash);
  const std::string stories = test::shared_data("models/stories260K.gguf");
  if (stories.empty()) GTEST_SKIP() << "skipped the other-vocabulary half: ../shared/data/models is absent";
  EXPECT_NE(inspect_model(stories).vocab_hash, tiny.vocab_hash);
}

TEST(Quantize, ProducesTheRequestedTypesThatLoadAndGenerate) {
  const std::vector<std::pair<std::string, std::string>> types = {
      {"Q8_0", "Q8_0"}, {"Q4_0", "Q4_0"}, {"q4_k_m", "Q4_K - Medium"}};  // requested -> llama.cpp's name
  for (const auto& [type, expected_name] : types) {
    const std::string out = test::tmp_dir() + "/tiny-" + type + ".gguf";
    double last_progress = -1;
    quantize_model(tiny_lfm2(), out, type, 2, [&](double f) { last_progress = f; });
    EXPECT_EQ(last_progress, 1.0);
    const ModelInfo info = inspect_model(out);
    EXPECT_EQ(info.file_type, expected_name);
    EXPECT_TRUE(info.generated_weights);  // the marker survives quantization
    EXPECT_LT(info.file_bytes, inspect_model(tiny_lfm2()).file_bytes);
    EngineParams ep;
    ep.ladder = {{"q", out, "tiny", 1.0, 0}};
    Engine engine(ep);
    GenerateRequest r;
    r.prompt = "quantized";
    r.max_tokens = 3;
    r.ignore_eos = true;
    EXPECT_EQ(engine.generate("q", r).completion_tokens, 3);
  }
  EXPECT_THROW(quantize_model(tiny_lfm2(), test::tmp_dir() + "/x.gguf", "Q3_XYZ"), Error);
  EXPECT_THROW(quantize_model("/nonexistent.gguf", test::tmp_dir() + "/x.gguf", "Q4_0"), Error);
  EXPECT_THROW(quantize_model(tiny_lfm2(), tiny_lfm2(), "Q4_0"), Error);
}

TEST(Ladder, ReadsTomlAndExplainsMistakes) {
  const std::string good = test::write_file("ladder.toml", R"(
[[model]]
name = "small"
path = "models/small.gguf"
size_class = "350m"
relative_cost = 1.0
tier = 0

[[model]]
name = "big"
path = "/abs/big.gguf"
size_class = "2.6b"
relative_cost = 7.5
tier = 3
)");
  const auto ladder = read_ladder(good);
  ASSERT_EQ(ladder.size(), 2u);
  EXPECT_EQ(ladder[0].path, test::tmp_dir() + "/models/small.gguf");
  EXPECT_EQ(ladder[1].path, "/abs/big.gguf");
  EXPECT_EQ(ladder[1].relative_cost, 7.5);
  EXPECT_EQ(ladder[1].tier, 3);
  const auto error = [](const std::string& toml) {
    try {
      read_ladder(test::write_file("bad.toml", toml));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("NO ERROR");
  };
  EXPECT_NE(error("[[model]]\npath = \"a.gguf\"\n").find("model[0].name"), std::string::npos);
  EXPECT_NE(error("[[model]]\nname = \"a\"\n").find("model[0].path"), std::string::npos);
  EXPECT_NE(error("[[model]]\nname=\"a\"\npath=\"x\"\n[[model]]\nname=\"a\"\npath=\"y\"\n").find("twice"),
            std::string::npos);
  EXPECT_NE(error("[[model]]\nname=\"a\"\npath=\"x\"\nrelative_cost=-1\n").find("relative_cost"), std::string::npos);
  EXPECT_NE(error("this is = = not toml").find("line"), std::string::npos);
  EXPECT_NE(error("title = \"no models\"").find("no [[model]]"), std::string::npos);
}

// The program itself: exit codes and messages a user sees.
using test::CommandResult;
using test::run;

TEST(Cli, ModelInfoJsonAndErrors) {
  const CommandResult info = run("model info --json " + tiny_lfm2());
  ASSERT_EQ(info.status, 0) << info.out;
  const auto j = nlohmann::json::parse(info.out);
  EXPECT_EQ(j["architecture"], "lfm2");
  EXPECT_EQ(j["parameters"].get<uint64_t>(), lfm2_parameter_count("tiny"));
  EXPECT_TRUE(j["generated_weights"].get<bool>());

  const CommandResult bad_size = run("model synth --size 9b --out " + test::tmp_dir() + "/never.gguf");
  EXPECT_NE(bad_size.status, 0);
  EXPECT_NE(bad_size.out.find("unknown LFM2 size"), std::string::npos) << bad_size.out;
  const CommandResult missing = run("generate -m /nonexistent.gguf -p hi");
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.out.find("not found"), std::string::npos) << missing.out;
  const CommandResult bad_temp = run("generate -m " + tiny_lfm2() + " -p hi --temperature -1");
  EXPECT_EQ(bad_temp.status, 1);
  EXPECT_NE(bad_temp.out.find("temperature"), std::string::npos) << bad_temp.out;
  const CommandResult gen = run("generate -m " + tiny_lfm2() + " -p hi -n 4 --seed 3 --json");
  ASSERT_EQ(gen.status, 0) << gen.out;
  const auto g = nlohmann::json::parse(gen.out.substr(gen.out.find('{')));
  EXPECT_TRUE(g["generated_weights"].get<bool>());
  EXPECT_LE(g["completion_tokens"].get<int>(), 4);
}

}  // namespace
}  // namespace ruvllm::llm
